"""The run folder's pictures: ``curves.png`` (loss and metrics per epoch) and ``predictions.png`` (overlays).

matplotlib is imported here, on first use, with the Agg backend (no display needed).
"""

import csv
import math
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from smp_like.io.atomic import atomic_output
from smp_like.io.images import default_palette, overlay_mask

__all__ = ["read_epoch_history", "plot_curves", "plot_predictions", "display_indices", "image_grid", "save_image_grid",
           "to_display"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib; install it with `pip install smp_like[train]`") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_epoch_history(metrics_csv: Path) -> Dict[str, Dict[int, float]]:
    """Per-epoch values from Lightning's ``metrics.csv``: ``{column: {epoch: value}}`` for ``train/*``/``val/*``.

    Step-level columns (``*_step``) are left out; ``train/loss_epoch`` becomes ``train/loss``.
    """
    history: Dict[str, Dict[int, float]] = {}
    path = Path(metrics_csv)
    if not path.is_file():
        return history
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            epoch = row.get("epoch")
            if not epoch:
                continue
            for key, value in row.items():
                if not value or key in ("epoch", "step") or key.endswith("_step") or "/" not in key:
                    continue
                name = key[: -len("_epoch")] if key.endswith("_epoch") else key
                try:
                    history.setdefault(name, {})[int(float(epoch))] = float(value)
                except ValueError:
                    continue
    return history


def plot_curves(history: Dict[str, Dict[int, float]], path: Path, title: str = "") -> Optional[Path]:
    """One panel per quantity (loss, then each mean metric), train and val lines, epochs on x (1-based)."""
    names = sorted({k.split("/", 1)[1] for k in history if k.count("/") == 1})
    names = sorted(names, key=lambda n: (n != "loss", n))
    if not names:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        for split, style in (("train", "-o"), ("val", "-s")):
            series = history.get(f"{split}/{name}")
            if series:
                epochs = sorted(series)
                ax.plot([e + 1 for e in epochs], [series[e] for e in epochs], style, label=split, markersize=3)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def display_indices(mask: np.ndarray) -> np.ndarray:
    """A ``(H, W)`` class-index picture of a mask: multiclass as is, ``(K, H, W)`` 0/1 as ``max_c (c + 1) m_c``."""
    mask = np.asarray(mask)
    if mask.ndim == 2:
        return mask.astype(np.int64)
    weights = np.arange(1, mask.shape[0] + 1).reshape(-1, 1, 1)
    return (np.clip(mask, 0, 1).astype(np.int64) * weights).max(axis=0)


def plot_predictions(
    images: Sequence[np.ndarray], truths: Sequence[np.ndarray], preds: Sequence[np.ndarray], path: Path,
    class_names: Sequence[str], palette: Optional[Sequence[Sequence[int]]] = None, title: str = "",
    ignore_index: Optional[int] = None,
) -> Path:
    """Rows of image | truth overlay | prediction overlay, with a class legend.

    Args:
        images: ``(H, W, C)`` stored images (any dtype; scaled for display).
        truths, preds: ``(H, W)`` class indices (see :func:`display_indices`).
        path: the PNG to write (atomically).
        class_names: legend names, index = class value.
        palette: one RGB colour per class (default :func:`smp_like.io.default_palette`).
        ignore_index: truth value shown as background.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    n_colours = max([len(class_names) + 1] + [int(m.max()) + 1 for m in list(preds) if m.size])
    palette = [tuple(c) for c in (palette or default_palette(min(max(n_colours, 2), 256)))]
    while len(palette) < n_colours:
        palette += default_palette(n_colours)[len(palette):]
    rows = len(images)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows + 0.8), squeeze=False)
    for r in range(rows):
        truth = np.asarray(truths[r]).copy()
        if ignore_index is not None:
            truth[truth == ignore_index] = 0
        truth = np.clip(truth, 0, len(palette) - 1)
        inter = np.logical_and(truth > 0, preds[r] == truth).sum()
        union = np.logical_or(truth > 0, preds[r] > 0).sum()
        iou = inter / union if union else math.nan
        panels = [(overlay_mask(images[r], np.zeros_like(truth), palette, alpha=0.0), "image"),
                  (overlay_mask(images[r], truth, palette), "truth"),
                  (overlay_mask(images[r], preds[r], palette), f"prediction (fg IoU {iou:.2f})")]
        for c, (picture, name) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    shown = [n for n in class_names]
    handles = [Patch(facecolor=np.asarray(palette[i]) / 255.0, edgecolor="black", label=name)
               for i, name in enumerate(shown) if i < len(palette)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def to_display(image: np.ndarray) -> np.ndarray:
    """A ``(C, *spatial)`` image in [0, 1] as an ``(H, W, 3)`` uint8 picture (3D: the middle slice of the last
    axis; 1 channel: grey; more than 3: the first 3)."""
    image = np.asarray(image, dtype=np.float32)
    while image.ndim > 3:  # volumes: the middle slice
        image = image[..., image.shape[-1] // 2]
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    elif image.shape[0] == 2:
        image = np.concatenate([image, image[:1]], axis=0)
    image = np.moveaxis(image[:3], 0, -1)
    return (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def image_grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile ``rows`` of ``(C, *spatial)`` images in [0, 1] into one ``(H, W, 3)`` uint8 picture, white gaps."""
    pictures = [[to_display(im) for im in row] for row in rows]
    h = max(p.shape[0] for row in pictures for p in row)
    w = max(p.shape[1] for row in pictures for p in row)
    ncol = max(len(row) for row in pictures)
    grid = np.full((len(pictures) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(pictures):
        for c, picture in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + picture.shape[0], x:x + picture.shape[1]] = picture
    return grid


def save_image_grid(path: Path, rows: Sequence[Sequence[np.ndarray]], scale: int = 0) -> Path:
    """Write :func:`image_grid` as a PNG (atomically); small images are enlarged ``scale`` times (0: to about 64
    pixels per tile) with nearest-neighbour, so the grid stays legible."""
    from smp_like.io.images import write_rgb_png

    grid = image_grid(rows)
    if scale == 0:
        tile = max(np.asarray(im).shape[-1] for row in rows for im in row)
        scale = max(1, 64 // max(tile, 1))
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    return write_rgb_png(path, grid)
