"""Label and intensity transforms of Flemme's loaders, for 2D images and 3D volumes alike.

* :func:`relabel`: Flemme's ``Relabel``: map values by ``label_map``, or add ``offset``, or (neither) renumber the
  unique values consecutively ``0 .. K-1`` in increasing order.
* :func:`binarize`: ``ToBinaryMask``: ``mask > threshold`` -> 1, else 0.
* :func:`invert_intensity`: ``InverseColor``: ``1 - x`` on intensities scaled to ``[0, 1]``.
* :func:`to_grayscale`: ``GrayScale``: RGB -> one channel (ITU-R BT.601 luma, as PIL's ``convert("L")``).

:class:`LabelTransform` bundles the label ones as the config declares them (``data.label_map``, ``label_offset``,
``relabel_consecutive``, ``mask_threshold``).
"""

from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import numpy as np

__all__ = ["relabel", "binarize", "invert_intensity", "to_grayscale", "LabelTransform"]


def relabel(mask: np.ndarray, label_map: Optional[Mapping[int, int]] = None, offset: Optional[int] = None,
            consecutive: bool = False) -> np.ndarray:
    """Relabel a mask as Flemme's ``Relabel`` does.

    Args:
        mask: integer labels of any shape.
        label_map: ``{source: target}``; values not in the map are kept.
        offset: added to every value.
        consecutive: renumber the unique values to ``0 .. K-1`` (in increasing order).

    Returns:
        The relabelled mask (int64).

    Raises:
        ValueError: when more than one of the three is given.
    """
    if sum(x is not None for x in (label_map, offset)) + bool(consecutive) > 1:
        raise ValueError("relabel: give one of label_map, offset, consecutive")
    mask = np.asarray(mask).astype(np.int64)
    if label_map is not None:
        out = mask.copy()
        for src, dst in label_map.items():  # from the original values: {1: 2, 2: 1} swaps
            out[mask == int(src)] = int(dst)
        return out
    if offset is not None:
        return mask + int(offset)
    if consecutive:
        _, inverse = np.unique(mask, return_inverse=True)
        return inverse.reshape(mask.shape).astype(np.int64)
    return mask


def binarize(mask: np.ndarray, threshold: float) -> np.ndarray:
    """``ToBinaryMask``: 1 where ``mask > threshold``, else 0 (int64)."""
    return (np.asarray(mask) > threshold).astype(np.int64)


def invert_intensity(x: np.ndarray, max_value: Optional[float] = None) -> np.ndarray:
    """``InverseColor``: ``1 - x`` after scaling to ``[0, 1]``, returned in the input's units.

    Args:
        x: intensities.
        max_value: the value that maps to 1 (255 for 8-bit images); None: per array min-max scaling, so the result
            is ``1 - (x - min) / (max - min)`` in ``[0, 1]`` (volumes, float images).
    """
    if max_value is not None:
        return (np.float32(max_value) - np.asarray(x, dtype=np.float32)).astype(np.float32)
    x = np.asarray(x, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    scaled = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return (1.0 - scaled).astype(np.float32)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """``GrayScale``: ``(H, W, 3)`` RGB -> ``(H, W, 1)`` luma ``0.299 R + 0.587 G + 0.114 B``; one channel stays.

    Raises:
        ValueError: for another channel count.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image[..., None]
    if image.shape[-1] == 1:
        return image
    if image.shape[-1] not in (3, 4):
        raise ValueError(f"grayscale needs an RGB image (H, W, 3), got shape {image.shape}")
    luma = image[..., :3].astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
    if image.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    return luma[..., None]


@dataclass
class LabelTransform:
    """The label transforms of a config, applied to a stored mask before it is checked and used."""

    label_map: Optional[Dict[int, int]] = None
    offset: Optional[int] = None
    consecutive: bool = False
    threshold: Optional[float] = None

    @property
    def active(self) -> bool:
        return self.label_map is not None or self.offset is not None or self.consecutive or self.threshold is not None

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        if self.threshold is not None:
            return binarize(mask, self.threshold)
        return relabel(mask, self.label_map, self.offset, self.consecutive)

    @classmethod
    def from_config(cls, data: object) -> "LabelTransform":
        """From a ``DataConfig`` (``label_map``, ``label_offset``, ``relabel_consecutive``, ``mask_threshold``)."""
        return cls(getattr(data, "label_map", None), getattr(data, "label_offset", None),
                   bool(getattr(data, "relabel_consecutive", False)), getattr(data, "mask_threshold", None))
