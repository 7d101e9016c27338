"""unet architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.unet.model import Unet

__all__ = ["Unet"]
