"""Test mode of reconstruction, generation, supervised-diffusion and classification runs (``smp-like test``).

Writes into ``<run folder>/<split>/`` (or ``out_dir``):

* **reconstruction** (AE, VAE, HAE): ``reconstructions/<stem>.png`` (2D, values in [0, 1] as 8-bit) or
  ``.nii.gz`` (3D, with the input's affine and header), ``per_image.csv`` (ssim, psnr, mse), ``reconstructions.png``
  (image | reconstruction); VAE also ``samples/`` and ``samples.png`` (prior draws).
* **generation** (DDPM, DDIM, LDPM, LDIM): ``generation.num_samples`` samples from a generator seeded with
  ``generation.seed`` in ``samples/sample_NNN.png`` (``.nii.gz`` in 3D) and ``samples.png``; the sampler is DDIM
  when the config's ``model.arch`` is a DDIM class or ``generation.num_inference_steps`` is set (so a DDPM run is
  sampled with DDIM from the same weights, without retraining), else the model's own. With data in the split, also
  its diffusion loss and the image metrics of the one-step x0 estimate (as in validation).
* **supervised diffusion** (SDPM, SDIM): the mean of ``generation.num_ensemble`` sampled masks per image, scored like
  a segmentation (IoU, Dice, precision, recall per class and mean); ``masks/<stem>.png`` (``.nii.gz`` in 3D).
* **classification** (ClM): ``predictions.csv`` (true and predicted class, probabilities) and the accuracy.

``generation.interpolation`` adds ``interpolation.png``: decoded linear interpolations between the latents of the
first two images (AE/VAE), or DDIM samples (eta 0) of spherical interpolations between two noises (diffusion).
Every kind writes ``metrics.json`` (returned).
"""

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from smp_like.io.atomic import atomic_output
from smp_like.training.config import TrainConfig
from smp_like.training.image_metrics import image_scores
from smp_like.training.plots import save_image_grid

__all__ = ["evaluate_generative", "load_generative_model", "write_unit_png"]


def write_unit_png(path: Path, image: np.ndarray) -> Path:
    """Write a ``(C, H, W)`` image in [0, 1] as an 8-bit PNG (1 channel: grey; 3: RGB; other counts: channel 0)."""
    from PIL import Image

    image = np.asarray(image, dtype=np.float32)
    pixels = (np.clip(np.nan_to_num(image), 0, 1) * 255.0 + 0.5).astype(np.uint8)
    picture = Image.fromarray(np.moveaxis(pixels, 0, -1), "RGB") if pixels.shape[0] == 3 else \
        Image.fromarray(pixels[0], "L")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def _write_output(folder: Path, stem: str, image: np.ndarray, meta: Optional[Dict[str, Any]], dim: int) -> Path:
    if dim == 3:
        from smp_like.io.volumes import write_volume

        folder.mkdir(parents=True, exist_ok=True)
        data = image[0] if image.shape[0] == 1 else image
        meta = meta or {}
        return write_volume(folder / f"{stem}.nii.gz", data.astype(np.float32), meta.get("affine"), meta.get("header"))
    return write_unit_png(folder / f"{stem}.png", image)


def load_generative_model(cfg: TrainConfig, checkpoint: Optional[str] = None,
                          fallback: Optional[Any] = None) -> torch.nn.Module:
    """The trained model of a run: ``best/`` (default), ``"last"``, a ``.ckpt`` file or a saved folder.

    ``.ckpt`` files are read into the model the config describes, built without pretrained weights; a ``DDIM``
    config reads a ``DDPM`` run's checkpoint (the same network).

    Args:
        cfg: the run's config.
        checkpoint: ``None``/``"best"``, ``"last"``, a ``.ckpt`` file or a saved folder.
        fallback: ``fallback(cfg, checkpoint)`` loads what is not a ``.ckpt`` (``evaluate.load_trained_model``,
            which also reads Flemme-style checkpoints); default: ``smp_like.from_pretrained`` of the folder.

    Raises:
        FileNotFoundError: when the named weights do not exist.
    """
    import smp_like
    from smp_like.training.builders import build_model

    target = Path(checkpoint) if checkpoint not in (None, "best", "last") else None
    if checkpoint == "last":
        target = cfg.run_dir.resolve() / "checkpoints" / "last.ckpt"
    if target is None or target.is_dir() or target.suffix != ".ckpt":
        if fallback is not None:
            return fallback(cfg, checkpoint)
        folder = target if target is not None else cfg.run_dir.resolve() / "best"
        if not folder.exists():
            raise FileNotFoundError(f"no trained weights at {folder}; train first (`smp-like train --config ...`)")
        return smp_like.from_pretrained(str(folder))
    if not target.is_file():
        raise FileNotFoundError(f"no trained weights at {target}; train first (`smp-like train --config ...`)")
    model = build_model(cfg.model, len(cfg.data.classes), pretrained=False)
    state = torch.load(target, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model


def _nan_none(x: Any) -> Optional[float]:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    with atomic_output(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image"])
            writer.writeheader()
            writer.writerows(rows)


def _slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation between two Gaussian noises (keeps their norm, unlike a linear mix)."""
    cos = float((a * b).sum() / (a.norm() * b.norm()))
    theta = math.acos(max(-1.0, min(1.0, cos)))
    if theta < 1e-6:
        return (1 - w) * a + w * b
    return (math.sin((1 - w) * theta) * a + math.sin(w * theta) * b) / math.sin(theta)


@torch.no_grad()
def evaluate_generative(cfg: TrainConfig, checkpoint: Optional[str] = None, split: str = "test",
                        out_dir: Optional[Union[str, Path]] = None,
                        device: Union[str, torch.device] = "cpu",
                        model: Optional[torch.nn.Module] = None) -> Dict[str, Any]:
    """Test a reconstruction / generation / supervised-diffusion / classification run (see the module docstring).

    Args:
        cfg: the config (a test config may name another sampler, e.g. ``model.arch: DDIM``).
        checkpoint: ``None``/``"best"``, ``"last"``, a ``.ckpt`` file or a saved model folder.
        split: ``"test"`` or ``"val"``.
        out_dir: where to write (default ``<run folder>/<split>``).
        device: torch device.
        model: the loaded model (default: :func:`load_generative_model`).

    Returns:
        ``metrics.json``'s content (``mean`` and ``per_class`` as for segmentation, plus the kind's own keys).

    Raises:
        ValueError: for a split without data where the kind needs data; DataError for bad data files.
    """
    from smp_like.training.generative_task import model_kind
    from smp_like.training.config import task_kind

    kind = task_kind(cfg)
    if kind == "supervised":
        from smp_like.training.data import SegmentationDataModule

        datamodule = SegmentationDataModule(cfg).prepare()
    else:
        from smp_like.training.generative_data import ImageDataModule

        datamodule = ImageDataModule(cfg).prepare()
    dataset = datamodule.datasets.get(split)
    model = (model if model is not None else load_generative_model(cfg, checkpoint)).to(device).eval()
    # Only sampling needs no data of the split (its size comes from any split); everything else scores images.
    if dataset is None and (kind != "generative" or model_kind(model) == "autoencoder"):
        raise ValueError(f"no {split!r} split: add data.{split} folders to the config")
    out = Path(out_dir) if out_dir is not None else cfg.run_dir.resolve() / split
    out.mkdir(parents=True, exist_ok=True)
    dim = int(getattr(cfg.data, "dim", 2) or 2)
    base = {"split": split, "images": len(dataset) if dataset is not None else 0, "checkpoint": checkpoint or "best",
            "task": cfg.resolved_task, "model": type(model).__name__}
    if kind == "classification":
        result = _classification(cfg, model, dataset, out, device)
    elif kind == "supervised":
        result = _supervised(cfg, model, dataset, out, device, dim)
    elif model_kind(model) == "autoencoder":
        result = _reconstruction(cfg, model, dataset, out, device, dim)
    else:
        result = _generation(cfg, model, dataset, datamodule, out, device, dim)
    result = {**base, **result}
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _batches(dataset: Any, size: int):
    from smp_like.training.data import collate

    for start in range(0, len(dataset), size):
        yield collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])


def _reconstruction(cfg: TrainConfig, model: torch.nn.Module, dataset: Any, out: Path, device: Any,
                    dim: int) -> Dict[str, Any]:
    from smp_like.generative.autoencoder import VAE
    from smp_like.training.generative_task import generate, reconstruct

    names = [n for n in cfg.metrics.names] or ["psnr", "ssim", "mse"]
    rows: List[Dict[str, Any]] = []
    shown: List[List[np.ndarray]] = [[], []]
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["image"].unsqueeze(0).to(device)
        recon = reconstruct(model, x).float()
        scores = image_scores(recon.clamp(0, 1) if model.output_activation else recon, x, names)
        _write_output(out / "reconstructions", item["meta"]["stem"], recon[0].clamp(0, 1).cpu().numpy(),
                      item["meta"], dim)
        rows.append({"image": item["meta"]["path"], **{k: _nan_none(v[0]) for k, v in scores.items()}})
        if i < cfg.generation.num_samples:
            shown[0].append(x[0].cpu().numpy())
            shown[1].append(recon[0].clamp(0, 1).cpu().numpy())
    _write_csv(out / "per_image.csv", rows)
    files = {"per_image": str(out / "per_image.csv"), "reconstructions": str(out / "reconstructions")}
    if shown[0]:
        save_image_grid(out / "reconstructions.png", shown)
        files["grid"] = str(out / "reconstructions.png")
    result: Dict[str, Any] = {"mean": {n: _nan_none(np.mean([r[n] for r in rows if r[n] is not None]))
                                       for n in names}, "per_class": {}}
    gen = cfg.generation
    if isinstance(model, VAE):
        size = dataset[0]["image"].shape[1:]
        generator = torch.Generator(device="cpu").manual_seed(int(gen.seed))
        samples = generate(model, gen.num_samples, size, generator, {}, gen.clip_range).clamp(0, 1).cpu().numpy()
        for j, sample in enumerate(samples):
            _write_output(out / "samples", f"sample_{j:03d}", sample, dataset[0]["meta"], dim)
        save_image_grid(out / "samples.png", [list(samples)])
        files.update(samples=str(out / "samples"), samples_grid=str(out / "samples.png"))
    if gen.interpolation and len(dataset) >= 2:
        a, b = (dataset[i]["image"].unsqueeze(0).to(device) for i in (0, 1))
        za, zb = (model.encode(v) for v in (a, b))
        if isinstance(model, VAE):
            za, zb = za[0], zb[0]
        steps = [w / 7 for w in range(8)]
        frames = [model.decode((1 - w) * za + w * zb, a.shape[2:]).clamp(0, 1)[0].cpu().numpy() for w in steps]
        save_image_grid(out / "interpolation.png", [frames])
        files["interpolation"] = str(out / "interpolation.png")
    result["files"] = files
    return result


def _generation(cfg: TrainConfig, model: torch.nn.Module, dataset: Any, datamodule: Any, out: Path, device: Any,
                dim: int) -> Dict[str, Any]:
    from smp_like.training.generative_task import GenerativeTask, generate, sampler_for

    gen = cfg.generation
    reference = dataset if dataset is not None else next(iter(datamodule.datasets.values()), None)
    if reference is None or len(reference) == 0:
        raise ValueError("no data to take the sample size from: add data.train or data.test folders")
    size = tuple(reference[0]["image"].shape[1:])
    sampling = sampler_for(model, cfg.model.arch, gen.num_inference_steps)
    generator = torch.Generator(device="cpu").manual_seed(int(gen.seed))
    samples = generate(model, gen.num_samples, size, generator, sampling, gen.clip_range).float().cpu()
    for j, sample in enumerate(samples.numpy()):
        _write_output(out / "samples", f"sample_{j:03d}", sample, reference[0]["meta"], dim)
    save_image_grid(out / "samples.png", [list(samples.numpy())])
    steps = sampling.get("num_inference_steps") or (
        getattr(model, "num_inference_steps", None) if sampling["sampler"] == "ddim"
        else model.scheduler.num_train_timesteps)
    result: Dict[str, Any] = {
        "sampler": sampling["sampler"], "num_inference_steps": steps, "num_samples": int(samples.shape[0]),
        "sample_mean": _nan_none(samples.mean()), "sample_std": _nan_none(samples.std()),
        "all_finite": bool(torch.isfinite(samples).all()), "per_class": {}, "mean": {},
        "files": {"samples": str(out / "samples"), "grid": str(out / "samples.png")},
    }
    if dataset is not None and len(dataset) > 0:
        names = list(cfg.metrics.names)
        task = GenerativeTask(model, metrics=names).to(device).eval()
        losses, scores, count = [], {n: [] for n in names}, 0
        for b, batch in enumerate(_batches(dataset, cfg.data.val_batch_size or cfg.data.batch_size)):
            x = batch["image"].to(device)
            g = torch.Generator(device="cpu").manual_seed(int(gen.seed) * 1_000_003 + b)
            loss, estimate = task._diffusion_terms(x, g)
            losses.append(float(loss) * len(x))
            count += len(x)
            for n, v in image_scores(estimate.float().clamp(0, 1), x, names).items():
                scores[n] += v.tolist()
        result["mean"] = {"loss": _nan_none(sum(losses) / count), **{n: _nan_none(np.mean(v)) for n, v in scores.items()}}
    if gen.interpolation:
        shape = (1, model.in_channels, *(model.autoencoder.latent_size(size) if hasattr(model, "autoencoder")
                                          else size))
        noises = torch.randn((2, *shape[1:]), generator=generator)
        frames = []
        for w in [k / 7 for k in range(8)]:
            noise = _slerp(noises[0], noises[1], w)[None].to(device)
            ddim = {"sampler": "ddim", "eta": 0.0, "num_inference_steps": sampling.get("num_inference_steps")
                    or model.num_inference_steps}
            frames.append(generate(model, 1, size, generator, ddim, gen.clip_range, noise=noise)[0].cpu().numpy())
        save_image_grid(out / "interpolation.png", [frames])
        result["files"]["interpolation"] = str(out / "interpolation.png")
    return result


def _supervised(cfg: TrainConfig, model: torch.nn.Module, dataset: Any, out: Path, device: Any,
                dim: int) -> Dict[str, Any]:
    from smp_like.io.images import default_palette, write_index_png
    from smp_like.training.generative_task import sampler_for
    from smp_like.training.metrics import ConfusionCounts, scores_from_counts
    from smp_like.training.plots import display_indices

    d = cfg.data
    gen = cfg.generation
    classes = list(d.classes)
    counts = ConfusionCounts(d.task, len(classes), d.ignore_index)
    scores_names = ("iou", "dice", "precision", "recall")
    include = range(1, len(classes)) if d.task == "multiclass" and not cfg.metrics.include_background else \
        range(len(classes))
    sampling = sampler_for(model, cfg.model.arch, gen.num_inference_steps)
    generator = torch.Generator(device="cpu").manual_seed(int(gen.seed))
    palette = default_palette(max(len(classes) + 1, 2))
    rows: List[Dict[str, Any]] = []
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["image"].unsqueeze(0).to(device)
        probs = model(x, num_ensemble=gen.num_ensemble, generator=generator, **sampling).float().cpu()
        # The ensemble mean is a probability: its logit gives the same thresholded / argmax prediction.
        logits = torch.logit(probs.clamp(1e-6, 1 - 1e-6))
        target = item["mask"].unsqueeze(0)
        if d.task != "multiclass" and target.dim() == logits.dim() - 1:
            target = target.unsqueeze(1)
        counts.update(logits, target)
        tp, fp, fn, tn = counts.stats(logits, target)
        per = scores_from_counts(tp[0], fp[0], fn[0], tn[0], scores_names, classes, include)
        rows.append({"image": item["meta"]["path"], **{k: _nan_none(per[k]) for k in scores_names}})
        pred = ConfusionCounts.predictions(logits, d.task)[0].numpy()
        picture = pred if d.task == "multiclass" else display_indices(pred)
        stem = item["meta"]["stem"]
        if dim == 3:
            _write_output(out / "masks", stem, picture[None].astype(np.float32), item["meta"], dim)
        else:
            write_index_png(out / "masks" / f"{stem}.png", picture.astype(np.uint8), palette)
    totals = counts.compute()
    scores = scores_from_counts(totals["tp"], totals["fp"], totals["fn"], totals["tn"], scores_names, classes, include)
    _write_csv(out / "per_image.csv", rows)
    return {
        "num_ensemble": gen.num_ensemble, "sampler": sampling["sampler"],
        "mean": {k: _nan_none(scores[k]) for k in scores_names},
        "per_class": {c: {k: _nan_none(scores[f"{k}/{c}"]) for k in scores_names} for c in classes},
        "files": {"per_image": str(out / "per_image.csv"), "masks": str(out / "masks")},
    }


def _classification(cfg: TrainConfig, model: torch.nn.Module, dataset: Any, out: Path, device: Any) -> Dict[str, Any]:
    classes = list(cfg.data.classes)
    rows: List[Dict[str, Any]] = []
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for batch in _batches(dataset, cfg.data.val_batch_size or cfg.data.batch_size):
        probs = torch.softmax(model(batch["image"].to(device)).float(), dim=1).cpu()
        pred = probs.argmax(1)
        for meta, label, p, row in zip(batch["meta"], batch["label"].tolist(), pred.tolist(), probs.tolist()):
            confusion[label, p] += 1
            rows.append({"image": meta["path"], "stem": meta["stem"], "label": classes[label],
                         "predicted": classes[p], **{f"p_{c}": round(v, 6) for c, v in zip(classes, row)}})
    _write_csv(out / "predictions.csv", rows)
    total = confusion.sum()
    per_class = {c: {"accuracy": _nan_none(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None,
                     "images": int(confusion[i].sum())} for i, c in enumerate(classes)}
    return {"mean": {"accuracy": _nan_none(np.trace(confusion) / total) if total else None},
            "per_class": per_class, "confusion_matrix": confusion.tolist(),
            "files": {"predictions": str(out / "predictions.csv")}}
