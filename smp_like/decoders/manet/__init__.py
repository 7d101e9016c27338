"""manet architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.manet.model import MAnet

__all__ = ["MAnet"]
