"""pspnet architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.pspnet.model import PSPNet

__all__ = ["PSPNet"]
