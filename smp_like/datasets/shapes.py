"""A synthetic multi-class segmentation dataset: circles, squares and triangles on textured backgrounds.

Every image is drawn from its own random stream, seeded by ``(seed, split, index)``, so item ``i`` is the same
whatever ``n`` is, the same in every process, and the ``"train"``/``"val"``/``"test"`` splits never share an
image. Colours are drawn from one distribution for background and shapes alike and every surface carries a
gradient, stripes or noise, so a pixel's colour alone does not give its class: the model has to see shape.

Only numpy and torch are needed; albumentations is imported only when a ``transform`` is applied.
"""

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ShapesDataset", "SHAPES_CLASSES", "SHAPES_MEAN", "SHAPES_STD"]

#: Class names, index = label value in the mask.
SHAPES_CLASSES: Tuple[str, ...] = ("background", "circle", "square", "triangle")

#: Per-channel statistics used to normalise images (the images are roughly uniform in [0, 1]).
SHAPES_MEAN: Tuple[float, float, float] = (0.5, 0.5, 0.5)
SHAPES_STD: Tuple[float, float, float] = (0.25, 0.25, 0.25)

_SPLITS = {"train": 0, "val": 1, "test": 2}

# Minimum RGB distance between a shape's colour and the background colour under it, so a shape is always
# visible; below it a colour is drawn again.
_MIN_CONTRAST = 0.35


def _require_albumentations() -> None:
    try:
        import albumentations  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ShapesDataset(transform=...) needs albumentations; "
            "install it with `pip install smp_like[train]`."
        ) from err


class ShapesDataset(Dataset):
    """Synthetic segmentation data: ``background`` plus ``circle``, ``square`` and ``triangle``.

    Each image holds ``num_shapes`` shapes (drawn uniformly from the given range) of random size, position,
    rotation, colour and texture, placed mostly without overlap; where two overlap, the one drawn last wins
    in both image and mask. Gaussian pixel noise is added on top.

    Args:
        n: Number of images.
        image_size: Height and width in pixels (an int for square images, or ``(height, width)``).
        seed: Seed of the whole dataset; item ``i`` depends only on ``(seed, split, i)``.
        split: ``"train"``, ``"val"`` or ``"test"``; different splits of the same seed share no image.
        num_shapes: Inclusive ``(min, max)`` number of shapes per image.
        size_range: Inclusive ``(min, max)`` shape "radius" as a fraction of the shorter image side.
        noise: Standard deviation of the additive Gaussian pixel noise (image values are in ``[0, 1]``).
        transform: Optional albumentations transform (e.g. ``A.Compose([...])``), called as
            ``transform(image=image, mask=mask)`` with ``image`` HxWx3 ``uint8`` and ``mask`` HxW ``int64``.
            If it returns a ``uint8`` image, the dataset normalises it as usual; a float image (e.g. after
            ``A.Normalize``) is taken as already normalised.
        normalize: If True (default), images are returned as ``(x / 255 - SHAPES_MEAN) / SHAPES_STD``;
            if False, as float32 in ``[0, 1]``.

    Returns (per item):
        ``(image, mask)``: ``image`` float32 tensor ``3xHxW``, ``mask`` int64 tensor ``HxW`` with values in
        ``range(len(ShapesDataset.classes))``.

    Raises:
        ValueError: If an argument is out of range.
        ImportError: If ``transform`` is given and albumentations is not installed.
    """

    classes: Tuple[str, ...] = SHAPES_CLASSES
    mean: Tuple[float, float, float] = SHAPES_MEAN
    std: Tuple[float, float, float] = SHAPES_STD

    def __init__(
        self,
        n: int = 512,
        image_size: Union[int, Sequence[int]] = 64,
        seed: int = 0,
        split: str = "train",
        num_shapes: Tuple[int, int] = (1, 4),
        size_range: Tuple[float, float] = (0.09, 0.2),
        noise: float = 0.06,
        transform: Optional[Callable[..., Dict[str, Any]]] = None,
        normalize: bool = True,
    ) -> None:
        if isinstance(image_size, int):
            height, width = image_size, image_size
        else:
            if len(image_size) != 2:
                raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
            height, width = (int(s) for s in image_size)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if min(height, width) < 16:
            raise ValueError(f"image_size must be at least 16 pixels per side, got {(height, width)}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        lo, hi = num_shapes
        if not 0 <= lo <= hi:
            raise ValueError(f"num_shapes must be (min, max) with 0 <= min <= max, got {num_shapes!r}")
        smin, smax = size_range
        if not 0 < smin <= smax <= 0.5:
            raise ValueError(f"size_range must satisfy 0 < min <= max <= 0.5, got {size_range!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if transform is not None:
            _require_albumentations()

        self.n = int(n)
        self.image_size = (height, width)
        self.seed = int(seed)
        self.split = split
        self.num_shapes = (int(lo), int(hi))
        self.size_range = (float(smin), float(smax))
        self.noise = float(noise)
        self.transform = transform
        self.normalize = normalize
        # Pixel-centre coordinates, shared by every draw.
        self._yy, self._xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for ShapesDataset of length {self.n}")
        image, mask = self.generate(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return self._to_tensors(image, mask)

    # ------------------------------------------------------------------ drawing

    def generate(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Draws item ``index`` without transform or normalisation.

        Returns:
            ``(image, mask)``: ``image`` HxWx3 ``uint8``, ``mask`` HxW ``int64``.
        """
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], int(index)])
        height, width = self.image_size
        bg_colour = self._random_colour(rng)
        image = self._textured_fill(rng, bg_colour)
        mask = np.zeros((height, width), dtype=np.int64)

        short = min(height, width)
        count = int(rng.integers(self.num_shapes[0], self.num_shapes[1] + 1))
        placed = []  # (cy, cx, r) of shapes already drawn, to keep shapes apart
        for _ in range(count):
            label = int(rng.integers(1, len(self.classes)))
            for _attempt in range(20):
                r = rng.uniform(*self.size_range) * short
                cy = rng.uniform(r, height - r)
                cx = rng.uniform(r, width - r)
                if all((cy - py) ** 2 + (cx - px) ** 2 > (r + pr + 1.0) ** 2 for py, px, pr in placed):
                    break
            placed.append((cy, cx, r))
            region = self._rasterise(label, cy, cx, r, rng.uniform(0.0, 2.0 * np.pi))
            if not region.any():
                continue
            # A colour that stands out from the background actually under the shape.
            under = image[region].mean(axis=0)
            colour = self._random_colour(rng)
            for _ in range(20):
                if np.linalg.norm(colour - under) >= _MIN_CONTRAST:
                    break
                colour = self._random_colour(rng)
            fill = self._textured_fill(rng, colour, amplitude=0.12)
            image[region] = fill[region]
            mask[region] = label

        if self.noise > 0:
            image = image + rng.normal(0.0, self.noise, size=image.shape).astype(np.float32)
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return image, mask

    @staticmethod
    def _random_colour(rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.05, 0.95, size=3).astype(np.float32)

    def _textured_fill(
        self, rng: np.random.Generator, colour: np.ndarray, amplitude: float = 0.2
    ) -> np.ndarray:
        """An HxWx3 float image around ``colour``: a linear gradient, stripes, or smooth blotches."""
        height, width = self.image_size
        yy, xx = self._yy / height, self._xx / width
        kind = int(rng.integers(3))
        if kind == 0:  # linear gradient in a random direction
            angle = rng.uniform(0, 2 * np.pi)
            pattern = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) * 2.0
        elif kind == 1:  # stripes of random period and direction
            angle = rng.uniform(0, np.pi)
            freq = rng.uniform(3.0, 8.0)
            phase = rng.uniform(0, 2 * np.pi)
            pattern = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        else:  # smooth blotches: sum of a few low-frequency waves
            pattern = np.zeros_like(xx)
            for _ in range(3):
                fy, fx = rng.uniform(0.5, 3.0, size=2)
                py, px = rng.uniform(0, 2 * np.pi, size=2)
                pattern += np.sin(2 * np.pi * fy * yy + py) * np.sin(2 * np.pi * fx * xx + px)
            pattern /= 3.0
        tint = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
        tint /= np.linalg.norm(tint) + 1e-6
        out = colour[None, None, :] + amplitude * pattern[..., None].astype(np.float32) * tint[None, None, :]
        return out.astype(np.float32)

    def _rasterise(self, label: int, cy: float, cx: float, r: float, theta: float) -> np.ndarray:
        """Boolean HxW mask of one shape with "radius" ``r`` centred at ``(cy, cx)``, rotated by ``theta``."""
        dy, dx = self._yy - cy, self._xx - cx
        name = self.classes[label]
        if name == "circle":
            return dy * dy + dx * dx <= r * r
        cos, sin = np.cos(theta), np.sin(theta)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # coordinates in the shape's own frame
        if name == "square":
            half = 0.85 * r  # area 2.9 r^2, close to the circle's 3.1 r^2
            return (np.abs(u) <= half) & (np.abs(v) <= half)
        if name == "triangle":
            # Equilateral triangle with circumradius R: inside iff on the inner side of all three edges, whose
            # outward normals point at angles 90°, 210°, 330° and lie R/2 from the centre.
            big_r = 1.3 * r
            inside = np.ones_like(u, dtype=bool)
            for k in range(3):
                phi = np.pi / 2 + k * 2 * np.pi / 3
                inside &= np.cos(phi) * u + np.sin(phi) * v <= big_r / 2
            return inside
        raise ValueError(f"unknown shape class {name!r}")  # pragma: no cover - classes are fixed

    # ------------------------------------------------------------------ conversion

    def _to_tensors(self, image: Any, mask: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        # The transform may have returned tensors already (ToTensorV2: image CxHxW).
        if isinstance(image, torch.Tensor):
            image_t = image
            if image_t.dtype == torch.uint8:
                image_t = self._normalise_chw(image_t.float() / 255.0)
            image_t = image_t.float()
        else:
            image = np.asarray(image)
            if image.ndim == 2:
                image = image[..., None]
            if image.dtype == np.uint8:
                chw = image.transpose(2, 0, 1).astype(np.float32) / 255.0
                image_t = self._normalise_chw(torch.from_numpy(chw))
            else:
                image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        mask_t = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(mask))
        return image_t.contiguous(), mask_t.long().contiguous()

    def _normalise_chw(self, image: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return image
        mean = torch.tensor(self.mean, dtype=image.dtype).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype).view(-1, 1, 1)
        return (image - mean) / std

    def denormalize(self, image: torch.Tensor) -> torch.Tensor:
        """Maps a normalised ``3xHxW`` (or ``Nx3xHxW``) image back to ``[0, 1]`` for display."""
        if not self.normalize:
            return image.clamp(0, 1)
        shape = (-1, 1, 1) if image.dim() == 3 else (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device).view(shape)
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device).view(shape)
        return (image * std + mean).clamp(0, 1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, image_size={self.image_size}, seed={self.seed}, "
            f"split={self.split!r}, classes={list(self.classes)})"
        )
