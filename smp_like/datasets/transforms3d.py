"""3D augmentation for ``(C, D, H, W)`` volumes and ``(D, H, W)`` masks, declared by name in ``data.augment``.

smp_like's own transforms (numpy, seeded by the dataset per item):

* ``RandomFlip3D(axes=(0, 1, 2), p=0.5)``: flip each listed spatial axis with probability ``p`` (Flemme's
  ``RandomFlip``).
* ``RandomRotate90_3D(axes=(1, 2), p=0.5)``: rotate by ``k * 90`` degrees, ``k`` uniform in 1..3, in the plane of the
  two axes (in-plane: H, W; Flemme's ``RandomRotate90``).
* ``RandomIntensity(scale=0.1, shift=0.1, p=0.5)``: ``x * (1 + a) + b`` with ``a ~ U(-scale, scale)``,
  ``b ~ U(-shift, shift)`` per channel (Flemme's ``RandomContrast``-style intensity jitter).

Any other name is an albumentations transform, applied through albumentations' volume interface
(``Compose(...)(volume=(D, H, W, C), mask3d=(D, H, W))``): its 3D transforms (``CubicSymmetry``, ``CoarseDropout3D``,
``RandomCrop3D``, ...) and every 2D transform, which it applies to all slices alike.
"""

import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["RandomFlip3D", "RandomRotate90_3D", "RandomIntensity", "VolumePipeline", "build_volume_pipeline",
           "TRANSFORMS_3D"]


class RandomFlip3D:
    """Flip each of ``axes`` (spatial, 0-based) with probability ``p``."""

    def __init__(self, axes: Sequence[int] = (0, 1, 2), p: float = 0.5):
        self.axes, self.p = tuple(int(a) for a in axes), float(p)
        if any(a not in (0, 1, 2) for a in self.axes):
            raise ValueError(f"RandomFlip3D: axes must be spatial axes 0, 1, 2, got {axes}")

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray], rng: np.random.Generator):
        for axis in self.axes:
            if rng.random() < self.p:
                image = np.flip(image, axis + 1)
                mask = np.flip(mask, axis) if mask is not None else None
        return image, mask


class RandomRotate90_3D:  # noqa: N801 - the name says 3D like albumentations' *3D transforms
    """With probability ``p``, rotate by ``k * 90`` degrees (``k`` in 1..3) in the plane of ``axes``."""

    def __init__(self, axes: Sequence[int] = (1, 2), p: float = 0.5):
        self.axes, self.p = tuple(int(a) for a in axes), float(p)
        if len(self.axes) != 2 or any(a not in (0, 1, 2) for a in self.axes) or self.axes[0] == self.axes[1]:
            raise ValueError(f"RandomRotate90_3D: axes must be two different spatial axes of 0, 1, 2, got {axes}")

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray], rng: np.random.Generator):
        if rng.random() >= self.p:
            return image, mask
        k = int(rng.integers(1, 4))
        if image.shape[1 + self.axes[0]] != image.shape[1 + self.axes[1]] and k % 2:
            k = 2  # a quarter turn would change a non-square patch's shape (and the batch's)
        image = np.rot90(image, k, axes=(self.axes[0] + 1, self.axes[1] + 1))
        mask = np.rot90(mask, k, axes=self.axes) if mask is not None else None
        return image, mask


class RandomIntensity:
    """With probability ``p``, ``x * (1 + a) + b`` per channel, ``a ~ U(-scale, scale)``, ``b ~ U(-shift, shift)``."""

    def __init__(self, scale: float = 0.1, shift: float = 0.1, p: float = 0.5):
        self.scale, self.shift, self.p = float(scale), float(shift), float(p)

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray], rng: np.random.Generator):
        if rng.random() >= self.p:
            return image, mask
        c = image.shape[0]
        a = rng.uniform(-self.scale, self.scale, size=c).astype(np.float32).reshape((c, 1, 1, 1))
        b = rng.uniform(-self.shift, self.shift, size=c).astype(np.float32).reshape((c, 1, 1, 1))
        return (image * (1 + a) + b).astype(np.float32), mask


TRANSFORMS_3D: Dict[str, type] = {
    "RandomFlip3D": RandomFlip3D,
    "RandomRotate90_3D": RandomRotate90_3D,
    "RandomIntensity": RandomIntensity,
}


class _Albumentations:
    """An albumentations transform applied to a volume through ``volume=``/``mask3d=``."""

    def __init__(self, transform: Any):
        import albumentations as A

        self.compose = A.Compose([transform], seed=0)

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray], rng: np.random.Generator):
        self.compose.set_random_seed(int(rng.integers(2**31 - 1)))
        volume = np.ascontiguousarray(np.moveaxis(image, 0, -1), dtype=np.float32)
        args = {"volume": volume}
        if mask is not None:
            args["mask3d"] = np.ascontiguousarray(mask)
        out = self.compose(**args)
        return np.moveaxis(out["volume"], -1, 0), (out["mask3d"] if mask is not None else None)


class VolumePipeline:
    """Transforms applied in order to ``(image (C, D, H, W), mask (D, H, W) or None)`` with one generator."""

    def __init__(self, steps: Sequence[Any]):
        self.steps = list(steps)

    def __call__(self, image: np.ndarray, mask: Optional[np.ndarray],
                 rng: np.random.Generator) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        for step in self.steps:
            image, mask = step(image, mask, rng)
        return (np.ascontiguousarray(image, dtype=np.float32),
                np.ascontiguousarray(mask) if mask is not None else None)


def build_volume_pipeline(transforms: Sequence[Dict[str, Any]]) -> Optional[VolumePipeline]:
    """A :class:`VolumePipeline` from ``{"name": ..., **arguments}`` items (smp_like 3D names or albumentations).

    Raises:
        ValueError: for an unknown name or arguments the transform does not take (naming them).
    """
    steps: List[Any] = []
    for i, spec in enumerate(transforms):
        spec = dict(spec)
        name = str(spec.pop("name", None))
        cls = TRANSFORMS_3D.get(name)
        try:
            if cls is not None:
                steps.append(cls(**spec))
                continue
            try:
                import albumentations as A
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise ImportError("albumentations transforms need `pip install smp_like[train]`") from err
            acls = getattr(A, name, None)
            if not (inspect.isclass(acls) and issubclass(acls, A.BasicTransform)):
                raise ValueError(f"unknown transform {name!r} (smp_like 3D: {', '.join(TRANSFORMS_3D)}; or an "
                                 "albumentations transform)")
            steps.append(_Albumentations(acls(**spec)))
        except TypeError as err:
            raise ValueError(f"transform {i} ({name}): {err}") from None
        except ValueError as err:
            raise ValueError(f"transform {i} ({name}): {err}") from None
    return VolumePipeline(steps) if steps else None
