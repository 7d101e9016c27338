"""segformer architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.segformer.model import Segformer

__all__ = ["Segformer"]
