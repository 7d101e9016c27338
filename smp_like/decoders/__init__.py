"""Decoders and the architectures built on them; importing this package registers every architecture."""

from smp_like.decoders.unet.model import Unet

__all__ = ["Unet"]
