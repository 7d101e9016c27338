"""Volume preprocessing for patch training: nonzero cropping, intensity normalisation, random patches.

* :func:`nonzero_bbox` / ``crop_nonzero``: the bounding box of voxels where any channel is nonzero, plus a margin
  (nnU-Net and Flemme crop to it: background air carries no information and costs compute).
* :func:`ct_statistics` + :func:`normalize_ct`: nnU-Net's CT scheme: per channel, the ``percentiles`` (default 0.5
  and 99.5) of the training set's foreground voxels, then ``(clip(x, lo, hi) - mean) / std`` with the mean and std of
  the clipped foreground voxels.
* :func:`zscore`: per channel, per volume ``(x - mean) / std``.
* :class:`PatchSampler`: random patches of a fixed size; with probability ``foreground_oversampling`` a patch is
  placed over a random foreground voxel (at a random position inside the patch, so small structures are seen),
  otherwise uniformly. Volumes smaller
  than the patch are padded (image 0, mask ``mask_pad``).
"""

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["nonzero_bbox", "crop_to_bbox", "ct_statistics", "normalize_ct", "zscore", "PatchSampler",
           "foreground_coords"]

Box = Tuple[Tuple[int, int], ...]


def nonzero_bbox(image: np.ndarray, margin: Union[int, Sequence[int]] = 0) -> Box:
    """``((start, stop), ...)`` per spatial axis of the voxels where any channel of ``(C, *spatial)`` is nonzero,
    widened by ``margin`` and clipped to the volume; the whole volume when all voxels are zero."""
    spatial = image.shape[1:]
    margins = [int(margin)] * len(spatial) if np.isscalar(margin) else [int(m) for m in margin]
    nonzero = np.any(image != 0, axis=0)
    if not nonzero.any():
        return tuple((0, s) for s in spatial)
    box = []
    for axis, size in enumerate(spatial):
        other = tuple(a for a in range(len(spatial)) if a != axis)
        hit = np.flatnonzero(nonzero.any(axis=other))
        box.append((max(0, int(hit[0]) - margins[axis]), min(size, int(hit[-1]) + 1 + margins[axis])))
    return tuple(box)


def crop_to_bbox(array: np.ndarray, box: Box) -> np.ndarray:
    """Crop the trailing ``len(box)`` axes of ``array`` to ``box``."""
    lead = (slice(None),) * (array.ndim - len(box))
    return array[lead + tuple(slice(a, b) for a, b in box)]


def foreground_coords(mask: Optional[np.ndarray], max_points: int = 10000, seed: int = 0) -> np.ndarray:
    """Up to ``max_points`` coordinates ``(n, ndim)`` of voxels with a label > 0 (a fixed random subset)."""
    if mask is None:
        return np.zeros((0, 3), dtype=np.int64)
    coords = np.argwhere(np.asarray(mask) > 0)
    if len(coords) > max_points:
        coords = coords[np.random.default_rng(seed).choice(len(coords), max_points, replace=False)]
    return coords.astype(np.int64)


def ct_statistics(images: Sequence[np.ndarray], masks: Sequence[Optional[np.ndarray]],
                  percentiles: Tuple[float, float] = (0.5, 99.5), max_voxels: int = 1_000_000
                  ) -> List[Tuple[float, float, float, float]]:
    """Per channel ``(low, high, mean, std)`` of the CT scheme over a set of volumes.

    The voxels are those where the mask is > 0 (all voxels of a volume without a mask, or without foreground); a
    volume with more than ``max_voxels`` of them contributes an evenly strided subset.

    Args:
        images: ``(C, *spatial)`` arrays, all with the same ``C``.
        masks: matching label arrays (``*spatial``) or None.
        percentiles: the clipping percentiles.

    Returns:
        One ``(low, high, mean, std)`` per channel; ``std`` is at least 1e-8.
    """
    channels = images[0].shape[0]
    samples: List[List[np.ndarray]] = [[] for _ in range(channels)]
    for image, mask in zip(images, masks):
        select = np.asarray(mask) > 0 if mask is not None else None
        if select is None or not select.any():
            select = np.ones(image.shape[1:], dtype=bool)
        for c in range(channels):
            values = image[c][select].astype(np.float64)
            if len(values) > max_voxels:
                values = values[:: int(np.ceil(len(values) / max_voxels))]
            samples[c].append(values)
    stats = []
    for c in range(channels):
        values = np.concatenate(samples[c])
        lo, hi = np.percentile(values, percentiles)
        clipped = np.clip(values, lo, hi)
        stats.append((float(lo), float(hi), float(clipped.mean()), float(max(clipped.std(), 1e-8))))
    return stats


def normalize_ct(image: np.ndarray, stats: Sequence[Tuple[float, float, float, float]]) -> np.ndarray:
    """``(clip(x_c, low_c, high_c) - mean_c) / std_c`` per channel of ``(C, *spatial)`` (float32)."""
    if len(stats) != image.shape[0]:
        raise ValueError(f"CT statistics for {len(stats)} channels, the volume has {image.shape[0]}")
    out = np.empty(image.shape, dtype=np.float32)
    for c, (lo, hi, mean, std) in enumerate(stats):
        out[c] = (np.clip(image[c].astype(np.float32), lo, hi) - np.float32(mean)) / np.float32(std)
    return out


def zscore(image: np.ndarray) -> np.ndarray:
    """Per channel ``(x - mean) / std`` of ``(C, *spatial)`` over the whole volume (float32)."""
    x = np.asarray(image, dtype=np.float32)
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x.std(axis=axes, keepdims=True, dtype=np.float64)
    return ((x - mean) / np.maximum(std, 1e-8)).astype(np.float32)


class PatchSampler:
    """Random patches of ``patch_size`` from a ``(C, *spatial)`` image and its ``(*spatial)`` mask.

    Args:
        patch_size: the patch's spatial size.
        foreground_oversampling: probability that a patch holds a random foreground voxel (when the volume has
            one); the rest are placed uniformly at random.
        mask_pad: mask value of the padding added to volumes smaller than the patch.
    """

    def __init__(self, patch_size: Sequence[int], foreground_oversampling: float = 0.33, mask_pad: int = 0):
        if not 0.0 <= foreground_oversampling <= 1.0:
            raise ValueError(f"`foreground_oversampling` must be in [0, 1], got {foreground_oversampling}")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.foreground_oversampling = float(foreground_oversampling)
        self.mask_pad = int(mask_pad)

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray], rng: np.random.Generator,
                 fg_coords: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray], bool]:
        """A patch: ``(image patch, mask patch, placed_on_foreground)``.

        Args:
            image: ``(C, *spatial)``.
            mask: ``(*spatial)`` or None.
            rng: the random generator (seeded per item by the dataset).
            fg_coords: foreground coordinates (:func:`foreground_coords`); computed from ``mask`` when None.
        """
        spatial = image.shape[1:]
        if len(spatial) != len(self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} has {len(self.patch_size)} axes, the volume "
                             f"{len(spatial)} ({spatial})")
        pads = [max(0, p - s) for p, s in zip(self.patch_size, spatial)]
        before = [p // 2 for p in pads]
        if any(pads):
            width = [(b, p - b) for b, p in zip(before, pads)]
            image = np.pad(image, [(0, 0)] + width)
            if mask is not None:
                mask = np.pad(mask, width, constant_values=self.mask_pad)
            spatial = image.shape[1:]
        if fg_coords is None:
            fg_coords = foreground_coords(mask)
        elif any(pads) and len(fg_coords):
            fg_coords = fg_coords + np.asarray(before)
        forced = len(fg_coords) > 0 and rng.random() < self.foreground_oversampling
        if forced:
            centre = fg_coords[rng.integers(len(fg_coords))]
            # the patch holds the voxel at a random offset (not always dead centre), clamped into the volume
            start = [int(np.clip(c - rng.integers(0, p), 0, s - p))
                     for c, p, s in zip(centre, self.patch_size, spatial)]
        else:
            start = [int(rng.integers(0, s - p + 1)) for p, s in zip(self.patch_size, spatial)]
        region = tuple(slice(a, a + p) for a, p in zip(start, self.patch_size))
        patch = image[(slice(None),) + region]
        return np.ascontiguousarray(patch), (np.ascontiguousarray(mask[region]) if mask is not None else None), forced
