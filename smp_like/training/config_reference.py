"""Generate docs/config_reference.md: every key of the training config with its type, default and description.

The schema (:class:`smp_like.training.config.TrainConfig`) is walked recursively through pydantic's
``model_fields``, so a key added to the schema appears here without editing this file. A key's description is, in
order: its ``Field(description=...)``, its entry in the ``Attributes:`` section of its class's docstring, or its
entry in :data:`DESCRIPTIONS` below; tests/docs/test_config_reference.py fails when a key has none, and when the
committed page is not what this module writes today::

    python -m smp_like.training.config_reference --write docs/config_reference.md
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from smp_like.training.config import TrainConfig

__all__ = ["DESCRIPTIONS", "config_rows", "config_reference", "main"]

DESCRIPTIONS: Dict[str, str] = {
    # model
    "model.arch": "any smp_like architecture (case-insensitive); ignored with `from_pretrained`",
    "model.from_pretrained": "a saved model folder or Hub id to fine-tune instead of `arch`; its "
    "`preprocessing.json` is reused",
    "model.encoder_name": "encoder (any registered name or `tu-<timm name>`)",
    "model.encoder_weights": "pretrained tag, or `null` for random weights",
    "model.in_channels": "input channels",
    # data
    "data.task": "`binary` (one class: the foreground), `multiclass` (classes include the background), "
    "`multilabel`",
    "data.classes": "class names; index = mask value",
    "data.train": "one root or a list of roots (see `data.train[]`)",
    "data.val": "validation roots; without them `val_fraction` of `train` is held out (seeded)",
    "data.test": "test roots, scored after training and by `smp-like test`",
    "data.val_fraction": "held-out fraction of `train` when there is no `val` (0: no validation)",
    "data.mask_format": "`index`, `binary` (0/255) or `colour` (RGB + `colour_map`)",
    "data.colour_map": "one `[r, g, b]` per class (also the palette of plots and predicted PNGs)",
    "data.ignore_index": "mask value left out of loss and metrics",
    "data.normalization": "input normalisation (see `data.normalization`); default: the encoder's statistics",
    "data.augment": "albumentations pipelines (see `data.augment`)",
    "data.crop_size": "`[h, w]` random training crops (smaller images are padded)",
    "data.batch_size": "training batch size per process",
    "data.val_batch_size": "validation/test batch size (default: `batch_size`)",
    "data.num_workers": "data loader worker processes",
    "data.aux_labels": "`mask` or a CSV (`stem` + one 0/1 column per class) for the classification head",
    "data.val_roi_size": "sliding-window size for validation (`null`: whole images)",
    "data.val_overlap": "overlap of the validation windows",
    "data.train[].images": "image folder",
    "data.train[].masks": "mask folder (files matched to images by stem)",
    "data.train[].image_suffix": "only images whose name ends with this",
    "data.train[].mask_suffix": "suffix of the mask files, stripped to match stems",
    "data.normalization.normalization": "`mean_std` (fixed statistics), `zscore` (per image) or `none`",
    "data.normalization.mean": "per-channel mean (after dividing by `max_pixel_value`)",
    "data.normalization.std": "per-channel standard deviation",
    "data.normalization.max_pixel_value": "inputs are divided by this first",
    "data.normalization.clip": "`[low, high]` clip of the raw values before normalising",
    "data.augment.train": "transforms applied to training pairs (image and mask together)",
    "data.augment.eval": "transforms applied to validation and test pairs",
    "data.augment.train[].name": "an albumentations class name; other keys are its arguments",
    # loss
    "loss.terms": "the weighted terms (one name, a list, or `{terms: [...]}`); default CrossEntropy + Dice",
    "loss.terms[].name": "a name of `smp_like.losses.LOSSES` (case-insensitive); other keys are its arguments",
    "loss.terms[].weight": "weight of the term in the sum",
    "loss.aux_weight": "weight of the classification head's BCE, when the model has one",
    "loss.deep_supervision": "wrap the loss in `PyramidLoss` over the side outputs",
    "loss.side_weights": "per side output, coarse to fine (default: their mean)",
    # metrics
    "metrics.names": "scores logged during validation and test",
    "metrics.monitor": "metric for best checkpoints, early stopping and `ReduceLROnPlateau`",
    "metrics.mode": "`max` or `min`: which direction of `monitor` is better",
    "metrics.include_background": "multiclass: average over class 0 too",
    "metrics.hd95": "also log the 95th-percentile Hausdorff distance",
    # optimizer, scheduler
    "optimizer.name": "a `torch.optim` class; other keys are its arguments",
    "optimizer.lr": "learning rate",
    "optimizer.encoder_lr": "learning rate of the encoder's parameter group",
    "optimizer.decoder_lr": "learning rate of the other parameters (decoder and heads)",
    "scheduler.name": "a `torch.optim.lr_scheduler` class or `null`; other keys are its arguments",
    "scheduler.interval": "`epoch` or `step`: what one scheduler step is",
    "scheduler.warmup": "linear warmup over this many intervals",
    "scheduler.warmup_start_factor": "the warmup starts at this fraction of the learning rate",
    # trainer (Lightning's Trainer arguments)
    "trainer.max_epochs": "epochs to train",
    "trainer.max_steps": "stop after this many optimizer steps (-1: no limit)",
    "trainer.accelerator": "`auto`, `cpu`, `gpu`, ...",
    "trainer.devices": "number of devices, a list of ids, or `auto`",
    "trainer.strategy": "`auto`, `ddp` (= `ddp_find_unused_parameters_true`), `fsdp`, ...",
    "trainer.num_nodes": "machines in a multi-node run",
    "trainer.precision": "`32-true`, `bf16-mixed`, `16-mixed`, ...",
    "trainer.accumulate_grad_batches": "batches per optimizer step",
    "trainer.gradient_clip_val": "clip gradients at this norm (`null`: no clipping)",
    "trainer.deterministic": "Lightning's deterministic mode",
    "trainer.log_every_n_steps": "logging interval in steps",
    "trainer.check_val_every_n_epoch": "validate every N epochs",
    "trainer.enable_progress_bar": "show the progress bar",
    # checkpoint, early stopping, plots
    "checkpoint.save_top_k": "best checkpoints kept (-1: all)",
    "checkpoint.every_n_train_steps": "also write `last.ckpt` every N steps",
    "early_stopping.patience": "stop after this many validations without improvement (`null`: never)",
    "early_stopping.min_delta": "smallest improvement that counts",
    "plots.every_n_epochs": "refresh `predictions.png` every N epochs",
    "plots.num_samples": "validation images shown in `predictions.png`",
    # generative and classification runs (issue 16)
    "task": "`auto` (from `model.arch`), `segmentation`, `classification`, `reconstruction` or `generation`",
    "generation": "sample grids during training and the sampling settings of test runs (see `generation`)",
    "data.labels_csv": "classification: a CSV with columns `stem` and `label` (class index or name)",
    "generation.sample_every_n_epochs": "`samples.png` / `reconstructions.png` in the run folder every N epochs",
    "generation.num_samples": "images in those grids, and samples written by `smp-like test`",
    "generation.seed": "seed of the fixed generator of the grids and test samples",
    "generation.num_inference_steps": "DDIM steps when sampling (`null`: the model's own)",
    "generation.clip_range": "`[low, high]`: clamp samples in the model's range ([-1, 1] for pixel diffusion)",
    "generation.num_ensemble": "SDPM / SDIM test: mean of N samples per image, then the segmentation metrics",
    "generation.interpolation": "test: also write `interpolation.png` (latent or noise interpolation)",
    # 3D volumes and the nnU-Net layout (issue 16)
    "data.dim": "`2` (images) or `3` (volumes); `3` fills `model.spatial_dims: 3` when the model leaves it out",
    "data.layout": "`folder` (the roots of `train`/`val`/`test`) or `nnunet` (`root` is an nnU-Net raw dataset)",
    "data.root": "`nnunet`: the dataset folder; `classes` and `model.in_channels` come from its `dataset.json` "
    "when left out",
    "data.patch_size": "`[d, h, w]`: random training patches of volumes (`null`: whole volumes)",
    "data.patches_per_volume": "patches drawn from each training volume per epoch",
    "data.foreground_oversampling": "probability that a training patch is placed on a random foreground voxel",
    "data.crop_nonzero": "crop each volume to the bounding box of its nonzero voxels (undone for test masks)",
    "data.crop_nonzero.margin": "voxels kept around the bounding box (one value or one per axis)",
    "data.label_map": "`{source: target}` applied to stored masks before anything else",
    "data.label_offset": "added to stored mask values",
    "data.relabel_consecutive": "renumber the unique mask values to `0..K-1`",
    "data.mask_threshold": "`mask > t` -> 1, else 0",
    "data.invert_intensity": "`1 - x` on intensities scaled to `[0, 1]`",
    "data.grayscale": "RGB -> one channel (2D); sets `model.in_channels: 1` when left out",
    "data.resize": "`[h, w]` or `[d, h, w]`: resize images (linear) and masks (nearest) first",
    "data.train[].pairing": "`stem` (same file stem) or `flemme` (same relative path, suffix replaced)",
    "data.normalization.percentiles": "`ct`: the foreground percentiles the values are clipped to",
    # performance (issue 18)
    "model.gradient_checkpointing": "recompute activations in the backward pass to save memory "
    "(`model.set_gradient_checkpointing(True)`; see performance.md)",
    # Flemme's checkpoints and test section (issue 16)
    "checkpoint.flemme_dir": "also write Flemme's `ckp_last.pth`, `ckp_best_loss.pth`, `ckp_best_score.pth` there",
    "checkpoint.every_n_epochs": "how often `ckp_last.pth` is written (Flemme's `save_after_epochs`; `null`: every "
    "epoch)",
    "test": "what `smp-like test` scores and writes (see `test`)",
    "test.checkpoint": "a Flemme `.pth`, a `.ckpt`, a saved folder, `best` or `last` (`--checkpoint` wins)",
    "test.output_dir": "where test outputs go (default `<run folder>/test`)",
    "test.save_inputs": "copy each test input into `inputs/`",
    "test.save_targets": "copy each test target into `targets/`",
    "test.colorize": "2D: write the input with the predicted classes blended over it into `colorized/`",
}
"""Descriptions of the keys whose schema entry carries none (``key.path`` -> text; ``[]`` marks list items)."""

# Sections whose extra keys are passed on as constructor arguments (``extra="allow"``), with what receives them.
_OPEN_NOTE = "Any other key is passed on as an argument of {}."
_RECEIVERS = {
    "model": "the model's constructor (`encoder_depth`, `decoder_channels`, `aux_params`, ...); `classes` "
    "defaults to `len(data.classes)`",
    "optimizer": "the optimizer (`weight_decay`, `momentum`, ...)",
    "scheduler": "the scheduler (`T_max`, `total_steps` and `total_iters` are filled from the run length when left "
    "out)",
    "trainer": "`lightning.pytorch.Trainer` (`num_sanity_val_steps`, `limit_train_batches`, ...)",
    "loss.terms[]": "the loss class",
    "data.augment.train[]": "the albumentations transform (`p`, `limit`, ...)",
}


def _attribute_docs(cls: type) -> Dict[str, str]:
    """``name: text`` entries of the ``Attributes:`` section of a class docstring (Google style)."""
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, flags=re.M)
    if not match:
        return {}
    entries: Dict[str, str] = {}
    current = None
    for line in match.group(1).splitlines():
        item = re.match(r"^ {4}(\w+)(?: \([^)]*\))?: (.*)$", line)
        if item:
            current = item.group(1)
            entries[current] = item.group(2).strip()
        elif current and line.strip():
            entries[current] += " " + line.strip()
    return entries


def _models_in(annotation: Any) -> List[Tuple[type, bool]]:
    """The pydantic models an annotation holds, each with whether it is inside a list/tuple."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    origin = typing.get_origin(annotation)
    found = []
    for arg in typing.get_args(annotation):
        for model, in_list in _models_in(arg):
            found.append((model, in_list or origin in (list, List, tuple, Tuple)))
    return found


def format_type(annotation: Any) -> str:
    """A short, YAML-minded spelling of an annotation: ``int``, ``str | null``, ``list[float]``, ``"a" | "b"``."""
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in args)
    if origin in (Union, getattr(types, "UnionType", Union)):
        parts = [format_type(a) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin in (list, List):
        return f"list[{format_type(args[0])}]" if args else "list"
    if origin in (tuple, Tuple):
        return f"[{', '.join(format_type(a) for a in args)}]" if args else "list"
    if origin in (dict, Dict):
        return f"map[{format_type(args[0])}, {format_type(args[1])}]" if args else "map"
    if inspect.isclass(annotation):
        if issubclass(annotation, BaseModel):
            return "section"
        return {"str": "str", "int": "int", "float": "float", "bool": "bool"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _format_default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        return "`[" + ", ".join(str(getattr(v, "name", "...")) for v in value) + "]`"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`"


def _walk(model: type, prefix: str, aliases: Optional[Dict[type, List[str]]] = None):
    """Yield ``(section path, model class, rows, other paths)`` for ``model`` and every nested section.

    A section class used at several paths (``data.train[]``, ``data.val[]``, ``data.test[]``) is listed once, at
    its first path; the others are named with it.
    """
    top = aliases is None
    if top:
        aliases = {}
    aliases[model] = []
    attribute_docs = _attribute_docs(model)
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        description = field.description or attribute_docs.get(name) or DESCRIPTIONS.get(key, "")
        rows.append(
            {"key": key, "type": format_type(field.annotation), "default": _format_default(field),
             "description": description}
        )
        for sub_model, in_list in _models_in(field.annotation):
            nested.append((sub_model, key + ("[]" if in_list else "")))
    yield prefix, model, rows, aliases[model]
    for sub_model, sub_prefix in nested:
        if sub_model in aliases:
            aliases[sub_model].append(sub_prefix)
        else:
            yield from _walk(sub_model, sub_prefix, aliases)


def config_rows() -> List[Dict[str, str]]:
    """Every key of the schema, depth first: ``key`` (dotted path), ``type``, ``default`` and ``description``."""
    return [row for _, _, rows, _ in _walk(TrainConfig, "") for row in rows]


def config_reference() -> str:
    """The Markdown of docs/config_reference.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m smp_like.training.config_reference --write docs/config_reference.md` from the",
        "     schema (smp_like/training/config.py); do not edit by hand. -->",
        "",
        "Every key of the training configuration (`smp-like train --config X.yaml`), generated from the pydantic",
        "schema `smp_like.training.config.TrainConfig`. `[]` marks the items of a list (`data.train[].images` is the",
        "`images` key of each training root). How the keys work together: [Configuration](configuration.md).",
        "",
    ]
    for prefix, model, rows, others in list(_walk(TrainConfig, "")):
        title = f"`{prefix}`" if prefix else "Top level"
        if others:
            title += " (also " + ", ".join(f"`{o}`" for o in others) + ")"
        summary = (inspect.getdoc(model) or "").split("\n\n")[0].replace("\n", " ") if model.__doc__ else ""
        lines += [f"## {title}", ""]
        if summary and prefix:
            lines += [summary, ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for row in rows:
            cells = [f"`{row['key']}`", f"`{row['type']}`".replace("|", "\\|"), row["default"], row["description"]]
            lines.append("| " + " | ".join(c.replace("\n", " ") for c in cells) + " |")
        lines.append("")
        if model.model_config.get("extra") == "allow":
            receiver = _RECEIVERS.get(prefix, "the object this section builds")
            lines += [_OPEN_NOTE.format(receiver), ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Print the reference, or write it (``--write PATH``) atomically.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(description="Write the configuration reference page.")
    parser.add_argument("--write", metavar="PATH", help="write the page here (else print it)")
    args = parser.parse_args(argv)
    text = config_reference()
    if args.write:
        path = Path(args.write)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
