"""Sliding-window prediction of a TIFF larger than memory, band by band.

Windows form the same grid as :func:`~smp_like.inference.sliding_window` (same starts, weights and blending
order, so the result equals the in-memory one). They are processed one window row at a time: the input rows of
that window row are decoded from the TIFF (:class:`~smp_like.io.tiled.TiffRowReader`), the window outputs are
accumulated into a band of ``roi + tile`` output rows, and every output row that no later window touches is
normalised, turned into a mask and handed to a tiled TIFF writer. Peak memory is one band of input rows, one band
of accumulated probabilities and a window batch — never the image.
"""

from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch

from smp_like.inference.sliding_window import importance_map, window_starts
from smp_like.io.preprocessing import Preprocessing

__all__ = ["predict_tiff"]

#: Output tile size (rows and columns): also how many finished rows are written at once.
TILE = 256


def _palette_colormap(palette: Sequence[Sequence[int]]) -> np.ndarray:
    colormap = np.zeros((3, 256), np.uint16)
    for i, colour in enumerate(palette[:256]):
        colormap[:, i] = [int(c) * 257 for c in colour]  # TIFF colormaps are 16-bit
    return colormap


def _channel_stats(reader: Any, prep: Preprocessing, band_rows: int) -> Any:
    """Per-channel mean and std over the whole image, for z-score normalisation, in one streaming pass."""
    height = reader.shape[0]
    total = np.zeros(reader.shape[2], np.float64)
    squares = np.zeros(reader.shape[2], np.float64)
    for start in range(0, height, band_rows):
        band = reader.read_rows(start, min(start + band_rows, height)).astype(np.float64)
        if prep.clip is not None:
            band = np.clip(band, float(prep.clip[0]), float(prep.clip[1]))
        total += band.sum(axis=(0, 1))
        squares += (band**2).sum(axis=(0, 1))
    count = height * reader.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean, np.maximum(std, 1e-8)


def _normalize(band: np.ndarray, prep: Preprocessing, stats: Any) -> torch.Tensor:
    """(rows, W, C) stored pixels -> (C, rows, W) float32 normalised as ``prep`` says.

    Computed channels-last (contiguous, so numpy streams through memory) and returned as a channels-first view.
    """
    x = band.astype(np.float32)
    if prep.clip is not None:
        np.clip(x, float(prep.clip[0]), float(prep.clip[1]), out=x)
    if prep.normalization == "zscore":
        mean, std = stats
        x -= mean.astype(np.float32)
        x /= std.astype(np.float32)
    elif prep.normalization == "mean_std":
        x /= np.float32(prep.max_pixel_value)
        if prep.mean is not None:
            if len(prep.mean) != x.shape[-1]:
                raise ValueError(f"the model expects {len(prep.mean)} input channels (its normalisation has "
                                 f"{len(prep.mean)} means), the image has {x.shape[-1]}")
            x -= np.asarray(prep.mean, np.float32)
            x /= np.asarray(prep.std, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)


def predict_tiff(
    path: Path,
    out_stem: Path,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    prep: Preprocessing,
    in_channels: Optional[int],
    roi_size: Union[int, Sequence[int]],
    overlap: float,
    blend: str,
    task: str,
    threshold: float,
    save_probabilities: bool,
    bar: Any = None,
    palette: Optional[Sequence[Sequence[int]]] = None,
    sigma_scale: float = 0.125,
) -> List[Path]:
    """Predict a large 2D TIFF window by window and write ``<out_stem>.tif`` (and ``<out_stem>_probs.tif``).

    Args:
        path: the input TIFF (tiled or striped, chunky channels).
        out_stem: output path without suffix.
        predictor: window batch ``(B, C, h, w)`` -> probabilities ``(B, K, h, w)`` on the CPU, same size.
        prep: the normalisation (``zscore`` statistics are computed over the whole image in a first pass).
        in_channels: channels the model expects (None: unchecked).
        roi_size: window size (int or ``(h, w)``), at most the image size.
        overlap: window overlap, in [0, 1).
        blend: ``"gaussian"`` or ``"constant"``.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        threshold: for binary / multilabel masks.
        save_probabilities: also write float16 probabilities ``(H, W, K)``.
        bar: a tqdm bar to advance per window.
        palette: class colours for the mask's TIFF palette.
        sigma_scale: Gaussian blending width.

    Returns:
        The files written.

    Raises:
        ValueError: for a channel mismatch, a window larger than the image, or a model whose output size differs.
        ImageReadError: for an unreadable file or segment.
    """
    from smp_like.inference.masks import argmax_channels
    from smp_like.io import default_palette
    from smp_like.io.tiled import TiffRowReader, TiledTiffWriter

    roi = (roi_size, roi_size) if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
    writers: List[Any] = []
    with TiffRowReader(path) as reader:
        height, width, channels = reader.shape
        if in_channels is not None and channels != in_channels:
            raise ValueError(f"the model expects {in_channels} input channels, the file has {channels}")
        if roi[0] > height or roi[1] > width:
            raise ValueError(f"window {roi} is larger than the image ({height}, {width}); use a smaller --roi")
        rh, rw = roi
        ys, xs = window_starts(height, rh, overlap), window_starts(width, rw, overlap)
        weights = importance_map(roi, blend, sigma_scale)[None]
        stats = _channel_stats(reader, prep, max(rh, TILE)) if prep.normalization == "zscore" else None
        if bar is not None:
            bar.total += len(ys) * len(xs)
            bar.refresh()
        cap = rh + TILE
        acc: Optional[torch.Tensor] = None
        wsum = torch.zeros(cap, width)
        base = 0
        sw_batch = max(1, int(getattr(predictor, "sw_batch_size", 4)))

        def open_writers(classes: int) -> None:
            colours = palette or default_palette(max(classes + (task == "multilabel"), 2))
            if task == "multilabel":
                writers.append(TiledTiffWriter(out_stem.parent / f"{out_stem.name}.tif", (height, width, classes),
                                               np.uint8, (TILE, TILE)))
            else:
                writers.append(TiledTiffWriter(out_stem.parent / f"{out_stem.name}.tif", (height, width), np.uint8,
                                               (TILE, TILE), colormap=_palette_colormap(colours)))
            if save_probabilities:
                writers.append(TiledTiffWriter(out_stem.parent / f"{out_stem.name}_probs.tif",
                                               (height, width, classes), np.float16, (TILE, TILE)))

        def flush(rows: int) -> None:
            nonlocal base
            assert acc is not None
            probs = acc[:, :rows]
            probs /= wsum[:rows]  # in place: these rows leave the band now
            if task == "multiclass":
                mask = argmax_channels(probs.numpy())
            else:
                mask = (probs > threshold).to(torch.uint8)
                mask = (mask[0] if task == "binary" else mask.permute(1, 2, 0)).numpy()
            writers[0].write_rows(mask)
            if save_probabilities:
                writers[1].write_rows(probs.permute(1, 2, 0).to(torch.float16).numpy())
            # Shift the band up by the rows written, in blocks of `rows` that never overlap (no band-sized
            # temporary); the freed rows start empty.
            for start in range(0, cap - rows, rows):
                stop = min(start + rows, cap - rows)
                acc[:, start:stop] = acc[:, start + rows : stop + rows]
                wsum[start:stop] = wsum[start + rows : stop + rows]
            acc[:, cap - rows :] = 0
            wsum[cap - rows :] = 0
            base += rows

        try:
            for y in ys:
                while y - base >= TILE:
                    flush(TILE)
                band = _normalize(reader.read_rows(y, y + rh), prep, stats)
                top = y - base
                for first in range(0, len(xs), sw_batch):
                    chunk = xs[first : first + sw_batch]
                    windows = torch.stack([band[:, :, x : x + rw] for x in chunk])
                    probs = predictor(windows)
                    if tuple(probs.shape[2:]) != roi:
                        raise ValueError(f"the model's output size {tuple(probs.shape[2:])} differs from the window "
                                         f"{roi}; streaming needs a model with mask_scale 1")
                    if acc is None:
                        if task == "multiclass" and probs.shape[1] > 256:
                            raise ValueError("streamed masks are 8-bit: at most 256 classes")
                        acc = torch.zeros(probs.shape[1], cap, width)
                        open_writers(probs.shape[1])
                    for k, x in enumerate(chunk):
                        acc[:, top : top + rh, x : x + rw].addcmul_(probs[k], weights)
                        wsum[top : top + rh, x : x + rw] += weights[0]
                    if bar is not None:
                        bar.update(len(chunk))
            while base < height:
                flush(min(TILE, height - base))
            return [w.close() for w in writers]
        except BaseException:
            for w in writers:
                w.abort()
            raise
