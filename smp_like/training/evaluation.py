"""Confusion-matrix based segmentation metrics (per-class IoU, pixel accuracy)."""

from typing import Optional

import torch

__all__ = ["confusion_matrix", "per_class_iou", "pixel_accuracy"]


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: Optional[int] = None
) -> torch.Tensor:
    """Counts ``cm[t, p]``: the number of pixels of true class ``t`` predicted as class ``p``.

    Args:
        pred: Integer class indices, any shape.
        target: Integer class indices, same shape as ``pred``.
        num_classes: Number of classes ``C``; values must lie in ``[0, C)``.
        ignore_index: Target value whose pixels are left out (e.g. 255), or None.

    Returns:
        ``C x C`` int64 tensor on ``pred``'s device; rows are true classes, columns predicted ones.

    Raises:
        ValueError: If shapes differ, ``num_classes < 1``, or a value lies outside ``[0, num_classes)``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long().to(pred.device)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    if pred.numel() and (
        pred.min() < 0 or target.min() < 0 or pred.max() >= num_classes or target.max() >= num_classes
    ):
        raise ValueError(f"class indices must lie in [0, {num_classes}) (num_classes={num_classes})")
    # One bincount over the flattened (true, predicted) pair index t * C + p.
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_iou(cm: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each class from a confusion matrix.

    ``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` with ``TP_c = cm[c, c]``, ``FP_c`` the rest of column ``c`` and
    ``FN_c`` the rest of row ``c``.

    Args:
        cm: ``C x C`` confusion matrix as returned by :func:`confusion_matrix` (rows = true classes).

    Returns:
        Float64 tensor of ``C`` IoUs; ``nan`` for a class absent from both prediction and target.

    Raises:
        ValueError: If ``cm`` is not square.
    """
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square C x C matrix, got shape {tuple(cm.shape)}")
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Fraction of correctly classified pixels, ``trace(cm) / sum(cm)`` (``nan`` for an empty matrix).

    Args:
        cm: a (C, C) confusion matrix.

    Returns:
        The accuracy, a Python float.
    """
    total = cm.sum().item()
    return float(cm.diagonal().sum().item() / total) if total else float("nan")
