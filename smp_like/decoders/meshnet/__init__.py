"""MeshNet: stacked dilated convolutions at full resolution (Fedorov et al. 2017)."""

from smp_like.decoders.meshnet.model import MESHNET_DILATIONS, MeshNet

__all__ = ["MESHNET_DILATIONS", "MeshNet"]
