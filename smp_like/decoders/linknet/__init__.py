"""linknet architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.linknet.model import Linknet

__all__ = ["Linknet"]
