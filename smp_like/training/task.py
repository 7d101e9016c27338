"""``SegmentationTask``: a ``LightningModule`` around any smp_like model, its loss, metrics, optimizer and scheduler.

Use it from a config (``smp-like train``) or in your own ``lightning.pytorch.Trainer``, as SMP's Lightning examples do::

    task = SegmentationTask(smp_like.Unet("resnet18", classes=1), task="binary")
    lightning.pytorch.Trainer(max_epochs=5).fit(task, train_loader, val_loader)

Batches are dicts (``image``, ``mask``, optional ``label``) or ``(image, mask)`` pairs. Validation runs whole images
(any size) through :func:`validation_forward`; metrics are confusion counts reduced across processes
(:class:`~smp_like.training.metrics.ConfusionCounts`), logged as ``val/<name>`` and ``val/<name>/<class>``.
"""

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

try:
    import lightning.pytorch as pl
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("SegmentationTask needs lightning; install it with `pip install smp_like[train]`") from err

from smp_like.training.builders import SegmentationLoss
from smp_like.training.metrics import ConfusionCounts, scores_from_counts
from smp_like.training.task_hooks import SharedTaskHooks

__all__ = ["SegmentationTask", "validation_forward", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The loss became NaN or Inf; ``step`` is the global step (0-based) of the batch.

    Args:
        step: the global step of the batch.
        value: the loss value.
        last_checkpoint: the last good checkpoint, named in the message when there is one.
    """

    def __init__(self, step: int, value: float, last_checkpoint: Optional[str] = None):
        self.step = step
        kept = f"; the last good checkpoint is kept: {last_checkpoint}" if last_checkpoint else ""
        super().__init__(
            f"the loss is {value} at step {step}; training stopped{kept}. Lower the learning rate, enable "
            "trainer.gradient_clip_val, or set skip_nonfinite: true to skip such batches."
        )


def validation_forward(model: nn.Module, image: torch.Tensor, roi_size: Optional[Sequence[int]] = None,
                       overlap: float = 0.25) -> torch.Tensor:
    """Logits for whole images during validation and testing: the one place where the inference engine plugs in.

    With ``roi_size`` set and ``smp_like.inference`` available, images are processed by its sliding window
    (``smp_like.inference.sliding_window(model, x, roi_size=..., overlap=...)``); otherwise the whole image goes through
    the model at once (models pad any size internally).

    Args:
        model: the segmentation model.
        image: a batch ``(N, C, *spatial)``.
        roi_size: sliding-window size, or None for the whole image at once.
        overlap: overlap of neighbouring windows.

    Returns:
        The mask logits ``(N, C, *spatial)`` (the aux head's output, if any, is dropped).
    """
    if roi_size is not None:
        try:
            from smp_like.inference import sliding_window  # type: ignore[attr-defined]
        except ImportError:
            sliding_window = None
        if sliding_window is not None:
            out = sliding_window(model, image, roi_size=tuple(roi_size), overlap=overlap)
            return out[0] if isinstance(out, (tuple, list)) else out
    out = model(image)
    return out[0] if isinstance(out, (tuple, list)) else out


def _split_output(out: Any, has_aux: bool) -> Tuple[Any, Optional[torch.Tensor]]:
    """``(mask output, label logits)`` from a model's output.

    Layouts: ``mask``; ``(main, sides)`` (deep supervision); with an aux head ``(mask, label)`` and, in training with
    deep supervision, ``((main, label), sides)``. The mask output is ``mask`` or ``(main, sides)``.
    """
    if not has_aux or not isinstance(out, (tuple, list)) or len(out) != 2:
        return out, None
    first, second = out
    if torch.is_tensor(second) and second.dim() == 2:
        return first, second
    if isinstance(first, (tuple, list)) and len(first) == 2 and torch.is_tensor(first[1]) and first[1].dim() == 2:
        return (first[0], second), first[1]
    return out, None


def _main(mask_out: Any) -> torch.Tensor:
    return mask_out[0] if isinstance(mask_out, (tuple, list)) else mask_out


class SegmentationTask(SharedTaskHooks, pl.LightningModule):
    """Trains and validates a segmentation model.

    Args:
        model: any smp_like (or SMP, or plain ``nn.Module``) segmentation model returning logits.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        loss: a callable ``loss(logits, target)`` or a :class:`~smp_like.training.builders.SegmentationLoss`; default:
            Dice + cross-entropy (BCE for binary/multilabel) in the task's mode.
        class_names: one name per output channel (default ``class0, class1, ...``).
        metrics: score names logged per epoch (see :data:`~smp_like.training.metrics.SCORE_FUNCTIONS`).
        include_background: multiclass: average scores over class 0 too.
        ignore_index: target value left out of loss (where the loss takes it) and metrics.
        optimizer: ``{"name": "AdamW", "lr": 1e-3, "encoder_lr": ..., **arguments}``.
        scheduler: ``{"name": ..., "interval": "epoch"|"step", "warmup": 0, **arguments}`` or None.
        monitor: the metric ``ReduceLROnPlateau`` watches.
        val_roi_size, val_overlap: sliding-window validation (see :func:`validation_forward`).
        skip_nonfinite: skip a batch whose loss is NaN/Inf instead of stopping.
        threshold: probability threshold for binary / multilabel metrics.
        channels_last: keep 2D weights and images in channels-last memory format (oneDNN's faster CPU convolutions,
            tensor cores on GPU); the numbers are the same up to rounding.

    Raises:
        ValueError: for an unknown task or metric name.
    """

    def __init__(
        self,
        model: nn.Module,
        task: str = "multiclass",
        loss: Optional[nn.Module] = None,
        class_names: Optional[Sequence[str]] = None,
        metrics: Sequence[str] = ("iou", "dice"),
        include_background: bool = False,
        ignore_index: Optional[int] = None,
        optimizer: Optional[Dict[str, Any]] = None,
        scheduler: Optional[Dict[str, Any]] = None,
        monitor: str = "val/iou",
        val_roi_size: Optional[Sequence[int]] = None,
        val_overlap: float = 0.25,
        skip_nonfinite: bool = False,
        threshold: float = 0.5,
        channels_last: bool = False,
    ):
        super().__init__()
        from smp_like.training.metrics import SCORE_FUNCTIONS

        if task not in ("binary", "multiclass", "multilabel"):
            raise ValueError(f"`task` must be 'binary', 'multiclass' or 'multilabel', got {task!r}")
        unknown = [m for m in metrics if m not in SCORE_FUNCTIONS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {sorted(SCORE_FUNCTIONS)}")
        self.model = model
        self.task = task
        num_classes = self._num_classes(model, class_names)
        self.class_names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        if loss is None:
            from smp_like import losses as L

            ce = L.SoftCrossEntropyLoss(smooth_factor=0.0, ignore_index=ignore_index if ignore_index is not None
                                        else -100) if task == "multiclass" else L.SoftBCEWithLogitsLoss(
                ignore_index=ignore_index)
            loss = SegmentationLoss([(L.DiceLoss(task, ignore_index=ignore_index), 1.0), (ce, 1.0)])
        self.loss_fn = loss
        self.metric_names = list(metrics)
        self.include_background = include_background
        self.ignore_index = ignore_index
        self.optimizer_cfg = dict(optimizer or {"name": "AdamW", "lr": 1e-3})
        self.scheduler_cfg = dict(scheduler) if scheduler else None
        self.monitor = monitor
        self.val_roi_size = val_roi_size
        self.val_overlap = val_overlap
        self.skip_nonfinite = skip_nonfinite
        self.threshold = threshold
        self.has_aux = getattr(model, "classification_head", None) is not None
        self.val_counts = ConfusionCounts(task, len(self.class_names), ignore_index, threshold)
        self.train_counts = ConfusionCounts(task, len(self.class_names), ignore_index, threshold)
        self.skipped_batches = 0
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.channels_last:
            image = batch["image"] if isinstance(batch, dict) else batch[0]
            if image.dim() == 4:
                image = image.contiguous(memory_format=torch.channels_last)
                if isinstance(batch, dict):
                    batch = {**batch, "image": image}
                else:
                    batch = (image, *batch[1:])
        return batch

    @staticmethod
    def _num_classes(model: nn.Module, class_names: Optional[Sequence[str]]) -> int:
        if class_names is not None:
            return len(class_names)
        head = getattr(model, "segmentation_head", None)
        convs = [m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))] if head is not None else []
        if not convs:
            raise ValueError("cannot tell the number of classes of this model; pass class_names")
        return convs[-1].out_channels

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    # ---------------------------------------------------------------------------------------------- batches

    @staticmethod
    def _unpack(batch: Any) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        if isinstance(batch, dict):
            return batch["image"], batch["mask"], batch.get("label")
        return batch[0], batch[1], (batch[2] if len(batch) > 2 else None)

    def _target(self, mask: torch.Tensor) -> torch.Tensor:
        # Binary masks may come as (N, H, W): the model's output has a channel axis.
        if self.task != "multiclass" and mask.dim() == 3:
            mask = mask.unsqueeze(1)
        return mask

    def _loss(self, out: Any, target: torch.Tensor, labels: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Any]:
        mask_out, label_logits = _split_output(out, self.has_aux)
        if isinstance(self.loss_fn, SegmentationLoss):
            loss = self.loss_fn(mask_out, target, label_logits, labels)
        else:
            loss = self.loss_fn(mask_out if not isinstance(mask_out, (tuple, list)) else mask_out[0], target)
        return loss, mask_out

    def training_step(self, batch: Any, batch_idx: int) -> Optional[torch.Tensor]:
        image, mask, labels = self._unpack(batch)
        target = self._target(mask)
        loss, mask_out = self._loss(self.model(image), target, labels)
        if not torch.isfinite(loss.detach()).all():
            if self.skip_nonfinite:
                self.skipped_batches += 1
                self.log("train/skipped_batches", float(self.skipped_batches), on_step=True, on_epoch=False)
                return None  # Lightning skips the optimizer step for this batch
            raise NonFiniteLossError(self.global_step, float(loss.detach()), self._last_checkpoint())
        self.train_counts.update(_main(mask_out).detach(), target)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=len(image),
                 sync_dist=True)
        return loss

    def _last_checkpoint(self) -> Optional[str]:
        try:
            callbacks = self.trainer.checkpoint_callbacks
        except RuntimeError:
            return None
        paths = [getattr(cb, "last_model_path", "") for cb in callbacks]
        return next((p for p in paths if p), None)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        image, mask, labels = self._unpack(batch)
        target = self._target(mask)
        logits = validation_forward(self.model, image, self.val_roi_size, self.val_overlap)
        if isinstance(self.loss_fn, SegmentationLoss):
            loss = self.loss_fn._mask_loss(logits, target)
        else:
            loss = self.loss_fn(logits, target)
        self.val_counts.update(logits, target)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(image), sync_dist=True)
        return loss

    def _include(self) -> Sequence[int]:
        n = len(self.class_names)
        if self.task == "multiclass" and not self.include_background and n > 1:
            return range(1, n)
        return range(n)

    def _log_counts(self, counts: ConfusionCounts, prefix: str) -> Dict[str, float]:
        totals = counts.compute()
        scores = scores_from_counts(totals["tp"], totals["fp"], totals["fn"], totals["tn"], self.metric_names,
                                    self.class_names, self._include())
        # Already summed over processes by the metric: log as is (no sync_dist, which would average again).
        self.log_dict({f"{prefix}/{k}": (v if not math.isnan(v) else 0.0) for k, v in scores.items()},
                      on_step=False, on_epoch=True, prog_bar=False, rank_zero_only=False)
        counts.reset()
        return scores

    def on_validation_epoch_start(self) -> None:
        # BatchNorm running statistics are buffers that each DDP process updates from its own batches; validate every
        # process with rank 0's (those the checkpoint holds), so the reduced metrics are those of the saved model.
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.trainer.world_size > 1:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def on_train_epoch_end(self) -> None:
        self._log_counts(self.train_counts, "train")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_counts.reset()
            return
        self.last_val_scores = self._log_counts(self.val_counts, "val")
        if self.monitor.split("/")[-1] in self.last_val_scores:
            self.log("monitor_value", self.last_val_scores[self.monitor.split("/")[-1]], logger=False)

