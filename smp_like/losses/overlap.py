"""Overlap losses built on the soft Tversky index: Dice, Jaccard (IoU) and Tversky."""

from typing import List, Optional

import torch
from torch.nn.modules.loss import _Loss

from ._functional import (
    check_class_weights,
    check_classes,
    check_loss_shapes,
    check_target_values,
    check_mode,
    flatten_prediction_and_target,
    soft_dice_score,
    soft_jaccard_score,
    soft_tversky_score,
    to_probabilities,
)

__all__ = ["DiceLoss", "JaccardLoss", "TverskyLoss"]


class _OverlapLoss(_Loss):
    """Shared forward pass: probabilities -> (N, C, L) -> per-class score over batch and pixels -> loss."""

    def __init__(
        self,
        mode: str,
        classes: Optional[List[int]] = None,
        log_loss: bool = False,
        from_logits: bool = True,
        smooth: float = 0.0,
        ignore_index: Optional[int] = None,
        eps: float = 1e-7,
        class_weights: Optional[List[float]] = None,
    ):
        super().__init__()
        owner = type(self).__name__
        self.mode = check_mode(mode, owner)
        self.classes = check_classes(classes, mode, owner)
        self.from_logits = from_logits
        self.smooth = smooth
        self.eps = eps
        self.log_loss = log_loss
        self.ignore_index = ignore_index
        self.class_weights = check_class_weights(class_weights, mode, owner)

    def compute_score(self, output: torch.Tensor, target: torch.Tensor, smooth=0.0, eps=1e-7, dims=None):
        raise NotImplementedError

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            y_pred: Logits (or probabilities with ``from_logits=False``), (N, C, *spatial).
            y_true: Targets: (N, 1, *spatial) / (N, *spatial) binary, (N, *spatial) class indices for
                multiclass, (N, C, *spatial) for multilabel.

        Returns:
            Scalar loss.

        Raises:
            ValueError: On shapes that do not fit the mode, or class indices out of range.
        """
        owner = type(self).__name__
        check_loss_shapes(self.mode, y_pred, y_true, owner)
        check_target_values(self.mode, y_pred, y_true, self.ignore_index, owner)
        probs = to_probabilities(y_pred, self.mode, self.from_logits)
        p, t = flatten_prediction_and_target(self.mode, probs, y_true, self.ignore_index, owner)

        # Sum over batch and pixels: one score per class for the whole batch (not per image).
        dims = (0, 2)
        scores = self.compute_score(p, t, smooth=self.smooth, eps=self.eps, dims=dims)
        if self.log_loss:
            loss = -torch.log(scores.clamp_min(self.eps))
        else:
            loss = 1.0 - scores
        # The score of a class with no target pixels is degenerate (any prediction is "wrong", or smoothed
        # to 1);
        # such classes contribute zero, which also keeps empty or fully ignored batches finite.
        loss = loss * (t.sum(dims) > 0).to(loss.dtype)
        return self.aggregate_loss(loss)

    def _weights_for(self, loss: torch.Tensor) -> torch.Tensor:
        num_classes = loss.shape[0]
        if self.class_weights is None:
            return torch.ones(num_classes, dtype=loss.dtype, device=loss.device)
        if self.class_weights.numel() != num_classes:
            raise ValueError(
                f"{type(self).__name__}: class_weights has {self.class_weights.numel()} entries but y_pred "
                f"has {num_classes} classes; give one weight per class (before any `classes` selection)."
            )
        return self.class_weights.to(device=loss.device, dtype=loss.dtype)

    def aggregate_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Weighted mean of the per-class losses over the selected classes."""
        weights = self._weights_for(loss)
        if self.classes is not None:
            if int(self.classes.max()) >= loss.shape[0]:
                raise ValueError(
                    f"{type(self).__name__}: classes={self.classes.tolist()} index beyond the "
                    f"{loss.shape[0]} channels of y_pred."
                )
            index = self.classes.to(loss.device)
            loss = loss[index]
            weights = weights[index]
        return (loss * weights).sum() / weights.sum()


class DiceLoss(_OverlapLoss):
    """Soft Dice loss for binary, multiclass and multilabel segmentation (Milletari et al. 2016).

    The Dice coefficient of each class is computed over the whole batch,
    ``(2 TP + 2 smooth) / (2 TP + FP + FN + 2 smooth)`` with soft counts, and the loss is ``1 - Dice`` (or
    ``-log(Dice)`` with ``log_loss``), averaged over classes that have target pixels.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        classes: Class indices to include in the loss; ``None`` includes all. Not allowed in binary mode.
        log_loss: Use ``-log(score)`` instead of ``1 - score``.
        from_logits: Inputs are logits: softmax (multiclass) or sigmoid (binary, multilabel) is applied.
        smooth: Additive smoothing of numerator and denominator.
        ignore_index: Target label whose pixels are left out.
        eps: Lower clamp of the denominator (and of the score for ``log_loss``).
        class_weights: One non-negative weight per class of ``y_pred`` (indexed before ``classes`` is
            applied); the loss is the weighted mean of the per-class losses. Not allowed in binary mode.

    Shape:
        - y_pred: (N, C, *spatial) with any number of spatial dimensions.
        - y_true: (N, 1, *spatial) or (N, *spatial) for binary, (N, *spatial) for multiclass,
          (N, C, *spatial) for multilabel.

    Raises:
        ValueError: Unknown ``mode``; ``classes`` or ``class_weights`` with ``mode="binary"``.
    """

    def compute_score(self, output, target, smooth=0.0, eps=1e-7, dims=None) -> torch.Tensor:
        return soft_dice_score(output, target, smooth, eps, dims)


class JaccardLoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss, ``1 - (TP + smooth) / (TP + FP + FN + smooth)`` per class.

    Arguments and shapes are those of :class:`DiceLoss`.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        classes: the classes the loss is computed over (default: all).
        log_loss: ``-log(IoU)`` instead of ``1 - IoU``.
        from_logits: apply sigmoid / softmax to the predictions first.
        smooth: added to numerator and denominator.
        ignore_index: target value whose pixels are left out.
        eps: lower bound of the denominator.
        class_weights: per-class weights of the mean over classes.
    """

    def compute_score(self, output, target, smooth=0.0, eps=1e-7, dims=None) -> torch.Tensor:
        return soft_jaccard_score(output, target, smooth, eps, dims)


class TverskyLoss(DiceLoss):
    """Tversky loss (Salehi et al. 2017) with the focal exponent of Abraham & Khan (2019).

    Per class ``TI = (TP + smooth) / (TP + alpha FP + beta FN + smooth)``; the loss is
    ``(weighted mean over classes of (1 - TI)) ** gamma``. alpha = beta = 0.5, gamma = 1 is the Dice loss.

    Args:
        mode, classes, log_loss, from_logits, smooth, ignore_index, eps, class_weights: As in
            :class:`DiceLoss`.
        alpha: Weight of false positives.
        beta: Weight of false negatives.
        gamma: Exponent applied to the aggregated loss (focal Tversky loss).
    """

    def __init__(
        self,
        mode: str,
        classes: Optional[List[int]] = None,
        log_loss: bool = False,
        from_logits: bool = True,
        smooth: float = 0.0,
        ignore_index: Optional[int] = None,
        eps: float = 1e-7,
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 1.0,
        class_weights: Optional[List[float]] = None,
    ):
        super().__init__(mode, classes, log_loss, from_logits, smooth, ignore_index, eps, class_weights)
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma

    def compute_score(self, output, target, smooth=0.0, eps=1e-7, dims=None) -> torch.Tensor:
        return soft_tversky_score(output, target, self.alpha, self.beta, smooth, eps, dims)

    def aggregate_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return super().aggregate_loss(loss) ** self.gamma
