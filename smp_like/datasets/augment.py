"""Augmentation pipelines declared in a config: albumentations transforms by name, applied to image and mask together.

``build_pipeline([{"name": "HorizontalFlip", "p": 0.5}], crop_size=(256, 256))`` gives an ``A.Compose`` that first
takes a random crop (padding images smaller than the crop, with the mask padded with ``mask_pad``) and then applies
the declared transforms. Normalisation is not part of it: the dataset applies the model's ``Preprocessing`` after.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ["build_pipeline"]


def _albumentations():
    try:
        import albumentations as A
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("augmentation needs albumentations; install it with `pip install smp_like[train]`") from err
    return A


def build_pipeline(
    transforms: Sequence[Dict[str, Any]],
    crop_size: Optional[Tuple[int, int]] = None,
    mask_pad: int = 0,
    seed: int = 0,
    resize: Optional[Tuple[int, int]] = None,
) -> Optional[Any]:
    """Build an ``albumentations.Compose`` from ``{"name": ..., **arguments}`` items.

    Args:
        transforms: the declared transforms, in order.
        crop_size: ``(height, width)`` of a random crop taken first (training on images larger than the crop), or None.
        mask_pad: mask value for the padding of images smaller than the crop (the ``ignore_index``, or 0).
        seed: the Compose's seed (datasets re-seed it per item).
        resize: ``(height, width)`` every image is resized to first (linear; masks nearest), or None.

    Returns:
        The pipeline, or None when there is nothing to do.

    Raises:
        ValueError: for an unknown transform name or arguments it does not take (naming them).
    """
    A = _albumentations()
    steps = []
    if resize is not None:
        steps.append(A.Resize(height=int(resize[0]), width=int(resize[1]), interpolation=1))  # 1: cv2.INTER_LINEAR
    if crop_size is not None:
        h, w = int(crop_size[0]), int(crop_size[1])
        steps.append(A.PadIfNeeded(min_height=h, min_width=w, border_mode=0, fill=0, fill_mask=mask_pad))
        steps.append(A.RandomCrop(height=h, width=w))
    for i, spec in enumerate(transforms):
        spec = dict(spec)
        name = spec.pop("name", None)
        cls = getattr(A, str(name), None)
        if not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            raise ValueError(f"transform {i}: unknown albumentations transform {name!r}")
        try:
            steps.append(cls(**spec))
        except (TypeError, ValueError) as err:
            raise ValueError(f"transform {i} ({name}): {err}") from None
    if not steps:
        return None
    return A.Compose(steps, seed=seed)
