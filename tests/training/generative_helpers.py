"""Tiny on-disk image folders and native configs for the generative / classification training tests."""

from pathlib import Path
from typing import Any, Dict

import numpy as np

from smp_like.io.images import write_index_png, write_rgb_png

#: A tiny Flemme-CNN encoder (two stride-2 levels, 8 channels): a few thousand weights.
TINY_ENCODER = {"encoder_name": "cnn", "encoder_weights": None, "encoder_depth": 2}
TINY_EPS = {"arch": "Unet", "decoder_channels": [8, 4], "down_channels": [8, 8], "middle_channels": [],
            "patch_channel": 4}
TRAINER = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
           "num_sanity_val_steps": 0, "log_every_n_steps": 1}


def _write_grey(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "L").save(path)


def square_image(rng: np.random.Generator, size: int = 16, channels: int = 1):
    """A dark image with one bright square; returns (image (H, W, C) uint8, mask (H, W) 0/1)."""
    image = np.full((size, size, channels), 20, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    s = int(rng.integers(size // 4, size // 2))
    y, x = (int(v) for v in rng.integers(0, size - s, 2))
    image[y:y + s, x:x + s] = 220
    mask[y:y + s, x:x + s] = 1
    return image, mask


def write_squares(root: Path, n: int, seed: int, size: int = 16, channels: int = 1, masks: bool = False,
                  prefix: str = "s") -> Dict[str, str]:
    """``root/images/<prefix>NN.png`` (grey, or RGB with 3 channels) and, with ``masks``, ``root/masks/...``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = square_image(rng, size, channels)
        if channels == 3:
            write_rgb_png(root / "images" / f"{prefix}{i:02d}.png", image)
        else:
            _write_grey(root / "images" / f"{prefix}{i:02d}.png", image[..., 0])
        if masks:
            write_index_png(root / "masks" / f"{prefix}{i:02d}.png", mask)
    out = {"images": str(root / "images")}
    if masks:
        out["masks"] = str(root / "masks")
    return out


def model_for(arch: str, channels: int = 1) -> Dict[str, Any]:
    """The native ``model`` section of a tiny ``arch``."""
    ae = dict(TINY_ENCODER, in_channels=channels, decoder_channels=[8, 4], latent_channels=2)
    diffusion = dict(TINY_ENCODER, in_channels=channels, num_train_timesteps=10, time_embedding_dim=16,
                     eps_model=dict(TINY_EPS))
    if arch in ("AE", "VAE", "HAE"):
        return {"arch": arch, **ae}
    if arch in ("DDPM", "DDIM"):
        return {"arch": arch, **diffusion}
    if arch in ("SDPM", "SDIM"):
        return {"arch": arch, **diffusion, "num_ensemble": 2}
    if arch in ("LDPM", "LDIM"):
        d = {k: v for k, v in diffusion.items() if k not in ("in_channels", "encoder_depth")}
        d["eps_model"] = {"arch": "Unet", "encoder_depth": 1, "decoder_channels": [4], "down_channels": [8],
                          "middle_channels": [], "patch_channel": 4}
        return {"arch": arch, **d, "autoencoder": {"arch": "AE", "encoder_name": "cnn", "in_channels": channels,
                                                   "encoder_depth": 2, "decoder_channels": [8, 4],
                                                   "latent_channels": 2}}
    if arch == "ClM":
        return {"arch": "ClM", **TINY_ENCODER, "in_channels": channels, "hidden_channels": [8]}
    raise ValueError(arch)


def generative_config(tmp: Path, arch: str, n_train: int = 6, n_val: int = 2, n_test: int = 2,
                      **sections: Any) -> Dict[str, Any]:
    """A native config over square images under ``tmp/data`` for ``arch`` (SDPM: with masks; ClM: with a labels
    CSV where the class is whether the square is large)."""
    masks = arch in ("SDPM", "SDIM")
    data: Dict[str, Any] = {"train": write_squares(tmp / "data" / "train", n_train, 1, masks=masks, prefix="tr"),
                            "val": write_squares(tmp / "data" / "val", n_val, 2, masks=masks, prefix="va"),
                            "batch_size": 3}
    if n_test:
        data["test"] = write_squares(tmp / "data" / "test", n_test, 3, masks=masks)
    if masks:
        data.update(task="binary", classes=["square"], normalization={"mean": [0.0], "std": [1.0]})
    if arch == "ClM":
        rows = ["stem,label"]
        for split in ("train", "val", "test"):
            folder = tmp / "data" / split / "images"
            for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
                from smp_like.io.images import read_image

                big = int((read_image(path) > 100).sum() > 36)
                rows.append(f"{path.stem},{['small', 'big'][big]}")
        (tmp / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        data.update(classes=["small", "big"], labels_csv=str(tmp / "labels.csv"),
                    normalization={"mean": [0.0], "std": [1.0]})
    cfg: Dict[str, Any] = {"seed": 0, "output_dir": str(tmp / "runs"), "run_name": arch.lower(),
                           "model": model_for(arch), "data": data, "optimizer": {"name": "AdamW", "lr": 3e-3},
                           "generation": {"num_samples": 3}, "trainer": dict(TRAINER)}
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg
