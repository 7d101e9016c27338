"""Hierarchical pyramid (HSeM): a U-Net-style decoder that keeps every stage, side heads and a fusion."""
