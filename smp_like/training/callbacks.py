"""Callbacks of a training run: ``curves.png`` and ``predictions.png`` in the run folder, refreshed as it trains;
Flemme's ``ckp_*.pth`` files (:class:`FlemmeCheckpoint`).

(The NaN/Inf guard lives in :meth:`SegmentationTask.training_step`, because skipping a batch means returning no loss.)
"""

import math
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("smp_like.training needs lightning; `pip install smp_like[train]`") from err

from smp_like.training.plots import display_indices, plot_curves, plot_predictions, read_epoch_history
from smp_like.training.task import validation_forward

__all__ = ["PlotCallback", "FlemmeCheckpoint"]


class PlotCallback(pl.Callback):
    """Writes ``curves.png`` each epoch and ``predictions.png`` every ``every_n_epochs`` epochs (rank 0 only).

    Args:
        run_dir: the run folder; ``metrics.csv`` is read from it.
        every_n_epochs: how often predictions.png is refreshed.
        num_samples: validation images shown (the first ones: the same in every refresh).
        palette: class colours (default: :func:`smp_like.io.default_palette`).
    """

    def __init__(self, run_dir: Path, every_n_epochs: int = 1, num_samples: int = 4,
                 palette: Optional[List[List[int]]] = None):
        self.run_dir = Path(run_dir)
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.palette = palette

    def _flush_loggers(self, trainer: "pl.Trainer") -> None:
        for logger in trainer.loggers:
            logger.save()

    def write_curves(self, trainer: "pl.Trainer") -> None:
        self._flush_loggers(trainer)
        history = read_epoch_history(self.run_dir / "metrics.csv")
        plot_curves(history, self.run_dir / "curves.png", title=f"{self.run_dir.name}: per-epoch loss and metrics")

    @rank_zero_only
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.current_epoch > 0:  # the previous epoch's train and val values are all in metrics.csv now
            self.write_curves(trainer)

    @rank_zero_only
    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.write_curves(trainer)
        if not (self.run_dir / "predictions.png").is_file():  # no validation ran (e.g. max_steps hit first)
            self.write_predictions(trainer, pl_module, max(trainer.current_epoch, 0))

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking:
            return
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last:
            self.write_predictions(trainer, pl_module, trainer.current_epoch)

    @torch.no_grad()
    def write_predictions(self, trainer: Any, pl_module: Any, epoch: int) -> Optional[Path]:
        datamodule = getattr(trainer, "datamodule", None)
        dataset = getattr(datamodule, "datasets", {}).get("val") if datamodule is not None else None
        if dataset is None or len(dataset) == 0:
            return None
        was_training = pl_module.training
        pl_module.eval()
        images, truths, preds = [], [], []
        task = pl_module.task
        for i in range(min(self.num_samples, len(dataset))):
            raw, _ = dataset.read(i)
            item = dataset[i]
            x = item["image"].unsqueeze(0).to(pl_module.device)
            logits = validation_forward(pl_module.model, x, pl_module.val_roi_size, pl_module.val_overlap)[0]
            mask = item["mask"]
            if item["image"].dim() == 4:  # a volume (C, D, H, W): show the middle slice along D
                mid = item["image"].shape[1] // 2
                logits, mask = logits[:, mid], mask[..., mid, :, :]
                raw = np.moveaxis(item["image"][:, mid].cpu().numpy(), 0, -1)
            if task == "multiclass":
                pred = logits.argmax(0).cpu().numpy()
            else:
                pred = display_indices((logits.sigmoid() >= pl_module.threshold).long().cpu().numpy())
            truth = display_indices(mask.cpu().numpy())
            if truth.shape != raw.shape[:2]:  # an eval transform resized it: show the transformed size
                raw = np.moveaxis(item["image"].cpu().numpy(), 0, -1)
            images.append(raw)
            truths.append(truth)
            preds.append(pred)
        if was_training:
            pl_module.train()
        names = list(pl_module.class_names) if task == "multiclass" else ["background", *pl_module.class_names]
        title = f"{self.run_dir.name}, epoch {epoch + 1}: image | truth | prediction (validation samples)"
        return plot_predictions(images, truths, preds, self.run_dir / "predictions.png", names, self.palette, title,
                                ignore_index=pl_module.ignore_index)


class FlemmeCheckpoint(pl.Callback):
    """Flemme's checkpoint files in ``folder``: ``ckp_last.pth`` every ``every_n_epochs`` epochs, and
    ``ckp_best_loss.pth`` / ``ckp_best_score.pth`` when the loss (validation loss, or training loss without a
    validation split) / the monitored metric improves (rank 0 only; see :mod:`smp_like.training.flemme.checkpoint`).

    Args:
        folder: Flemme's ``check_point_dir``.
        every_n_epochs: Flemme's ``save_after_epochs``.
        monitor: the monitored metric (``val/dice``, ...); ``None`` or a loss: no separate score file is chosen by
            a metric, ``ckp_best_score.pth`` then follows the loss too.
        mode: ``"max"`` or ``"min"``: whether a higher monitored value is better.
    """

    def __init__(self, folder: Path, every_n_epochs: int = 1, monitor: Optional[str] = None, mode: str = "max"):
        self.folder = Path(folder)
        self.every_n_epochs = max(1, int(every_n_epochs or 1))
        self.monitor = monitor
        self.mode = mode
        self.best_loss = math.inf
        self.best_score: Optional[float] = None
        self._saved_step = -1

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "best_score": self.best_score}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_loss = float(state_dict.get("best_loss", math.inf))
        self.best_score = state_dict.get("best_score")

    @staticmethod
    def _value(trainer: "pl.Trainer", *keys: Optional[str]) -> Optional[float]:
        for key in keys:
            if key and key in trainer.callback_metrics:
                value = float(trainer.callback_metrics[key])
                if math.isfinite(value):
                    return value
        return None

    def _better(self, score: float) -> bool:
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def _save(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        from smp_like.training.flemme.checkpoint import CHECKPOINT_NAMES, save_checkpoint

        epoch = trainer.current_epoch + 1
        loss = self._value(trainer, "val/loss", "train/loss_epoch", "train/loss")
        score = self._value(trainer, self.monitor) if self.monitor and not self.monitor.endswith("loss") else None
        model = pl_module.model
        common = {"epoch": epoch, "loss": loss, "score": score, "monitor": self.monitor}
        save_checkpoint(model, self.folder / CHECKPOINT_NAMES["last"], **common)
        if loss is not None and loss < self.best_loss or not (self.folder / CHECKPOINT_NAMES["loss"]).is_file():
            self.best_loss = loss if loss is not None else self.best_loss
            save_checkpoint(model, self.folder / CHECKPOINT_NAMES["loss"], **common)
        # Without a monitored metric (Flemme without score_metric), the best score is the best loss.
        ranked = score if score is not None else (-loss if loss is not None else None)
        if ranked is not None and score is None:
            better = self.best_score is None or ranked > self.best_score
        else:
            better = ranked is not None and self._better(ranked)
        if better or not (self.folder / CHECKPOINT_NAMES["score"]).is_file():
            self.best_score = ranked if ranked is not None else self.best_score
            save_checkpoint(model, self.folder / CHECKPOINT_NAMES["score"], **common)
        self._saved_step = trainer.global_step

    @rank_zero_only
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs == 0 or last:
            self._save(trainer, pl_module)

    @rank_zero_only
    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._saved_step != trainer.global_step:  # stopped by max_steps or early stopping between saves
            self._save(trainer, pl_module)
