"""Shared maths and input checks for the segmentation losses.

Everything here works on tensors with any number of spatial dimensions: inputs are flattened to
(N, C, L) before the overlap scores are taken, so (N, C, H, W) and (N, C, D, H, W) go through the same code.
"""

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .constants import BINARY_MODE, MODES, MULTICLASS_MODE, MULTILABEL_MODE

__all__ = [
    "check_mode",
    "check_choice",
    "check_class_weights",
    "check_classes",
    "check_loss_shapes",
    "to_probabilities",
    "flatten_prediction_and_target",
    "one_hot_target",
    "soft_tversky_score",
    "soft_dice_score",
    "soft_jaccard_score",
    "focal_loss_with_logits",
    "softmax_focal_loss_with_logits",
    "wing_loss",
    "to_tensor",
    "lovasz_grad",
    "lovasz_hinge_flat",
    "lovasz_softmax_flat",
    "label_smoothed_nll_loss",
]


# ------------------------------------------------------------------------------------------------------------
# Argument and shape checks
# ------------------------------------------------------------------------------------------------------------


def check_mode(mode: str, owner: str) -> str:
    """Return ``mode`` if it is one of the three loss modes, else raise ``ValueError`` naming the choices."""
    if mode not in MODES:
        raise ValueError(f"{owner}: mode={mode!r} is not supported; choose one of {list(MODES)}.")
    return mode


def check_choice(value, name: str, choices: Sequence, owner: str):
    """Return ``value`` if it is in ``choices``; else raise ``ValueError`` naming argument, value, choices."""
    if value not in choices:
        raise ValueError(f"{owner}: {name}={value!r} is not supported; choose one of {list(choices)}.")
    return value


def check_class_weights(
    class_weights: Optional[Union[Sequence[float], torch.Tensor]], mode: str, owner: str
) -> Optional[torch.Tensor]:
    """Validate per-class weights at construction; they have no meaning with a single (binary) channel."""
    if class_weights is None:
        return None
    if mode == BINARY_MODE:
        raise ValueError(
            f"{owner}: class_weights={class_weights!r} are not supported with mode='binary' "
            "(there is only one class); use mode='multiclass' or 'multilabel', or drop class_weights."
        )
    weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten().clone()
    if weights.numel() == 0:
        raise ValueError(f"{owner}: class_weights must not be empty.")
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError(f"{owner}: class_weights={class_weights!r} must be finite and non-negative.")
    if weights.sum() <= 0:
        raise ValueError(f"{owner}: class_weights={class_weights!r} must not sum to zero.")
    return weights


def check_classes(classes: Optional[Sequence[int]], mode: str, owner: str) -> Optional[torch.Tensor]:
    """Validate the subset of classes a loss is restricted to."""
    if classes is None:
        return None
    if mode == BINARY_MODE:
        raise ValueError(
            f"{owner}: classes={classes!r} is not supported with mode='binary' (there is only one class)."
        )
    index = torch.as_tensor(classes, dtype=torch.long).flatten()
    if index.numel() == 0:
        raise ValueError(f"{owner}: classes must not be empty; pass None to use every class.")
    if (index < 0).any():
        raise ValueError(f"{owner}: classes={classes!r} must be non-negative class indices.")
    return index


def _without_singleton_dims(shape: torch.Size) -> Tuple[int, ...]:
    """The batch size followed by the non-singleton sizes: (N, 1, 1, L) -> (N, L)."""
    shape = tuple(shape)
    return shape[:1] + tuple(size for size in shape[1:] if size != 1)


def check_loss_shapes(mode: str, y_pred: torch.Tensor, y_true: torch.Tensor, owner: str) -> None:
    """Raise ``ValueError`` unless ``y_pred`` and ``y_true`` have the shapes ``mode`` expects.

    binary: equal shapes up to singleton dimensions ((N, 1, *S) vs (N, *S), (N, 1, L) vs (N, 1, 1, L)): both are
    flattened per sample, as SMP does, so only the per-sample element layout must agree.
    multilabel: equal shapes (N, C, *S).
    multiclass: ``y_pred`` (N, C, *S) and ``y_true`` (N, *S) or (N, 1, *S).
    """
    if not isinstance(y_pred, torch.Tensor) or not isinstance(y_true, torch.Tensor):
        raise TypeError(
            f"{owner}: y_pred and y_true must be tensors, got {type(y_pred).__name__} and "
            f"{type(y_true).__name__}."
        )
    pred_shape, true_shape = tuple(y_pred.shape), tuple(y_true.shape)
    if y_pred.dim() == 0 or y_true.dim() == 0 or pred_shape[0] != true_shape[0]:
        raise ValueError(
            f"{owner}: y_pred shape {pred_shape} and y_true shape {true_shape} must share the batch "
            "dimension."
        )
    if mode == BINARY_MODE:
        ok = _without_singleton_dims(y_pred.shape) == _without_singleton_dims(y_true.shape)
        expected = "(N, 1, *spatial) and (N, 1, *spatial) or (N, *spatial)"
    elif mode == MULTILABEL_MODE:
        ok = y_pred.dim() >= 2 and pred_shape == true_shape
        expected = "(N, C, *spatial) for both"
    else:  # multiclass
        ok = y_pred.dim() >= 2 and (
            true_shape == pred_shape[:1] + pred_shape[2:]
            or true_shape == pred_shape[:1] + (1,) + pred_shape[2:]
        )
        expected = "(N, C, *spatial) and (N, *spatial) class indices"
    if not ok:
        raise ValueError(
            f"{owner}: y_pred shape {pred_shape} and y_true shape {true_shape} do not fit mode={mode!r}; "
            f"expected {expected}."
        )


def check_target_values(
    mode: str, y_pred: torch.Tensor, y_true: torch.Tensor, ignore_index: Optional[int], owner: str
) -> None:
    """Raise ``ValueError`` for target values that no mode can mean, ``ignore_index`` aside.

    multiclass: class indices outside ``[0, C)`` (C = channels of ``y_pred``); binary and multilabel: targets
    outside ``[0, 1]`` (soft targets inside it are fine). Such labels used to be counted in no class, or gave
    a negative focal loss, without a word.
    """
    values = y_true if ignore_index is None else y_true[y_true != ignore_index]
    if values.numel() == 0:
        return
    low, high = values.min().item(), values.max().item()
    if mode == MULTICLASS_MODE:
        num_classes = y_pred.shape[1]
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{owner}: y_true holds class index {low if low < 0 else high}, outside "
                f"[0, {num_classes}) for y_pred with {num_classes} channels; pass ignore_index for labels "
                "that mark ignored pixels."
            )
    elif low < 0 or high > 1:
        raise ValueError(
            f"{owner}: y_true holds {low if low < 0 else high}, outside [0, 1] for mode={mode!r}; pass "
            "ignore_index for labels that mark ignored pixels."
        )


# ------------------------------------------------------------------------------------------------------------
# Probabilities and flattening
# ------------------------------------------------------------------------------------------------------------


def to_probabilities(y_pred: torch.Tensor, mode: str, from_logits: bool) -> torch.Tensor:
    """Softmax over channels (multiclass) or element-wise sigmoid (binary, multilabel) when given logits."""
    if not from_logits:
        return y_pred
    if mode == MULTICLASS_MODE:
        return y_pred.softmax(dim=1)
    return torch.sigmoid(y_pred)


def one_hot_target(labels: torch.Tensor, num_classes: int, owner: str) -> torch.Tensor:
    """One-hot encode class indices (N, L) -> (N, C, L), refusing labels outside ``[0, num_classes)``.

    ``F.one_hot`` fails with a terse RuntimeError on such labels; a stray 255 (an un-declared ignore label) is
    a common mistake worth a clear message.
    """
    labels = labels.long()
    if labels.numel() > 0:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{owner}: y_true holds class index {low if low < 0 else high}, outside "
                f"[0, {num_classes}) for y_pred with {num_classes} channels; pass ignore_index for labels "
                "that mark ignored pixels."
            )
    return F.one_hot(labels, num_classes).movedim(-1, 1)


def flatten_prediction_and_target(
    mode: str,
    probs: torch.Tensor,
    y_true: torch.Tensor,
    ignore_index: Optional[int],
    owner: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bring probabilities and targets to (N, C, L) with ignored positions zeroed in both.

    Zeroing an ignored position in both the prediction and the one-hot target removes it from every
    intersection and cardinality sum, which is what "ignore" means for the overlap scores.
    """
    n = probs.shape[0]
    # Explicit sizes, not -1: reshape cannot infer -1 for an empty batch (N = 0).
    if mode == BINARY_MODE:
        length = math.prod(probs.shape[1:])
        p = probs.reshape(n, 1, length)
        t = y_true.reshape(n, 1, length)
        if ignore_index is not None:
            keep = t != ignore_index
            p = p * keep
            t = t * keep
        return p, t.to(p.dtype)
    if mode == MULTILABEL_MODE:
        c = probs.shape[1]
        p = probs.flatten(2) if probs.dim() > 2 else probs.unsqueeze(2)
        t = y_true.reshape(p.shape)
        if ignore_index is not None:
            keep = t != ignore_index
            p = p * keep
            t = t * keep
        return p, t.to(p.dtype)
    # multiclass: class indices -> one-hot over the channel axis
    c = probs.shape[1]
    p = probs.flatten(2) if probs.dim() > 2 else probs.unsqueeze(2)
    labels = y_true.reshape(n, p.shape[2])
    if ignore_index is not None:
        keep = labels != ignore_index
        labels = torch.where(keep, labels, torch.zeros_like(labels))
        t = one_hot_target(labels, c, owner) * keep.unsqueeze(1)
        p = p * keep.unsqueeze(1)
    else:
        t = one_hot_target(labels, c, owner)
    return p, t.to(p.dtype)


# ------------------------------------------------------------------------------------------------------------
# Overlap scores
# ------------------------------------------------------------------------------------------------------------


def soft_tversky_score(
    output: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    beta: float,
    smooth: float = 0.0,
    eps: float = 1e-7,
    dims: Optional[Tuple[int, ...]] = None,
) -> torch.Tensor:
    """Soft Tversky index (Salehi et al. 2017, eq. 3) with additive smoothing.

    ``TI = (TP + smooth) / (TP + alpha * FP + beta * FN + smooth)`` where TP, FP, FN are soft counts
    (sums of products of probabilities and targets). alpha = beta = 1/2 gives the Dice coefficient and
    alpha = beta = 1 the Jaccard index, so one function serves all three losses.
    """
    tp = torch.sum(output * target, dim=dims)
    fp = torch.sum(output * (1.0 - target), dim=dims)
    fn = torch.sum((1.0 - output) * target, dim=dims)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(eps)


def soft_dice_score(output, target, smooth: float = 0.0, eps: float = 1e-7, dims=None) -> torch.Tensor:
    """Soft Dice coefficient ``(2 TP + 2 smooth) / (2 TP + FP + FN + 2 smooth)`` (Milletari et al. 2016).

    The smoothing term enters twice because Dice is computed as the Tversky index with alpha = beta = 1/2;
    segmentation_models_pytorch 0.6 uses the same convention.
    """
    return soft_tversky_score(output, target, 0.5, 0.5, smooth, eps, dims)


def soft_jaccard_score(output, target, smooth: float = 0.0, eps: float = 1e-7, dims=None) -> torch.Tensor:
    """Soft Jaccard index ``(TP + smooth) / (TP + FP + FN + smooth)`` (Tversky, alpha = beta = 1)."""
    return soft_tversky_score(output, target, 1.0, 1.0, smooth, eps, dims)


# ------------------------------------------------------------------------------------------------------------
# Focal loss
# ------------------------------------------------------------------------------------------------------------


def focal_loss_with_logits(
    output: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: Optional[float] = None,
    reduction: str = "mean",
    normalized: bool = False,
    reduced_threshold: Optional[float] = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017, eq. 5), optionally "reduced" (Sergievskiy & Ponamarev 2019).

    ``FL = -alpha_t * (1 - p_t)^gamma * log(p_t)`` where ``p_t`` is the probability given to the true label.
    With ``reduced_threshold`` the modulating factor becomes ``((1 - p_t) / threshold)^gamma`` for confident
    predictions (``p_t >= threshold``) and 1 below it. ``normalized`` divides by the sum of modulating
    factors.

    Args:
        output: Logits of any shape.
        target: Binary targets of the same shape.
        gamma: Focusing parameter (>= 0); 0 gives plain binary cross-entropy.
        alpha: Weight of the positive class in [0, 1]; ``None`` weighs both classes equally.
        reduction: ``"mean"``, ``"sum"``, ``"batchwise_mean"`` (sum over dim 0) or ``"none"``.
        normalized: Divide by the sum of the focal factors (Lin et al. normalise by the positive count).
        reduced_threshold: Threshold of the reduced focal loss, or ``None`` for the standard loss.
        eps: Lower clamp of the normaliser.

    Returns:
        The reduced loss.
    """
    target = target.to(output.dtype)
    # -log(p_t) is exactly the element-wise BCE; computing it from logits is stable for large |output|.
    logpt = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    pt = torch.exp(-logpt)
    if reduced_threshold is None:
        focal_term = (1.0 - pt).pow(gamma)
    else:
        focal_term = ((1.0 - pt) / reduced_threshold).pow(gamma)
        focal_term = torch.where(pt < reduced_threshold, torch.ones_like(focal_term), focal_term)
    loss = focal_term * logpt
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    if normalized:
        loss = loss / focal_term.sum().clamp_min(eps)
    if reduction == "mean":
        # Every position ignored: the mean of nothing is taken as 0 (SMP returns NaN) so training can go on.
        return loss.mean() if loss.numel() > 0 else loss.sum()
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchwise_mean":
        return loss.sum(0)
    return loss


def _focal_factor(pt: torch.Tensor, gamma: float, reduced_threshold: Optional[float]) -> torch.Tensor:
    """``(1 - p_t)^gamma``, or the reduced focal factor (1 below ``reduced_threshold``)."""
    if reduced_threshold is None:
        return (1.0 - pt).pow(gamma)
    factor = ((1.0 - pt) / reduced_threshold).pow(gamma)
    return torch.where(pt < reduced_threshold, torch.ones_like(factor), factor)


def softmax_focal_loss_with_logits(
    output: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    reduction: str = "mean",
    normalized: bool = False,
    reduced_threshold: Optional[float] = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Multi-class (softmax) focal loss (Lin et al. 2017, eq. 5 with ``p_t`` the softmax of the true class).

    ``FL = -(1 - p_t)^gamma * log(p_t)`` per position, with the reduced variant and normalisation of
    :func:`focal_loss_with_logits`. SMP 0.6 exposes it in ``losses._functional``; same arguments and values.

    Args:
        output: Logits (N, C, *spatial).
        target: Class indices (N, *spatial).
        gamma: Focusing parameter (>= 0); 0 gives plain cross-entropy.
        reduction: ``"mean"``, ``"sum"``, ``"batchwise_mean"`` (sum over dim 0) or ``"none"``.
        normalized: Divide by the sum of the focal factors.
        reduced_threshold: Threshold of the reduced focal loss, or ``None`` for the standard loss.
        eps: Lower clamp of the normaliser.

    Returns:
        The reduced loss (per position, (N, *spatial), with ``reduction="none"``).
    """
    log_probs = F.log_softmax(output, dim=1)
    # -log p_t: the log-probability of the true class at every position.
    logpt = -log_probs.gather(1, target.long().unsqueeze(1)).squeeze(1)
    pt = torch.exp(-logpt)
    focal_term = _focal_factor(pt, gamma, reduced_threshold)
    loss = focal_term * logpt
    if normalized:
        loss = loss / focal_term.sum().clamp_min(eps)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchwise_mean":
        return loss.sum(0)
    return loss


def wing_loss(
    output: torch.Tensor, target: torch.Tensor, width: float = 5, curvature: float = 0.5, reduction: str = "mean"
) -> torch.Tensor:
    """Wing loss for regression (Feng et al. 2018, "Wing Loss for Robust Facial Landmark Localisation", eq. 5).

    With ``x = |target - output|``, ``w = width`` and ``e = curvature``: ``w * ln(1 + x / e)`` for ``x < w``,
    else ``x - C`` with ``C = w - w * ln(1 + w / e)`` so the two pieces meet at ``x = w``.

    Args:
        output, target: Tensors of the same shape.
        width: ``w``, where the log part ends.
        curvature: ``e``, the curvature of the log part.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss.
    """
    x = (target - output).abs()
    c = width - width * math.log(1 + width / curvature)
    loss = torch.where(x < width, width * torch.log1p(x / curvature), x - c)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def to_tensor(
    x: Union[torch.Tensor, np.ndarray, Sequence, float, int], dtype: Optional[torch.dtype] = None
) -> torch.Tensor:
    """A tensor from a tensor, a NumPy array, a list/tuple or a number (optionally cast to ``dtype``).

    Raises:
        TypeError: for anything else (e.g. a string).
    """
    if isinstance(x, str) or not isinstance(x, (torch.Tensor, np.ndarray, list, tuple, int, float)):
        raise TypeError(f"to_tensor: `x` must be a tensor, array, list, tuple or number, got {type(x).__name__}")
    tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return tensor if dtype is None else tensor.to(dtype)


# ------------------------------------------------------------------------------------------------------------
# Lovasz extension (Berman et al. 2018)
# ------------------------------------------------------------------------------------------------------------


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at a sorted error vector (Berman et al., eq. 8).

    For ground truth ordered by decreasing error, the i-th component is ``J(i) - J(i-1)`` where ``J(i)`` is
    the Jaccard loss of predicting the first ``i`` elements as errors.
    """
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovasz hinge (Berman et al., eq. 11) on flat logits and {0, 1} labels."""
    if labels.numel() == 0:
        # Nothing left after ignoring: zero, still connected to the graph so backward() works.
        return logits.sum() * 0.0
    labels = labels.to(logits.dtype)
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, dim=0, descending=True)
    grad = lovasz_grad(labels[order])
    return torch.dot(F.relu(errors_sorted), grad)


def lovasz_softmax_flat(probas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-class Lovasz-softmax (Berman et al., eq. 12) over the classes present in ``labels``.

    Args:
        probas: (P, C) class probabilities.
        labels: (P,) class indices.
    """
    if probas.numel() == 0:
        return probas.sum() * 0.0
    num_classes = probas.shape[1]
    losses = []
    for c in range(num_classes):
        fg = (labels == c).to(probas.dtype)
        if fg.sum() == 0:  # "present" classes only: an absent class has no Jaccard loss to bound
            continue
        class_pred = probas[:, 0] if num_classes == 1 else probas[:, c]
        errors = (fg - class_pred).abs()
        errors_sorted, order = torch.sort(errors, dim=0, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    if not losses:
        return probas.sum() * 0.0
    return torch.stack(losses).mean()


# ------------------------------------------------------------------------------------------------------------
# Label-smoothed negative log-likelihood
# ------------------------------------------------------------------------------------------------------------


def label_smoothed_nll_loss(
    lprobs: torch.Tensor,
    target: torch.Tensor,
    epsilon: float,
    ignore_index: Optional[int] = None,
    reduction: str = "mean",
    dim: int = -1,
) -> torch.Tensor:
    """Cross-entropy against smoothed one-hot targets (Szegedy et al. 2016, sec. 7).

    The target distribution is ``(1 - epsilon) * one_hot + epsilon / C``, so the loss is
    ``(1 - epsilon) * NLL + (epsilon / C) * sum_c(-log p_c)``. Ignored positions contribute zero but, as in
    segmentation_models_pytorch, still count in the denominator of ``reduction="mean"``.

    Args:
        lprobs: Log-probabilities with the class axis at ``dim``.
        target: Class indices, shaped like ``lprobs`` without ``dim`` (or with size 1 there).
        epsilon: Smoothing factor in [0, 1].
        ignore_index: Label to ignore, or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-position loss, class axis removed).
        dim: Class axis.
    """
    dim = dim % lprobs.dim()
    if target.dim() == lprobs.dim() - 1:
        target = target.unsqueeze(dim)
    target = target.long()
    if ignore_index is not None:
        pad_mask = target.eq(ignore_index)
        target = target.masked_fill(pad_mask, 0)
    nll_loss = -lprobs.gather(dim=dim, index=target)
    smooth_loss = -lprobs.sum(dim=dim, keepdim=True)
    if ignore_index is not None:
        nll_loss = nll_loss.masked_fill(pad_mask, 0.0)
        smooth_loss = smooth_loss.masked_fill(pad_mask, 0.0)
    loss = (1.0 - epsilon) * nll_loss + (epsilon / lprobs.shape[dim]) * smooth_loss
    loss = loss.squeeze(dim)
    if reduction == "mean":
        # An empty batch has no mean (NaN); its loss is 0, still connected to the graph, like the other losses.
        return loss.mean() if loss.numel() > 0 else loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss
