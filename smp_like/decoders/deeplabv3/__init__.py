"""deeplabv3 architecture: `decoder.py` (the decoder and its blocks) and `model.py` (the public model class)."""

from smp_like.decoders.deeplabv3.model import DeepLabV3, DeepLabV3Plus

__all__ = ["DeepLabV3", "DeepLabV3Plus"]
