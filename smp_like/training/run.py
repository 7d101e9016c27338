"""A training run: the run folder, the Lightning ``Trainer`` built from the config, resume, ``best/`` and the summary.

``train(cfg)`` writes ``output_dir/<run_name>/``::

    config.yaml        the resolved config (defaults filled); `smp-like train --config config.yaml` reruns it
    checkpoints/       last.ckpt (each epoch and every N steps) + best-k by the monitored metric (atomic writes)
    best/              save_pretrained of the best model + preprocessing.json (smp_like.from_pretrained loads it)
    metrics.csv        Lightning's CSV log (per step and per epoch)
    tensorboard/       TensorBoard events
    curves.png         loss and metrics per epoch, train and val
    predictions.png    image | truth | prediction on fixed validation samples
    summary.json       best metric and epoch, wall time, per-class scores of the best epoch
"""

import csv
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("training needs lightning; install it with `pip install smp_like[train]`") from err

from smp_like.io.atomic import atomic_output
from smp_like.training.builders import build_loss, build_model, optimizer_settings
from smp_like.training.callbacks import PlotCallback
from smp_like.training.config import TrainConfig, task_kind
from smp_like.training.data import SegmentationDataModule
from smp_like.training.plots import read_epoch_history
from smp_like.training.task import SegmentationTask

__all__ = ["train", "build_task", "build_any_task", "task_kind", "check_writable", "export_best", "RunError"]


class RunError(ValueError):
    """A run that cannot start (unwritable folder, nothing to resume, a finished run in the way)."""


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a file in it, so an unwritable output fails before any training.

    Raises:
        RunError: naming the folder and the reason.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(folder / ".write_test") as tmp:
            tmp.write_text("ok", encoding="utf-8")
        (folder / ".write_test").unlink()
    except OSError as err:
        raise RunError(f"the output folder {folder} cannot be written: {err.strerror or err}") from None


def build_task(cfg: TrainConfig, model: Optional[torch.nn.Module] = None) -> SegmentationTask:
    """The :class:`SegmentationTask` of a config (the model is built unless given)."""
    d = cfg.data
    model = model if model is not None else build_model(cfg.model, len(d.classes))
    optimizer, scheduler = optimizer_settings(cfg)
    return SegmentationTask(
        model, task=d.task, loss=build_loss(cfg.loss, d.task, d.ignore_index), class_names=d.classes,
        metrics=cfg.metrics.names, include_background=cfg.metrics.include_background, ignore_index=d.ignore_index,
        optimizer=optimizer, scheduler=scheduler, monitor=cfg.metrics.monitor, val_roi_size=d.val_roi_size,
        val_overlap=d.val_overlap, skip_nonfinite=cfg.skip_nonfinite, channels_last=cfg.channels_last,
    )


def build_any_task(cfg: TrainConfig, model: Optional[torch.nn.Module] = None) -> "pl.LightningModule":
    """The Lightning task of ``cfg`` by :func:`task_kind`."""
    kind = task_kind(cfg)
    if kind == "segmentation":
        return build_task(cfg, model)
    if kind == "classification":
        from smp_like.training.classification_task import build_classification_task

        return build_classification_task(cfg, model)
    from smp_like.training.generative_task import build_generative_task

    return build_generative_task(cfg, model)


def _plot_callback(cfg: TrainConfig, kind: str, run_dir: Path, datamodule: Any) -> Any:
    if kind == "segmentation":
        return PlotCallback(run_dir, cfg.plots.every_n_epochs, cfg.plots.num_samples, datamodule.preprocessing.palette)
    if kind == "classification":
        from smp_like.training.classification_task import CurvesCallback

        return CurvesCallback(run_dir)
    from smp_like.training.generative_task import SampleCallback

    return SampleCallback(run_dir, cfg.generation, cfg.model.arch)


def _keep_csv_history(logger: CSVLogger, path: Path, up_to_step: Optional[int]) -> None:
    """On resume: Lightning's CSV writer deletes an existing metrics.csv; put back the rows up to the resumed step."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if up_to_step is None or not r.get("step") or int(float(r["step"])) <= up_to_step]
    writer = logger.experiment  # its construction removes the old file
    with atomic_output(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
    writer.metrics_keys = sorted(header)


def _checkpoint_step(path: Path) -> Optional[int]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return int(state["global_step"])
    except Exception:  # noqa: BLE001 - only used to trim the log; a foreign checkpoint keeps it whole
        return None


def export_best(cfg: TrainConfig, task: SegmentationTask, checkpoint: Optional[str], preprocessing: Any,
                folder: Path) -> Path:
    """Write ``folder`` (``best/``): the weights of ``checkpoint`` via ``save_pretrained`` + ``preprocessing.json``.

    The folder is written beside under a temporary name and renamed into place.
    """
    if checkpoint:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    task.model.save_pretrained(str(tmp))
    preprocessing.save(tmp)
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _finite(x: Any) -> Optional[float]:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _summary(cfg: TrainConfig, run_dir: Path, monitor: str, mode: str, best_path: str, wall: float,
             trainer: "pl.Trainer") -> Dict[str, Any]:
    history = read_epoch_history(run_dir / "metrics.csv")
    series = history.get(monitor, {})
    best_epoch = None
    if series:
        pick = max if mode == "max" else min
        best_epoch = pick(series, key=lambda e: (series[e], -e) if mode == "max" else (series[e], e))
    per_class: Dict[str, Dict[str, Optional[float]]] = {}
    for name in cfg.metrics.names if task_kind(cfg) == "segmentation" else ():
        per_class[name] = {c: _finite(history.get(f"val/{name}/{c}", {}).get(best_epoch)) for c in cfg.data.classes}
    final = {k: _finite(v.get(max(v))) for k, v in history.items() if v and k.count("/") == 1}
    return {
        "monitor": monitor,
        "best_value": _finite(series.get(best_epoch)) if best_epoch is not None else None,
        "best_epoch": None if best_epoch is None else best_epoch + 1,
        "best_checkpoint": best_path or None,
        "epochs_run": trainer.current_epoch,
        "global_step": trainer.global_step,
        "wall_time_seconds": round(wall, 2),
        "per_class": per_class,
        "final": final,
        "classes": list(cfg.data.classes),
        "run_dir": str(run_dir),
    }


def _quiet_known_warnings() -> None:
    """Hide library notices that say nothing about the user's run (deprecations inside torchdata / Lightning, and
    the CSV logger's notice about the metrics.csv it is about to write, which smp_like handles on resume)."""
    for message in (r".*set_vital.*", r".*LeafSpec.*", r"Experiment logs directory .* exists and is not empty.*",
                    r"The number of training batches .* is smaller than the logging interval.*",
                    r"You have overridden `on_after_batch_transfer`.*",
                    r"Found \d+ module\(s\) in eval mode at the start of training.*"):  # LDPM's frozen AE
        warnings.filterwarnings("ignore", message=message)


def train(cfg: TrainConfig, resume: Optional[bool] = None, progress: Optional[bool] = None,
          callbacks: Optional[List[Any]] = None) -> Dict[str, Any]:
    """Train from a validated config; return the summary (also written as ``summary.json``).

    Args:
        cfg: the config (:func:`~smp_like.training.config.load_config`).
        resume: continue from ``checkpoints/last.ckpt`` (default: ``cfg.resume``).
        progress: show Lightning's progress bar (default: ``cfg.trainer.enable_progress_bar``).
        callbacks: extra Lightning callbacks.

    Returns:
        The run summary (metrics, paths, timings) that ``summary.json`` holds.

    Raises:
        RunError: unwritable output folder, ``resume`` without a checkpoint, or a new run into a folder that
            already holds checkpoints.
        DataError: every problem found in the data, before training.
        NonFiniteLossError: a NaN/Inf loss (unless ``skip_nonfinite``).
    """
    t0 = time.perf_counter()
    _quiet_known_warnings()
    resume = cfg.resume if resume is None else resume
    run_dir = cfg.run_dir.resolve()
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    is_zero = rank_zero_only.rank == 0
    if is_zero:
        check_writable(run_dir)
    if resume and not last.is_file():
        raise RunError(f"nothing to resume: {last} does not exist")
    if not resume and is_zero and ckpt_dir.is_dir() and any(ckpt_dir.glob("*.ckpt")):
        raise RunError(f"{run_dir} already holds checkpoints; continue it with --resume, or start another run with "
                       f"--set run_name=<new name>")
    if is_zero:
        with atomic_output(run_dir / "config.yaml") as tmp:
            tmp.write_text(cfg.to_yaml(), encoding="utf-8")
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)

    kind = task_kind(cfg)
    if kind in ("segmentation", "supervised"):
        datamodule = SegmentationDataModule(cfg).prepare()  # every data problem, before any model is built
    else:
        from smp_like.training.generative_data import ImageDataModule

        datamodule = ImageDataModule(cfg).prepare()
    task = build_any_task(cfg)
    has_val = "val" in datamodule.datasets
    monitor, mode = (cfg.metrics.monitor, cfg.metrics.mode) if has_val else ("train/loss", "min")

    best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best-epoch{epoch:03d}", monitor=monitor, mode=mode,
                              save_top_k=cfg.checkpoint.save_top_k, save_last=True, auto_insert_metric_name=False,
                              enable_version_counter=False)
    cbs: List[Any] = [best_cb, _plot_callback(cfg, kind, run_dir, datamodule)]
    if cfg.checkpoint.every_n_train_steps:
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=cfg.checkpoint.every_n_train_steps,
                                   save_top_k=0, save_last=True, enable_version_counter=False))
    if cfg.early_stopping.patience:
        cbs.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping.patience,
                                 min_delta=cfg.early_stopping.min_delta))
    if cfg.scheduler.name or cfg.scheduler.warmup:
        cbs.append(LearningRateMonitor(logging_interval=cfg.scheduler.interval))
    if cfg.checkpoint.flemme_dir:  # Flemme's ckp_last / ckp_best_loss / ckp_best_score .pth files
        from smp_like.training.callbacks import FlemmeCheckpoint

        cbs.append(FlemmeCheckpoint(Path(cfg.checkpoint.flemme_dir), cfg.checkpoint.every_n_epochs or 1, monitor, mode))
    cbs += list(callbacks or [])

    csv_logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    tb_logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    if is_zero:
        if resume:
            _keep_csv_history(csv_logger, run_dir / "metrics.csv", _checkpoint_step(last))
        elif (run_dir / "metrics.csv").is_file():
            (run_dir / "metrics.csv").unlink()
    trainer_kwargs = cfg.trainer.model_dump()
    if progress is not None:
        trainer_kwargs["enable_progress_bar"] = progress
    if not has_val:  # no validation split (e.g. val_fraction 0): Lightning must not ask for its loader
        trainer_kwargs["limit_val_batches"] = 0
    if trainer_kwargs["strategy"] == "ddp":
        # Encoders built shallower than their backbone keep the unused later stages (SMP-compatible state dicts).
        # DDP with find_unused_parameters=False never reduces the gradient buckets holding them, so processes would
        # silently drift apart: let DDP find unused parameters.
        trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"
    trainer = pl.Trainer(
        **trainer_kwargs, callbacks=cbs, logger=[csv_logger, tb_logger], default_root_dir=str(run_dir),
        use_distributed_sampler=False, enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(last) if resume else None)

    summary: Dict[str, Any] = {}
    if trainer.is_global_zero:
        best_path = best_cb.best_model_path or (str(last) if last.is_file() else "")
        export_best(cfg, task, best_path or None, datamodule.preprocessing, run_dir / "best")
        summary = _summary(cfg, run_dir, monitor, mode, best_path, time.perf_counter() - t0, trainer)
        with atomic_output(run_dir / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
