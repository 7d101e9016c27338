"""dpt architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.dpt.model import DPT

__all__ = ["DPT"]
