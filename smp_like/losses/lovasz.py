"""Lovasz-hinge and Lovasz-softmax losses (Berman, Rannen Triki & Blaschko, CVPR 2018)."""

from typing import Optional

import torch
from torch.nn.modules.loss import _Loss

from ._functional import (
    check_loss_shapes,
    check_mode,
    check_target_values,
    lovasz_hinge_flat,
    lovasz_softmax_flat,
)
from .constants import MULTICLASS_MODE

__all__ = ["LovaszLoss"]


class LovaszLoss(_Loss):
    """Convex surrogate of the Jaccard loss via its Lovasz extension.

    * binary and multilabel: Lovasz hinge on the logits (every element is one binary decision; multilabel
      channels are pooled together, as in SMP).
    * multiclass: Lovasz-softmax on softmax probabilities, averaged over the classes present in the target.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        per_image: Compute the loss per image and average, instead of over the whole batch.
        ignore_index: Target label whose pixels are left out.
        from_logits: Kept for signature compatibility. segmentation_models_pytorch 0.6 ignores it (the hinge
            always reads logits and multiclass always applies softmax); smp_like does the same so that
            numbers agree, see docs/losses_metrics.md.

    Shape:
        - y_pred: (N, C, *spatial) (C = 1 for binary).
        - y_true: like y_pred (binary, multilabel) or (N, *spatial) class indices (multiclass).
    """

    def __init__(
        self,
        mode: str,
        per_image: bool = False,
        ignore_index: Optional[int] = None,
        from_logits: bool = True,
    ):
        super().__init__()
        self.mode = check_mode(mode, type(self).__name__)
        self.ignore_index = ignore_index
        self.per_image = per_image
        self.from_logits = from_logits

    def _hinge(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, labels = logits.reshape(-1), labels.reshape(-1)
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            logits, labels = logits[keep], labels[keep]
        return lovasz_hinge_flat(logits, labels)

    def _softmax(self, probas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_classes = probas.shape[1]
        probas = probas.movedim(1, -1).reshape(-1, num_classes)
        labels = labels.reshape(-1)
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            probas, labels = probas[keep], labels[keep]
        return lovasz_softmax_flat(probas, labels)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss (scalar) for ``y_pred`` logits and targets ``y_true``.

        Raises:
            ValueError: for shapes that do not fit the mode, or targets outside the valid range.
        """
        check_loss_shapes(self.mode, y_pred, y_true, type(self).__name__)
        check_target_values(self.mode, y_pred, y_true, self.ignore_index, type(self).__name__)
        if self.mode == MULTICLASS_MODE:
            probas = y_pred.softmax(dim=1)
            labels = y_true.reshape(y_true.shape[:1] + y_pred.shape[2:])
            if self.per_image:
                return torch.stack([self._softmax(p[None], t[None]) for p, t in zip(probas, labels)]).mean()
            return self._softmax(probas, labels)
        if self.per_image:
            return torch.stack([self._hinge(p, t) for p, t in zip(y_pred, y_true)]).mean()
        return self._hinge(y_pred, y_true)
