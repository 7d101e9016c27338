"""Shared model parts: n-d layer factories, blocks, heads, the SegmentationModel base and Hub I/O."""
