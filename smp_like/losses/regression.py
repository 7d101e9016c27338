"""Pixel-wise regression losses with shape checking (reconstruction targets of auto-encoders, diffusion)."""

import torch
import torch.nn.functional as F
from torch import nn

from ._functional import check_choice

__all__ = ["MSELoss", "L1Loss"]


class _PixelLoss(nn.Module):
    _fn = None

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum", "none"), type(self).__name__)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Raises:
            ValueError: If the shapes differ (PyTorch would broadcast silently, usually a bug here).
        """
        if y_pred.shape != y_true.shape:
            raise ValueError(
                f"{type(self).__name__}: y_pred shape {tuple(y_pred.shape)} and y_true shape "
                f"{tuple(y_true.shape)} must be equal."
            )
        return type(self)._fn(y_pred, y_true.to(y_pred.dtype), reduction=self.reduction)


class MSELoss(_PixelLoss):
    """Mean squared error ``(y_pred - y_true)^2``.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (element-wise).
    """

    _fn = staticmethod(F.mse_loss)


class L1Loss(_PixelLoss):
    """Mean absolute error ``|y_pred - y_true|``.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (element-wise).
    """

    _fn = staticmethod(F.l1_loss)
