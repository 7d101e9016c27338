"""``ClassificationTask``: the ``LightningModule`` of classification runs (ClM, or any model returning
``(N, classes)`` logits).

Loss: cross-entropy of the logits against the class index of each image (``data.labels_csv``). Metric:
``accuracy`` (correct / images), logged per epoch for train and val as ``train/accuracy`` and ``val/accuracy``
(a mean weighted by batch sizes, reduced over processes).
"""

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

try:
    import lightning.pytorch as pl
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("ClassificationTask needs lightning; install it with `pip install smp_like[train]`") from err

from smp_like.training.builders import optimizer_settings
from smp_like.training.task_hooks import SharedTaskHooks

__all__ = ["ClassificationTask", "build_classification_task"]


class ClassificationTask(SharedTaskHooks, pl.LightningModule):
    """Trains and validates an image classifier.

    Args:
        model: returns ``(N, classes)`` logits.
        optimizer, scheduler: as for :class:`~smp_like.training.task.SegmentationTask`.
        monitor: the metric ``ReduceLROnPlateau`` watches.
        label_smoothing: of the cross-entropy.
    """

    def __init__(self, model: nn.Module, optimizer: Optional[Dict[str, Any]] = None,
                 scheduler: Optional[Dict[str, Any]] = None, monitor: str = "val/accuracy",
                 label_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.optimizer_cfg = dict(optimizer or {"name": "AdamW", "lr": 1e-3})
        self.scheduler_cfg = dict(scheduler) if scheduler else None
        self.monitor = monitor
        self.label_smoothing = float(label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: Dict[str, Any], prefix: str) -> torch.Tensor:
        logits = self.model(batch["image"])
        labels = batch["label"]
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        n = len(labels)
        self.log(f"{prefix}/loss", loss.detach() if prefix == "train" else loss, on_step=prefix == "train",
                 on_epoch=True, prog_bar=prefix == "train", batch_size=n, sync_dist=True)
        self.log(f"{prefix}/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss.detach()).all():
            from smp_like.training.task import NonFiniteLossError

            raise NonFiniteLossError(self.global_step, float(loss.detach()))
        return loss

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")


def build_classification_task(cfg: Any, model: Optional[nn.Module] = None) -> ClassificationTask:
    """The :class:`ClassificationTask` of a config (the model is built unless given)."""
    from smp_like.training.builders import build_model

    model = model if model is not None else build_model(cfg.model, len(cfg.data.classes))
    optimizer, scheduler = optimizer_settings(cfg)
    smoothing = float(cfg.loss.terms[0].kwargs.get("smooth_factor", 0.0) or 0.0) if cfg.loss.terms else 0.0
    return ClassificationTask(model, optimizer, scheduler, cfg.metrics.monitor, smoothing)


class CurvesCallback(pl.Callback):
    """``curves.png`` in the run folder, refreshed each epoch and at the end (rank 0 only)."""

    def __init__(self, run_dir: Any):
        from pathlib import Path

        self.run_dir = Path(run_dir)

    def _write(self, trainer: "pl.Trainer") -> None:
        if trainer.global_rank != 0:
            return
        from smp_like.training.plots import plot_curves, read_epoch_history

        for logger in trainer.loggers:
            logger.save()
        plot_curves(read_epoch_history(self.run_dir / "metrics.csv"), self.run_dir / "curves.png",
                    title=f"{self.run_dir.name}: per-epoch loss and metrics")

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.current_epoch > 0:
            self._write(trainer)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._write(trainer)
