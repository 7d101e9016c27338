"""Focal loss (Lin et al. 2017) for binary, multiclass and multilabel segmentation."""

from typing import List, Optional

import torch
from torch.nn.modules.loss import _Loss

from ._functional import (
    check_choice,
    check_class_weights,
    check_loss_shapes,
    check_mode,
    check_target_values,
    focal_loss_with_logits,
)
from .constants import BINARY_MODE, MULTICLASS_MODE

__all__ = ["FocalLoss"]

_REDUCTIONS = ("mean", "sum", "batchwise_mean", "none")


class FocalLoss(_Loss):
    """Sigmoid focal loss, ``-alpha_t (1 - p_t)^gamma log(p_t)`` (Lin et al. 2017, eq. 5).

    * binary: every pixel is one binary decision; ``reduction`` applies to the flat vector of their losses
      (``"none"`` returns that vector, ignored pixels removed).
    * multiclass: one binary (one-vs-rest) focal loss per class on the class's logit, reduced per class,
      then averaged over classes (weighted with ``class_weights``).
    * multilabel: the same per-channel treatment, with each channel's own binary target.

    In the two per-class modes the per-class results are averaged and, if ``reduction`` left them
    non-scalar (``"none"``, ``"batchwise_mean"``), averaged once more to a scalar, which is what
    segmentation_models_pytorch 0.6 returns.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        alpha: Positive-class weight in [0, 1], or ``None`` for no class balancing.
        gamma: Focusing parameter (>= 0).
        ignore_index: Target label whose pixels are left out (in multilabel mode, per channel).
        from_logits: ``True``: ``y_pred`` are logits. ``False``: ``y_pred`` are probabilities; they are mapped
            back to logits as SMP 0.6 does: ``logit(p)`` (binary, multilabel) or ``log(p)`` (multiclass),
            clamped by ``eps``.
        eps: Clamp used for ``from_logits=False`` and for the ``normalized`` denominator.
        reduction: ``"mean"``, ``"sum"``, ``"batchwise_mean"`` or ``"none"``.
        normalized: Divide by the sum of the focal factors (per class in the per-class modes).
        reduced_threshold: Threshold of the reduced focal loss (Sergievskiy & Ponamarev 2019), or ``None``.
        class_weights: One weight per class for the per-class average; not allowed in binary mode.

    Shape:
        - y_pred: (N, C, *spatial) (C = 1 for binary).
        - y_true: like y_pred (binary, multilabel) or (N, *spatial) class indices (multiclass).

    Raises:
        ValueError: Unknown ``mode`` or ``reduction``, ``gamma`` not a non-negative number,
            ``class_weights`` with ``mode="binary"``.
    """

    def __init__(
        self,
        mode: str,
        alpha: Optional[float] = None,
        gamma: Optional[float] = 2.0,
        ignore_index: Optional[int] = None,
        from_logits: bool = True,
        eps: float = 1e-7,
        reduction: Optional[str] = "mean",
        normalized: bool = False,
        reduced_threshold: Optional[float] = None,
        class_weights: Optional[List[float]] = None,
    ):
        super().__init__()
        owner = type(self).__name__
        self.mode = check_mode(mode, owner)
        # SMP accepts reduction=None as an alias of "none".
        self.reduction = check_choice(
            "none" if reduction is None else reduction, "reduction", _REDUCTIONS, owner
        )
        if gamma is None or not isinstance(gamma, (int, float)) or gamma < 0:
            raise ValueError(f"{owner}: gamma={gamma!r} must be a non-negative number.")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{owner}: alpha={alpha!r} must lie in [0, 1] or be None.")
        if reduced_threshold is not None and not 0.0 < reduced_threshold <= 1.0:
            raise ValueError(
                f"{owner}: reduced_threshold={reduced_threshold!r} must lie in (0, 1] or be None."
            )
        self.alpha = alpha
        self.gamma = gamma
        self.normalized = normalized
        self.reduced_threshold = reduced_threshold
        self.from_logits = from_logits
        self.ignore_index = ignore_index
        self.eps = eps
        self.class_weights = check_class_weights(class_weights, mode, owner)

    def _focal(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss_with_logits(
            output,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            reduction=self.reduction,
            normalized=self.normalized,
            reduced_threshold=self.reduced_threshold,
            eps=self.eps,
        )

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            y_pred: Logits (or probabilities, see ``from_logits``), (N, C, *spatial).
            y_true: Targets (see class docstring).

        Returns:
            The loss, reduced as described in the class docstring.
        """
        owner = type(self).__name__
        check_loss_shapes(self.mode, y_pred, y_true, owner)
        check_target_values(self.mode, y_pred, y_true, self.ignore_index, owner)
        if not self.from_logits:
            if self.mode == MULTICLASS_MODE:
                y_pred = torch.log(y_pred.clamp_min(self.eps))
            else:
                y_pred = torch.logit(y_pred, eps=self.eps)

        if self.mode == BINARY_MODE:
            output = y_pred.reshape(-1)
            target = y_true.reshape(-1)
            if self.ignore_index is not None:
                keep = target != self.ignore_index
                output, target = output[keep], target[keep]
            return self._focal(output, target)

        num_classes = y_pred.shape[1]
        if self.mode == MULTICLASS_MODE:
            labels = y_true.reshape(y_true.shape[:1] + y_pred.shape[2:])
            keep = None if self.ignore_index is None else labels != self.ignore_index
        class_losses = []
        for c in range(num_classes):
            output = y_pred[:, c]
            if self.mode == MULTICLASS_MODE:
                target = (labels == c).long()
                class_keep = keep
            else:
                target = y_true[:, c]
                class_keep = None if self.ignore_index is None else target != self.ignore_index
            if class_keep is not None:
                output, target = output[class_keep], target[class_keep]
            class_losses.append(self._focal(output, target))

        if any(loss.shape != class_losses[0].shape for loss in class_losses):
            # Multilabel with ignore_index keeps a different number of pixels per channel, so per-pixel
            # losses cannot be stacked; each channel is averaged first (the scalar result is the same notion).
            class_losses = [loss.mean() if loss.numel() > 0 else loss.sum() for loss in class_losses]
        losses = torch.stack(class_losses)  # (C, ...) ; trailing dims only for "none"/"batchwise_mean"
        if self.class_weights is None:
            weights = torch.ones(num_classes, dtype=losses.dtype, device=losses.device)
        else:
            if self.class_weights.numel() != num_classes:
                raise ValueError(
                    f"{owner}: class_weights has {self.class_weights.numel()} entries but y_pred has "
                    f"{num_classes} classes."
                )
            weights = self.class_weights.to(device=losses.device, dtype=losses.dtype)
        weights = weights.reshape((num_classes,) + (1,) * (losses.dim() - 1))
        combined = (losses * weights).sum(0) / weights.sum()
        return combined.mean() if combined.numel() > 0 else combined.sum()
