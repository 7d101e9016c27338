"""ATrousNet: levels of parallel dilated convolutions, summed (cassetta's ATrousNet, after DeepLab)."""

from smp_like.decoders.atrousnet.model import ATROUSNET_DILATION_GROUPS, ATrousNet

__all__ = ["ATROUSNET_DILATION_GROUPS", "ATrousNet"]
