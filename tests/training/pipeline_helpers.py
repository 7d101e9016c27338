"""Small on-disk datasets and configs for the training-pipeline tests (written into tmp_path by each test)."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import yaml

from smp_like.io.images import write_index_png, write_rgb_png

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = {"arch": "Unet", "encoder_name": "resnet18", "encoder_weights": None, "encoder_depth": 3,
              "decoder_channels": [16, 8, 4]}


def blob_pair(rng: np.random.Generator, size: int = 32):
    """A grey-noise image with one bright square (class 1) and maybe one dark disc (class 2); returns image, mask."""
    image = rng.normal(110, 12, size=(size, size, 3))
    mask = np.zeros((size, size), dtype=np.uint8)
    s = int(rng.integers(size // 4, size // 2))
    y, x = (int(v) for v in rng.integers(0, size - s, size=2))
    mask[y:y + s, x:x + s] = 1
    image[y:y + s, x:x + s] += 90
    if rng.random() < 0.7:
        r = int(rng.integers(size // 8, size // 5))
        cy, cx = (int(v) for v in rng.integers(r, size - r, size=2))
        yy, xx = np.mgrid[:size, :size]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        mask[disc] = 2
        image[disc] -= 80
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_blobs(root: Path, n: int, seed: int, size: int = 32, binary: bool = False) -> Dict[str, str]:
    """``root/images/iNN.png`` + ``root/masks/iNN.png`` (palette index PNG, or 0/255 PNG when ``binary``)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = blob_pair(rng, size)
        write_rgb_png(root / "images" / f"i{i:02d}.png", image)
        if binary:
            write_rgb_png(root / "masks" / f"i{i:02d}.png", np.repeat(((mask == 1) * 255).astype(np.uint8)[..., None], 3, 2))
        else:
            write_index_png(root / "masks" / f"i{i:02d}.png", mask)
    return {"images": str(root / "images"), "masks": str(root / "masks")}


def tiny_config(tmp: Path, n_train: int = 12, n_val: int = 4, n_test: int = 0, **sections: Any) -> Dict[str, Any]:
    """A config dict over blob data written under ``tmp/data`` (3 classes), tiny model, CPU, no progress bar."""
    data = {"task": "multiclass", "classes": ["background", "square", "disc"],
            "train": write_blobs(tmp / "data" / "train", n_train, 1),
            "val": write_blobs(tmp / "data" / "val", n_val, 2),
            "batch_size": 4, "normalization": {"mean": [0.45] * 3, "std": [0.2] * 3}}
    if n_test:
        data["test"] = write_blobs(tmp / "data" / "test", n_test, 3)
    cfg = {"seed": 0, "output_dir": str(tmp / "runs"), "run_name": "r", "model": dict(TINY_MODEL), "data": data,
           "optimizer": {"name": "AdamW", "lr": 3e-3},
           "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                       "num_sanity_val_steps": 0, "log_every_n_steps": 1}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: Dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_cli(args, cwd: Path, timeout: int = 240, extra_env: Optional[Dict[str, str]] = None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "smp_like", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
