"""Confusion-matrix metrics with the API of ``segmentation_models_pytorch.metrics``.

Two steps: :func:`get_stats` counts true/false positives/negatives per image and class, giving four
(N, C) integer tensors; a metric function (``iou_score``, ``f1_score``, ...) turns the counts into a score
and reduces it. Inputs may have any number of spatial dimensions: (N, C, H, W), (N, C, D, H, W), ...

Reductions (``reduction=``):

* ``"micro"``: sum counts over images and classes, then one score.
* ``"macro"``: sum counts over images, one score per class, then the mean over classes
  (with ``class_weights``: mean of ``score * w / sum(w)``, as SMP does).
* ``"weighted"``: like macro, but the weighted sum ``sum(score * w / sum(w))``; needs ``class_weights``.
* ``"micro-imagewise"``: sum counts over classes, one score per image, then the mean over images.
* ``"macro-imagewise"``: one score per image and class, mean over images, then mean over classes.
* ``"weighted-imagewise"``: as macro-imagewise with weights ``w / sum(w)`` (then the mean, as SMP does).
* ``"none"`` or ``None``: the (N, C) scores.

``zero_division`` replaces scores that are 0/0 (NaN): a number, or ``"warn"`` (use 0 and warn). Unlike
SMP 0.6, the replacement is applied for ``"micro"`` too, so no reduction returns NaN.
"""

import math
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "get_stats",
    "fbeta_score",
    "f1_score",
    "dice_score",
    "iou_score",
    "accuracy",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "balanced_accuracy",
    "positive_predictive_value",
    "negative_predictive_value",
    "false_negative_rate",
    "false_positive_rate",
    "false_discovery_rate",
    "false_omission_rate",
    "positive_likelihood_ratio",
    "negative_likelihood_ratio",
]

_MODES = ("binary", "multiclass", "multilabel")
_REDUCTIONS = (
    "micro",
    "macro",
    "weighted",
    "micro-imagewise",
    "macro-imagewise",
    "weighted-imagewise",
    "none",
    None,
)

Stats = Tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor, torch.LongTensor]


# ------------------------------------------------------------------------------------------------------------
# get_stats
# ------------------------------------------------------------------------------------------------------------


def get_stats(
    output: Union[torch.LongTensor, torch.FloatTensor],
    target: torch.LongTensor,
    mode: str,
    ignore_index: Optional[int] = None,
    threshold: Optional[Union[float, List[float]]] = None,
    num_classes: Optional[int] = None,
) -> Stats:
    """Count true positives, false positives, false negatives and true negatives per image and class.

    Args:
        output: Predictions. binary / multilabel: (N, C, *spatial) integer masks, or scores when
            ``threshold`` is given. multiclass: (N, *spatial) predicted class indices.
        target: Integer targets shaped like ``output``.
        mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        ignore_index: Target label whose pixels are left out of all four counts. multiclass: must lie
            outside ``[0, num_classes)``. binary / multilabel (an smp_like extension; SMP raises): compared
            with ``target`` before thresholding.
        threshold: binary / multilabel only: ``output >= threshold`` (and ``target >= threshold``, as SMP
            does) become 1. A list gives one threshold per channel (extension).
        num_classes: Number of classes, required for multiclass.

    Returns:
        ``(tp, fp, fn, tn)``, each an int64 tensor of shape (N, C).

    Raises:
        ValueError: Non-integer ``target``; float ``output`` without ``threshold``; unknown ``mode``;
            ``threshold`` with multiclass; shape mismatch; missing ``num_classes`` or ``ignore_index`` inside
            the class range (multiclass); fewer than 2 dimensions (binary, multilabel); labels outside
            [0, num_classes) (multiclass) or, without ``threshold``, outside {0, 1} (binary, multilabel),
            ``ignore_index`` aside. An empty batch (N = 0) gives empty (0, C) counts.
    """
    if mode not in _MODES:
        raise ValueError(f"get_stats: mode={mode!r} is not supported; choose one of {list(_MODES)}.")
    if torch.is_floating_point(target):
        raise ValueError(f"get_stats: target must have an integer dtype, got {target.dtype}.")
    if torch.is_floating_point(output) and threshold is None:
        raise ValueError(
            f"get_stats: output has floating dtype {output.dtype}; pass threshold=... to binarise it, "
            "or pass integer predictions."
        )
    if mode == "multiclass" and threshold is not None:
        raise ValueError(
            f"get_stats: threshold={threshold!r} is not supported for mode='multiclass' (pass class indices, "
            "e.g. logits.argmax(1))."
        )
    if output.shape != target.shape:
        raise ValueError(
            f"get_stats: output shape {tuple(output.shape)} and target shape {tuple(target.shape)} must be "
            "equal."
        )

    if mode == "multiclass":
        if num_classes is None:
            raise ValueError("get_stats: num_classes is required for mode='multiclass'.")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(
                f"get_stats: ignore_index={ignore_index} lies inside the class range 0..{num_classes - 1}; "
                "use a label outside it (e.g. -1 or 255)."
            )
        _check_label_range("target", target, ignore_index, 0, num_classes - 1, f"[0, {num_classes})")
        _check_label_range("output", output, None, 0, num_classes - 1, f"[0, {num_classes})")
        return _multiclass_stats(output, target, num_classes, ignore_index)

    if output.dim() < 2:
        raise ValueError(
            f"get_stats: mode={mode!r} needs (N, C, *spatial) inputs, got shape {tuple(output.shape)}."
        )
    if threshold is None:
        # Without a threshold the masks are read as they are: anything but 0 and 1 would be counted wrongly.
        _check_label_range("target", target, ignore_index, 0, 1, "{0, 1}")
        _check_label_range("output", output, None, 0, 1, "{0, 1}")
    return _multilabel_stats(output, target, ignore_index, threshold)


def _check_label_range(
    name: str, labels: torch.Tensor, ignore_index: Optional[int], low: int, high: int, valid: str
) -> None:
    """Raise ``ValueError`` naming ``name`` and the offending value if a label (``ignore_index`` aside) lies
    outside ``[low, high]``; such labels used to be counted in no class without a word."""
    values = labels if ignore_index is None else labels[labels != ignore_index]
    if values.numel() == 0:
        return
    smallest, largest = int(values.min()), int(values.max())
    if smallest < low or largest > high:
        bad = smallest if smallest < low else largest
        hint = "; pass ignore_index for labels that mark ignored pixels" if name == "target" else ""
        raise ValueError(f"get_stats: {name} holds {bad}, outside {valid}{hint}.")


def _multiclass_stats(output: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index) -> Stats:
    n = output.shape[0]
    # Explicit sizes, not -1: reshape cannot infer -1 for an empty batch (N = 0 gives empty (0, C) counts).
    pixels = math.prod(output.shape[1:])
    out = output.reshape(n, pixels).long()
    tgt = target.reshape(n, pixels).long()
    valid = torch.ones_like(tgt, dtype=torch.bool) if ignore_index is None else tgt != ignore_index
    # get_stats has refused labels outside [0, C) other than ignore_index; the masks below only drop ignored pixels.
    pred_ok = valid & (out >= 0) & (out < num_classes)
    true_ok = valid & (tgt >= 0) & (tgt < num_classes)
    offset = (torch.arange(n, device=out.device) * num_classes).unsqueeze(1)
    size = n * num_classes

    def count(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return torch.bincount((labels + offset)[keep], minlength=size).reshape(n, num_classes)

    tp = count(tgt, true_ok & (out == tgt))
    fp = count(out, pred_ok) - tp
    fn = count(tgt, true_ok) - tp
    tn = valid.sum(1, keepdim=True) - tp - fp - fn
    return tp, fp, fn, tn


def _multilabel_stats(output: torch.Tensor, target: torch.Tensor, ignore_index, threshold) -> Stats:
    n, c = target.shape[:2]
    ignored = None if ignore_index is None else target == ignore_index
    if threshold is not None:
        thr = torch.as_tensor(threshold, dtype=torch.float64, device=output.device)
        if thr.dim() > 0:
            if thr.numel() != c:
                raise ValueError(
                    f"get_stats: threshold has {thr.numel()} entries but the inputs have {c} channels."
                )
            thr = thr.reshape((1, c) + (1,) * (output.dim() - 2))
        output = (output >= thr).long()
        target = (target >= thr).long()
    output = output.long()
    target = target.long()
    if ignored is not None:
        output = output.masked_fill(ignored, 0)
        target = target.masked_fill(ignored, 0)
    length = math.prod(output.shape[2:])
    output = output.reshape(n, c, length)
    target = target.reshape(n, c, length)
    pixels = output.shape[2]
    tp = (output * target).sum(2)
    fp = output.sum(2) - tp
    fn = target.sum(2) - tp
    kept = pixels if ignored is None else pixels - ignored.reshape(n, c, length).sum(2)
    tn = kept - (tp + fp + fn)
    return tp, fp, fn, tn


# ------------------------------------------------------------------------------------------------------------
# Reduction machinery
# ------------------------------------------------------------------------------------------------------------


def _handle_zero_division(x: torch.Tensor, zero_division: Union[str, float]) -> torch.Tensor:
    nans = torch.isnan(x)
    if not bool(nans.any()):
        return x
    if zero_division == "warn":
        warnings.warn("Zero division in metric calculation!", stacklevel=4)
        value = 0.0
    else:
        value = float(zero_division)
    return torch.where(nans, torch.tensor(value, dtype=x.dtype, device=x.device), x)


def _compute_metric(
    metric_fn: Callable,
    tp: torch.Tensor,
    fp: torch.Tensor,
    fn: torch.Tensor,
    tn: torch.Tensor,
    reduction: Optional[str],
    class_weights: Optional[Union[Sequence[float], torch.Tensor]],
    zero_division: Union[str, float],
    name: str,
    **metric_kwargs,
) -> torch.Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"{name}: reduction={reduction!r} is not supported; choose one of {list(_REDUCTIONS)}."
        )
    if not (isinstance(zero_division, (int, float)) and not isinstance(zero_division, bool)) and (
        zero_division != "warn"
    ):
        raise ValueError(f"{name}: zero_division={zero_division!r} must be a number or 'warn'.")
    counts = (tp, fp, fn, tn)
    if any(not isinstance(t, torch.Tensor) for t in counts):
        raise TypeError(f"{name}: tp, fp, fn, tn must be tensors (as returned by get_stats).")
    if any(t.shape != tp.shape for t in counts):
        raise ValueError(
            f"{name}: tp, fp, fn, tn must share one shape, got {[tuple(t.shape) for t in counts]}."
        )
    if reduction is not None and reduction.endswith("imagewise") and tp.dim() != 2:
        raise ValueError(f"{name}: reduction={reduction!r} needs (N, C) counts, got shape {tuple(tp.shape)}.")
    if class_weights is None and reduction in ("weighted", "weighted-imagewise"):
        raise ValueError(f"{name}: reduction={reduction!r} needs class_weights (one weight per class).")

    if class_weights is not None:
        weights = torch.as_tensor(class_weights, device=tp.device).to(torch.get_default_dtype()).flatten()
        if tp.dim() > 0 and weights.numel() != tp.shape[-1]:
            raise ValueError(
                f"{name}: class_weights has {weights.numel()} entries but the counts have {tp.shape[-1]} "
                "classes."
            )
        weights = weights / weights.sum()
    else:
        weights = 1.0

    if reduction == "micro":
        score = metric_fn(tp.sum(), fp.sum(), fn.sum(), tn.sum(), **metric_kwargs)
        return _handle_zero_division(score, zero_division)
    if reduction in ("macro", "weighted"):
        score = metric_fn(tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0), **metric_kwargs)
        score = _handle_zero_division(score, zero_division) * weights
        return score.mean() if reduction == "macro" else score.sum()
    if reduction == "micro-imagewise":
        score = metric_fn(tp.sum(1), fp.sum(1), fn.sum(1), tn.sum(1), **metric_kwargs)
        return _handle_zero_division(score, zero_division).mean()
    if reduction in ("macro-imagewise", "weighted-imagewise"):
        score = _handle_zero_division(metric_fn(tp, fp, fn, tn, **metric_kwargs), zero_division)
        # SMP 0.6 takes the mean (not the sum) of the weighted per-class scores for weighted-imagewise too.
        return (score.mean(0) * weights).mean()
    score = metric_fn(tp, fp, fn, tn, **metric_kwargs)
    return _handle_zero_division(score, zero_division)


def _float(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    dtype = tensors[0].dtype if torch.is_floating_point(tensors[0]) else torch.get_default_dtype()
    return tuple(t.to(dtype) for t in tensors)


# Score formulas on counts (element-wise; 0/0 gives NaN, handled by zero_division).


def _fbeta(tp, fp, fn, tn, beta: float = 1.0):
    tp, fp, fn = _float(tp, fp, fn)
    beta2 = beta**2
    return (1 + beta2) * tp / ((1 + beta2) * tp + beta2 * fn + fp)


def _iou(tp, fp, fn, tn):
    tp, fp, fn = _float(tp, fp, fn)
    return tp / (tp + fp + fn)


def _accuracy(tp, fp, fn, tn):
    tp, fp, fn, tn = _float(tp, fp, fn, tn)
    return (tp + tn) / (tp + fp + fn + tn)


def _sensitivity(tp, fp, fn, tn):
    tp, fn = _float(tp, fn)
    return tp / (tp + fn)


def _specificity(tp, fp, fn, tn):
    tn, fp = _float(tn, fp)
    return tn / (tn + fp)


def _balanced_accuracy(tp, fp, fn, tn):
    return (_sensitivity(tp, fp, fn, tn) + _specificity(tp, fp, fn, tn)) / 2


def _ppv(tp, fp, fn, tn):
    tp, fp = _float(tp, fp)
    return tp / (tp + fp)


def _npv(tp, fp, fn, tn):
    tn, fn = _float(tn, fn)
    return tn / (tn + fn)


def _fnr(tp, fp, fn, tn):
    return 1 - _sensitivity(tp, fp, fn, tn)


def _fpr(tp, fp, fn, tn):
    return 1 - _specificity(tp, fp, fn, tn)


def _fdr(tp, fp, fn, tn):
    return 1 - _ppv(tp, fp, fn, tn)


def _for(tp, fp, fn, tn):
    return 1 - _npv(tp, fp, fn, tn)


def _lr_pos(tp, fp, fn, tn):
    return _sensitivity(tp, fp, fn, tn) / _fpr(tp, fp, fn, tn)


def _lr_neg(tp, fp, fn, tn):
    return _fnr(tp, fp, fn, tn) / _specificity(tp, fp, fn, tn)


_COMMON_ARGS = """
    Args:
        tp: True positives, (N, C) from :func:`get_stats`.
        fp: False positives, same shape.
        fn: False negatives, same shape.
        tn: True negatives, same shape.
        reduction: ``"micro"``, ``"macro"``, ``"weighted"``, ``"micro-imagewise"``, ``"macro-imagewise"``,
            ``"weighted-imagewise"``, ``"none"`` or ``None`` (see the module docstring).
        class_weights: One weight per class; required by the weighted reductions.
        zero_division: Value for 0/0 scores, or ``"warn"`` (0 and a warning).

    Returns:
        The score: a scalar, or (N, C) for ``reduction=None``/``"none"``.

    Raises:
        ValueError: Unknown ``reduction``, weighted reduction without ``class_weights``, mismatched shapes,
            bad ``zero_division``.
"""


def fbeta_score(
    tp: torch.LongTensor,
    fp: torch.LongTensor,
    fn: torch.LongTensor,
    tn: torch.LongTensor,
    beta: float = 1.0,
    reduction: Optional[str] = None,
    class_weights: Optional[List[float]] = None,
    zero_division: Union[str, float] = 1.0,
) -> torch.Tensor:
    return _compute_metric(
        _fbeta, tp, fp, fn, tn, reduction, class_weights, zero_division, "fbeta_score", beta=beta
    )


fbeta_score.__doc__ = (
    "F-beta score ``(1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP)`` (van Rijsbergen 1979); ``beta`` "
    "weighs recall relative to precision.\n" + _COMMON_ARGS
)


def f1_score(
    tp: torch.LongTensor,
    fp: torch.LongTensor,
    fn: torch.LongTensor,
    tn: torch.LongTensor,
    reduction: Optional[str] = None,
    class_weights: Optional[List[float]] = None,
    zero_division: Union[str, float] = 1.0,
) -> torch.Tensor:
    return _compute_metric(
        _fbeta, tp, fp, fn, tn, reduction, class_weights, zero_division, "f1_score", beta=1.0
    )


f1_score.__doc__ = "F1 score ``2 TP / (2 TP + FP + FN)`` (F-beta with beta = 1).\n" + _COMMON_ARGS


def dice_score(
    tp: torch.LongTensor,
    fp: torch.LongTensor,
    fn: torch.LongTensor,
    tn: torch.LongTensor,
    reduction: Optional[str] = None,
    class_weights: Optional[List[float]] = None,
    zero_division: Union[str, float] = 1.0,
) -> torch.Tensor:
    return _compute_metric(
        _fbeta, tp, fp, fn, tn, reduction, class_weights, zero_division, "dice_score", beta=1.0
    )


dice_score.__doc__ = (
    "Dice coefficient ``2 |A n B| / (|A| + |B|) = 2 TP / (2 TP + FP + FN)`` (Dice 1945), the Flemme name for "
    "the F1 score.\n" + _COMMON_ARGS
)


def _define(name: str, fn: Callable, doc: str) -> Callable:
    # Explicit signatures (tp, fp, fn, tn, reduction, class_weights, zero_division) as in SMP; the name
    # ``fn`` is taken by the false-negative count, so the formula is bound by closure as ``formula``.
    def metric(
        tp: torch.LongTensor,
        fp: torch.LongTensor,
        fn: torch.LongTensor,
        tn: torch.LongTensor,
        reduction: Optional[str] = None,
        class_weights: Optional[List[float]] = None,
        zero_division: Union[str, float] = 1.0,
    ) -> torch.Tensor:
        return _compute_metric(formula, tp, fp, fn, tn, reduction, class_weights, zero_division, name)

    formula = fn
    metric.__name__ = metric.__qualname__ = name
    metric.__module__ = __name__
    metric.__doc__ = doc + "\n" + _COMMON_ARGS
    return metric


iou_score = _define("iou_score", _iou, "Intersection over union (Jaccard index) ``TP / (TP + FP + FN)``.")
accuracy = _define("accuracy", _accuracy, "Accuracy ``(TP + TN) / (TP + FP + FN + TN)``.")
sensitivity = _define(
    "sensitivity", _sensitivity, "Sensitivity (recall, true positive rate) ``TP / (TP + FN)``."
)
recall = _define("recall", _sensitivity, "Recall (sensitivity, true positive rate) ``TP / (TP + FN)``.")
specificity = _define("specificity", _specificity, "Specificity (true negative rate) ``TN / (TN + FP)``.")
balanced_accuracy = _define(
    "balanced_accuracy", _balanced_accuracy, "Balanced accuracy ``(sensitivity + specificity) / 2``."
)
positive_predictive_value = _define(
    "positive_predictive_value", _ppv, "Positive predictive value (precision) ``TP / (TP + FP)``."
)
precision = _define("precision", _ppv, "Precision (positive predictive value) ``TP / (TP + FP)``.")
negative_predictive_value = _define(
    "negative_predictive_value", _npv, "Negative predictive value ``TN / (TN + FN)``."
)
false_negative_rate = _define(
    "false_negative_rate", _fnr, "False negative rate (miss rate) ``1 - sensitivity``."
)
false_positive_rate = _define(
    "false_positive_rate", _fpr, "False positive rate (fall-out) ``1 - specificity``."
)
false_discovery_rate = _define("false_discovery_rate", _fdr, "False discovery rate ``1 - precision``.")
false_omission_rate = _define(
    "false_omission_rate", _for, "False omission rate ``1 - negative predictive value``."
)
positive_likelihood_ratio = _define(
    "positive_likelihood_ratio",
    _lr_pos,
    "Positive likelihood ratio ``sensitivity / false positive rate`` (``inf`` when FPR = 0 and "
    "TPR > 0, as in SMP).",
)
negative_likelihood_ratio = _define(
    "negative_likelihood_ratio",
    _lr_neg,
    "Negative likelihood ratio ``false negative rate / specificity`` (``inf`` when specificity = 0).",
)
