"""Cross-entropy with label smoothing and an ignore label."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._functional import check_choice, label_smoothed_nll_loss

__all__ = ["SoftCrossEntropyLoss"]


class SoftCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy against label-smoothed one-hot targets (Szegedy et al. 2016, sec. 7).

    ``loss = (1 - s) * NLL + (s / C) * sum_c(-log p_c)``. Pixels labelled ``ignore_index`` contribute zero
    and,
    as in segmentation_models_pytorch, still count in the denominator of ``reduction="mean"`` (so the mean
    differs from ``F.cross_entropy(..., ignore_index=...)``, which divides by the kept pixels only).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-pixel loss with the class axis removed).
        smooth_factor: Label smoothing in [0, 1]; ``None`` means 0 (SMP 0.6 raises a TypeError for ``None``).
        ignore_index: Target label to ignore, or ``None``.
        dim: Class axis of ``y_pred``.

    Shape:
        - y_pred: (N, C, *spatial) logits; y_true: (N, *spatial) (or (N, 1, *spatial)) class indices.
    """

    def __init__(
        self,
        reduction: str = "mean",
        smooth_factor: Optional[float] = None,
        ignore_index: Optional[int] = -100,
        dim: int = 1,
    ):
        super().__init__()
        owner = type(self).__name__
        if smooth_factor is not None and not 0.0 <= smooth_factor <= 1.0:
            raise ValueError(f"{owner}: smooth_factor={smooth_factor!r} must lie in [0, 1] or be None.")
        self.smooth_factor = smooth_factor
        self.ignore_index = ignore_index
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum", "none"), owner)
        self.dim = dim

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Raises:
            ValueError: If ``y_true`` is not ``y_pred``'s shape without the class axis (or with size 1 there),
                or holds class indices outside ``[0, C)`` other than ``ignore_index``.
        """
        owner = type(self).__name__
        dim = self.dim % y_pred.dim()
        expected = y_pred.shape[:dim] + y_pred.shape[dim + 1 :]
        with_axis = y_pred.shape[:dim] + (1,) + y_pred.shape[dim + 1 :]
        if y_true.shape != expected and y_true.shape != with_axis:
            raise ValueError(
                f"{owner}: y_true shape {tuple(y_true.shape)} does not fit y_pred shape "
                f"{tuple(y_pred.shape)}; "
                f"expected class indices of shape {tuple(expected)} (class axis dim={self.dim} removed)."
            )
        if torch.is_floating_point(y_true):
            raise ValueError(f"{owner}: y_true must hold integer class indices, got dtype {y_true.dtype}.")
        num_classes = y_pred.shape[dim]
        labels = y_true if self.ignore_index is None else y_true[y_true != self.ignore_index]
        if labels.numel() > 0 and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"{owner}: y_true holds class indices outside [0, {num_classes}) other than "
                f"ignore_index={self.ignore_index!r}."
            )
        log_prob = F.log_softmax(y_pred, dim=dim)
        return label_smoothed_nll_loss(
            log_prob,
            y_true,
            epsilon=0.0 if self.smooth_factor is None else self.smooth_factor,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            dim=dim,
        )
