"""SMP's module path ``segmentation_models_pytorch.losses.tversky``: :class:`TverskyLoss` lives in :mod:`.overlap`."""

from .overlap import TverskyLoss

__all__ = ["TverskyLoss"]
