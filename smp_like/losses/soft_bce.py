"""Binary cross-entropy with logits, label smoothing and an ignore label."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._functional import check_choice

__all__ = ["SoftBCEWithLogitsLoss"]


class SoftBCEWithLogitsLoss(nn.Module):
    """``BCEWithLogitsLoss`` with label smoothing and ``ignore_index``.

    With ``smooth_factor = s`` the targets become ``y (1 - s) + (1 - y) s`` (0 -> s, 1 -> 1 - s). Elements
    whose target equals ``ignore_index`` contribute zero; as in segmentation_models_pytorch they still count
    in the denominator of ``reduction="mean"``.

    Args:
        weight: Element weight broadcast against the input (a buffer, so it follows ``.to(device)``).
        ignore_index: Target value to ignore, or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        smooth_factor: Label smoothing in [0, 1], or ``None``.
        pos_weight: Weight of positive examples, broadcast over the class axis (a buffer).

    Shape:
        - y_pred: (N, C, *spatial) logits; y_true: same shape, values in [0, 1] (or ``ignore_index``).
    """

    def __init__(
        self,
        weight: Optional[torch.Tensor] = None,
        ignore_index: Optional[int] = -100,
        reduction: str = "mean",
        smooth_factor: Optional[float] = None,
        pos_weight: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        owner = type(self).__name__
        self.ignore_index = ignore_index
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum", "none"), owner)
        if smooth_factor is not None and not 0.0 <= smooth_factor <= 1.0:
            raise ValueError(f"{owner}: smooth_factor={smooth_factor!r} must lie in [0, 1] or be None.")
        self.smooth_factor = smooth_factor
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Raises:
            ValueError: If ``y_pred`` and ``y_true`` differ in shape.
        """
        if y_pred.shape != y_true.shape:
            raise ValueError(
                f"{type(self).__name__}: y_pred shape {tuple(y_pred.shape)} and y_true shape "
                f"{tuple(y_true.shape)} must be equal."
            )
        y_true_f = y_true.to(y_pred.dtype)
        if self.smooth_factor is not None:
            soft_targets = (1.0 - y_true_f) * self.smooth_factor + y_true_f * (1.0 - self.smooth_factor)
        else:
            soft_targets = y_true_f
        loss = F.binary_cross_entropy_with_logits(
            y_pred, soft_targets, self.weight, pos_weight=self.pos_weight, reduction="none"
        )
        if self.ignore_index is not None:
            loss = loss * (y_true != self.ignore_index).to(loss.dtype)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
