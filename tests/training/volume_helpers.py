"""Small synthetic NIfTI volume datasets for the 3D pipeline tests (written into tmp_path by each test)."""

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from smp_like.io.volumes import write_volume

AFFINE = np.array([[1.5, 0, 0, -20.0], [0, 1.0, 0, 10.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
TINY_3D_MODEL = {"arch": "Unet", "encoder_name": "cnn", "encoder_weights": None, "encoder_depth": 2,
                 "decoder_channels": [16, 8]}


def blob_volume(rng: np.random.Generator, shape: Sequence[int] = (20, 20, 20), channels: int = 1
                ) -> Tuple[np.ndarray, np.ndarray]:
    """``(C, *shape)`` float32 noise with a bright box (class 1) and a dark ball (class 2); returns image, labels."""
    shape = tuple(shape)
    image = rng.normal(100.0, 10.0, size=(channels,) + shape).astype(np.float32)
    mask = np.zeros(shape, dtype=np.uint8)
    size = [int(rng.integers(s // 4, s // 2)) for s in shape]
    start = [int(rng.integers(0, s - z)) for s, z in zip(shape, size)]
    box = tuple(slice(a, a + z) for a, z in zip(start, size))
    mask[box] = 1
    r = max(2, min(shape) // 6)
    centre = [int(rng.integers(r, s - r)) for s in shape]
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
    mask[ball] = 2
    for c in range(channels):
        image[c][mask == 1] += 60.0 * (c + 1)
        image[c][mask == 2] -= 50.0
    return image, mask


def write_volume_split(root: Path, n: int, seed: int, shape: Sequence[int] = (20, 20, 20),
                       suffixes: Sequence[str] = ("_img.nii.gz",), mask_suffix: str = "_seg.nii.gz",
                       labels: bool = True) -> Dict[str, Any]:
    """``root/images/case{i}<suffix>`` (one file per modality) + ``root/labels/case{i}<mask_suffix>``; returns
    the split's config entry (stem pairing)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = blob_volume(rng, shape, len(suffixes))
        for c, suffix in enumerate(suffixes):
            write_volume(root / "images" / f"case{i:02d}{suffix}", image[c], AFFINE)
        if labels:
            write_volume(root / "labels" / f"case{i:02d}{mask_suffix}", mask, AFFINE)
    split: Dict[str, Any] = {"images": str(root / "images"), "masks": str(root / "labels") if labels else None,
                             "image_suffix": list(suffixes) if len(suffixes) > 1 else suffixes[0],
                             "mask_suffix": mask_suffix}
    return split


def volume_config(tmp: Path, n_train: int = 4, n_val: int = 2, n_test: int = 0, shape=(20, 20, 20),
                  patch_size=(16, 16, 16), max_epochs: int = 1, model: Optional[Dict[str, Any]] = None,
                  **data: Any) -> Dict[str, Any]:
    """A 3D config over blob volumes (3 classes), tiny 3D model, CPU, no progress bar."""
    d: Dict[str, Any] = {"dim": 3, "task": "multiclass", "classes": ["background", "box", "ball"],
                         "train": write_volume_split(tmp / "data" / "train", n_train, 1, shape),
                         "val": write_volume_split(tmp / "data" / "val", n_val, 2, shape),
                         "patch_size": list(patch_size), "batch_size": 2}
    if n_test:
        d["test"] = write_volume_split(tmp / "data" / "test", n_test, 3, shape)
    d.update(data)
    return {"seed": 0, "output_dir": str(tmp / "runs"), "run_name": "r", "model": dict(model or TINY_3D_MODEL),
            "data": d, "optimizer": {"name": "AdamW", "lr": 3e-3},
            "loss": ["CrossEntropy", "Dice"],
            "trainer": {"max_epochs": max_epochs, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                        "log_every_n_steps": 1},
            "plots": {"every_n_epochs": 1, "num_samples": 1}}
