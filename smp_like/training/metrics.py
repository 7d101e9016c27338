"""Segmentation scores accumulated as confusion counts and summed across processes.

:class:`ConfusionCounts` is a ``torchmetrics.Metric`` whose states are the per-class ``tp, fp, fn, tn`` totals from
:func:`smp_like.metrics.get_stats` with ``dist_reduce_fx="sum"``: summing counts over processes gives exactly the
counts of one process over the whole set, so DDP scores equal single-process scores (averaging per-process scores
would not). Scores are the "micro" ones per class (counts summed over images, then the ratio), then averaged over
classes.
"""

from typing import Dict, List, Optional, Sequence

import torch

try:
    from torchmetrics import Metric
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("smp_like.training needs torchmetrics (installed with lightning): "
                      "`pip install smp_like[train]`") from err

from smp_like import metrics as M

__all__ = ["ConfusionCounts", "scores_from_counts", "SCORE_FUNCTIONS"]

SCORE_FUNCTIONS = {
    "iou": M.iou_score,
    "dice": M.f1_score,
    "precision": M.precision,
    "recall": M.recall,
    "accuracy": M.accuracy,
    "specificity": M.specificity,
}


def scores_from_counts(
    tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor, names: Sequence[str],
    classes: Sequence[str], include: Sequence[int],
) -> Dict[str, float]:
    """Per-class and mean scores from per-class counts ``(C,)``.

    Returns:
        ``{name: mean over the classes in include, f"{name}/{class}": per-class value}``; classes absent from both
        prediction and truth score nan and are left out of the mean.
    """
    out: Dict[str, float] = {}
    stats = [t.reshape(1, -1) for t in (tp, fp, fn, tn)]
    present = (tp + fp + fn) > 0
    for name in names:
        per_class = SCORE_FUNCTIONS[name](*stats, reduction="none", zero_division=float("nan"))[0].double()
        if name in ("iou", "dice", "precision", "recall"):
            per_class = torch.where(present, per_class, torch.full_like(per_class, float("nan")))
        chosen = per_class[list(include)]
        out[name] = float(torch.nanmean(chosen)) if bool((~chosen.isnan()).any()) else float("nan")
        for c, value in zip(classes, per_class.tolist()):
            out[f"{name}/{c}"] = value
    return out


class ConfusionCounts(Metric):
    """Per-class ``tp, fp, fn, tn`` totals over all updates (and all processes).

    Args:
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: number of output classes (channels).
        ignore_index: target value left out of the counts.
        threshold: probability threshold for binary / multilabel.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, task: str, num_classes: int, ignore_index: Optional[int] = None, threshold: float = 0.5,
                 **kwargs):
        super().__init__(**kwargs)
        self.task = task
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.threshold = float(threshold)
        for name in ("tp", "fp", "fn", "tn"):
            self.add_state(name, default=torch.zeros(self.num_classes, dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def predictions(logits: torch.Tensor, task: str, threshold: float = 0.5) -> torch.Tensor:
        """Class indices (multiclass) or 0/1 masks (binary, multilabel) from logits."""
        if task == "multiclass":
            return logits.argmax(dim=1)
        return (logits.sigmoid() >= threshold).long()

    def stats(self, logits: torch.Tensor, target: torch.Tensor) -> List[torch.Tensor]:
        """Per-image counts ``(N, C)`` each, as :func:`smp_like.metrics.get_stats`."""
        pred = self.predictions(logits, self.task, self.threshold)
        mode = "multiclass" if self.task == "multiclass" else "multilabel"
        kwargs = {"num_classes": self.num_classes} if mode == "multiclass" else {}
        return list(M.get_stats(pred, target.long(), mode=mode, ignore_index=self.ignore_index, **kwargs))

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        for name, value in zip(("tp", "fp", "fn", "tn"), self.stats(logits, target)):
            setattr(self, name, getattr(self, name) + value.sum(0))

    def compute(self) -> Dict[str, torch.Tensor]:  # type: ignore[override]
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}
