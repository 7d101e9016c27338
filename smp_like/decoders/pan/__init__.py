"""pan architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.pan.model import PAN

__all__ = ["PAN"]
