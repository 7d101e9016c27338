"""SMP's module path ``segmentation_models_pytorch.losses.jaccard``: :class:`JaccardLoss` lives in :mod:`.overlap`."""

from .overlap import JaccardLoss

__all__ = ["JaccardLoss"]
