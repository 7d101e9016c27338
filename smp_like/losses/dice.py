"""SMP's module path ``segmentation_models_pytorch.losses.dice``: :class:`DiceLoss` lives in :mod:`.overlap`."""

from .overlap import DiceLoss

__all__ = ["DiceLoss"]
