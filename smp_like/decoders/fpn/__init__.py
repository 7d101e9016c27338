"""fpn architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.fpn.model import FPN

__all__ = ["FPN"]
