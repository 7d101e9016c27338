"""unetplusplus architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.unetplusplus.model import UnetPlusPlus

__all__ = ["UnetPlusPlus"]
