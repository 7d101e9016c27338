"""Stacked hourglass (Newell et al. 2016, as in SLEAP): N encoder-decoder stacks with intermediate outputs."""
