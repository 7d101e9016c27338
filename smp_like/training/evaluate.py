"""``evaluate``: score a trained model on a split, per image and per class, and save its predicted masks.

Writes into ``<run folder>/test/`` (or ``out_dir``): ``per_image.csv`` (one row per image and class: IoU, Dice,
precision, recall, HD95), ``per_class.csv`` and ``metrics.json`` (counts summed over the split, then scored, as in
validation; HD95 averaged over the images where it is defined), and ``masks/<stem>.png``: class-index palette PNGs
(binary / multilabel: ``max_c (c + 1) * mask_c``); volumes (``data.dim: 3``): ``masks/<stem>.nii.gz`` with the
input's affine and header.
"""

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from smp_like import metrics as M
from smp_like.io.atomic import atomic_output
from smp_like.io.images import default_palette, write_index_png
from smp_like.training.config import TrainConfig
from smp_like.training.metrics import ConfusionCounts, scores_from_counts
from smp_like.training.plots import display_indices
from smp_like.training.task import validation_forward

__all__ = ["evaluate", "load_trained_model"]

_SCORES = ("iou", "dice", "precision", "recall")


def load_trained_model(cfg: TrainConfig, checkpoint: Optional[str] = None) -> torch.nn.Module:
    """The model of a run: ``best/`` (default), ``"last"``, a checkpoint path (``.ckpt``), a saved folder, or a
    Flemme-style ``ckp_*.pth`` (model config + weights, read with ``weights_only=True``). Without ``checkpoint``,
    the config's ``test.checkpoint`` (a Flemme test config's ``model_path``) is used if set.

    A ``.pth`` written for a DDPM (SDPM, LDPM) loads as the DDIM (SDIM, LDIM) the config names, with the config's
    sampling settings (``num_inference_steps``, ...), as Flemme promises for its test configs.

    Raises:
        FileNotFoundError: when the named weights do not exist.
        ValueError: for a ``.pth`` that is not an smp_like checkpoint.
    """
    import smp_like
    from smp_like.training.builders import build_model

    if checkpoint is None:
        checkpoint = getattr(getattr(cfg, "test", None), "checkpoint", None)
    run_dir = cfg.run_dir.resolve()
    if checkpoint in (None, "best"):
        target = run_dir / "best"
    elif checkpoint == "last":
        target = run_dir / "checkpoints" / "last.ckpt"
    else:
        target = Path(checkpoint)
    if not target.exists():
        raise FileNotFoundError(f"no trained weights at {target}; train first (`smp-like train --config ...`)")
    if target.is_dir():
        return smp_like.from_pretrained(str(target))
    if target.suffix == ".pth":
        from smp_like.training.flemme.checkpoint import model_from_checkpoint

        arch = None if cfg.model.from_pretrained else cfg.model.arch
        return model_from_checkpoint(target, arch=arch, overrides=cfg.model.kwargs)
    model = build_model(cfg.model.model_copy(update={"encoder_weights": None}) if not cfg.model.from_pretrained
                        else cfg.model, len(cfg.data.classes))
    state = torch.load(target, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model


def _write_volume_mask(dataset: Any, meta: Dict[str, Any], pred: np.ndarray, task: str, path: Path) -> Path:
    """A predicted volume mask as NIfTI on the input's voxel grid (nonzero crop and resize undone), with the input's
    affine and header, so it overlays the image in any viewer. Multiclass: class indices; binary: 0/1."""
    from smp_like.io.volumes import is_volume_path, write_volume

    labels = pred if task == "multiclass" else pred[0]  # binary predictions are (1, D, H, W)
    labels = dataset.restore(labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.int16), meta)
    header = None
    if is_volume_path(meta["path"]):
        import nibabel as nib

        header = nib.load(meta["path"]).header  # header only: the voxels are not read again
    return write_volume(path, labels, affine=meta["affine"], header=header)


def _nan_none(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(float(x)) else float(x)


@torch.no_grad()
def evaluate(cfg: TrainConfig, checkpoint: Optional[str] = None, split: str = "test",
             out_dir: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Score the trained model of ``cfg``'s run on ``split`` and write the results (see the module docstring).

    Args:
        cfg: the run's config.
        checkpoint: ``None``/``"best"``, ``"last"``, a ``.ckpt`` file or a saved model folder.
        split: ``"test"`` or ``"val"``.
        out_dir: where to write (default ``<run folder>/<split>``).
        device: torch device.

    Returns:
        ``metrics.json``'s content.

    Raises:
        ValueError: for a split the config does not define; DataError for bad data files.
    """
    from smp_like.training.config import task_kind

    if task_kind(cfg) != "segmentation":  # reconstruction, generation, SDPM/SDIM, classification
        from smp_like.training.generative_evaluate import evaluate_generative, load_generative_model

        model = load_generative_model(cfg, checkpoint, fallback=load_trained_model)
        return evaluate_generative(cfg, checkpoint, split, out_dir, device, model=model)
    from smp_like.training.data import SegmentationDataModule

    datamodule = SegmentationDataModule(cfg).prepare()
    if split not in datamodule.datasets:
        raise ValueError(f"no {split!r} split: add data.{split} folders to the config")
    dataset = datamodule.datasets[split]
    model = load_trained_model(cfg, checkpoint).to(device).eval()
    d = cfg.data
    out = Path(out_dir) if out_dir is not None else cfg.run_dir.resolve() / split
    (out / "masks").mkdir(parents=True, exist_ok=True)
    classes = list(d.classes)
    counts = ConfusionCounts(d.task, len(classes), d.ignore_index)
    palette = datamodule.preprocessing.palette or default_palette(max(len(classes) + 1, 2))
    mode = "multiclass" if d.task == "multiclass" else "multilabel"
    include = range(1, len(classes)) if d.task == "multiclass" and not cfg.metrics.include_background else \
        range(len(classes))
    rows: List[Dict[str, Any]] = []
    hd_sum = {c: [] for c in classes}
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["image"].unsqueeze(0).to(device)
        logits = validation_forward(model, x, d.val_roi_size, d.val_overlap).float().cpu()
        if "mask" not in item and getattr(d, "dim", 2) == 3:  # unlabelled volumes (nnU-Net imagesTs): masks only
            pred = ConfusionCounts.predictions(logits, d.task)
            _write_volume_mask(dataset, item["meta"], pred[0].numpy(), d.task,
                               out / "masks" / f"{item['meta']['stem']}.nii.gz")
            continue
        target = item["mask"].unsqueeze(0)
        counts.update(logits, target)
        tp, fp, fn, tn = counts.stats(logits, target)
        pred = ConfusionCounts.predictions(logits, d.task)
        hd_target = target.clone()
        if d.ignore_index is not None:  # surface distances have no "ignored" pixel: count those as background
            hd_target[hd_target == d.ignore_index] = 0
        kwargs = {"num_classes": len(classes)} if mode == "multiclass" else {}
        hd95 = M.hausdorff_distance_95(pred, hd_target.long(), mode=mode, **kwargs)[0]
        stem = item["meta"]["stem"]
        for c, name in enumerate(classes):
            per = scores_from_counts(tp[0], fp[0], fn[0], tn[0], _SCORES, classes, [c])
            row = {"image": item["meta"]["path"], "class": name}
            row.update({k: _nan_none(per[f"{k}/{name}"]) for k in _SCORES})
            row["hd95"] = _nan_none(float(hd95[c]))
            if row["hd95"] is not None:
                hd_sum[name].append(row["hd95"])
            rows.append(row)
        if getattr(d, "dim", 2) == 3:
            _write_volume_mask(dataset, item["meta"], pred[0].numpy(), d.task, out / "masks" / f"{stem}.nii.gz")
            continue
        picture = pred[0].numpy() if d.task == "multiclass" else display_indices(pred[0].numpy())
        write_index_png(out / "masks" / f"{stem}.png", picture.astype(np.uint8), palette)
    with warnings.catch_warnings():
        # unlabelled volumes only: nothing was counted, every score is reported as null
        warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
        totals = counts.compute()
    scores = scores_from_counts(totals["tp"], totals["fp"], totals["fn"], totals["tn"], _SCORES, classes, include)
    per_class = [{"class": name, **{k: _nan_none(scores[f"{k}/{name}"]) for k in _SCORES},
                  "hd95": _nan_none(float(np.mean(hd_sum[name]))) if hd_sum[name] else None} for name in classes]
    result = {
        "split": split,
        "images": len(dataset),
        "checkpoint": checkpoint or "best",
        "mean": {k: _nan_none(scores[k]) for k in _SCORES},
        "per_class": {r["class"]: {k: v for k, v in r.items() if k != "class"} for r in per_class},
        "files": {"per_image": str(out / "per_image.csv"), "per_class": str(out / "per_class.csv"),
                  "masks": str(out / "masks")},
    }
    for name, table in (("per_image.csv", rows), ("per_class.csv", per_class)):
        with atomic_output(out / name) as tmp:
            with tmp.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["class"])
                writer.writeheader()
                writer.writerows(table)
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
