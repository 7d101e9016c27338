"""upernet architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.upernet.model import UPerNet

__all__ = ["UPerNet"]
