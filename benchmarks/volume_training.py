"""3D training through the pipeline vs a hand-written loop, and the data loader's share of the step time.

Data: ``--volumes`` synthetic NIfTI volumes of ``--size``^3 (a bright box and a dark ball in noise, 3 classes),
written to a temporary folder. Model: a 3D Unet (``--encoder``, depth 3, decoder 32/16/8), AdamW, cross-entropy +
Dice, batch ``--batch``, random ``--patch``^3 patches (foreground oversampling 0.33, flips), ``--steps`` optimizer
steps per epoch, ``--epochs`` epochs, no validation (only training is timed).

* pipeline: ``smp_like.training.run.train`` on a ``data.dim: 3`` config (Lightning, ``VolumeDataset`` with patch
  sampling and augmentation in the default ``num_workers`` loader, checkpoints, logs). A callback times each epoch
  and splits every step into *data* (from the end of the previous step to the start of this one: the loader
  producing the batch) and *model* (``on_train_batch_start`` -> ``on_train_batch_end``: forward, loss, backward,
  optimizer step).
* hand loop: the same model (same seed), optimizer and loss; the volumes preloaded and z-scored in memory; each batch
  is numpy random crops of the same size; ``loss.backward(); opt.step()``.

Epoch 1 of the pipeline also reads the volumes from disk (its cache fills); we report the median of the later
epochs. The ratio is pipeline epoch time / hand-loop epoch time.

    PYTHONPATH=$PWD python benchmarks/volume_training.py --write benchmarks/volume_training_results.md
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch


def make_data(root: Path, n: int, size: int) -> Dict[str, str]:
    from smp_like.io.volumes import write_volume

    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.normal(100, 10, size=(size,) * 3).astype(np.float32)
        mask = np.zeros((size,) * 3, np.uint8)
        a = rng.integers(0, size // 2, size=3)
        mask[a[0]:a[0] + size // 3, a[1]:a[1] + size // 3, a[2]:a[2] + size // 3] = 1
        c = rng.integers(size // 5, size - size // 5, size=3)
        g = np.ogrid[:size, :size, :size]
        mask[sum((x - y) ** 2 for x, y in zip(g, c)) <= (size // 6) ** 2] = 2
        image[mask == 1] += 60
        image[mask == 2] -= 50
        write_volume(root / "images" / f"v{i:02d}.nii.gz", image)
        write_volume(root / "labels" / f"v{i:02d}.nii.gz", mask)
    return {"images": str(root / "images"), "masks": str(root / "labels")}


def model_cfg(encoder: str) -> Dict[str, Any]:
    return {"arch": "Unet", "encoder_name": encoder, "encoder_weights": None, "encoder_depth": 3,
            "decoder_channels": [32, 16, 8]}


class StepTimer:
    """Lightning callback: epoch wall times and the data/model split of every step."""

    def __init__(self):
        import lightning.pytorch as pl

        timer = self

        class _CB(pl.Callback):
            def on_train_epoch_start(self, trainer, module):
                timer.epoch_start = timer.last_end = time.perf_counter()

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                now = time.perf_counter()
                timer.data.append(now - timer.last_end)
                timer.batch_start = now

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                now = time.perf_counter()
                timer.model.append(now - timer.batch_start)
                timer.last_end = now

            def on_train_epoch_end(self, trainer, module):
                timer.epochs.append(time.perf_counter() - timer.epoch_start)
                timer.per_epoch.append((sum(timer.data[timer.mark:]), sum(timer.model[timer.mark:])))
                timer.mark = len(timer.data)

        self.callback = _CB()
        self.epochs: List[float] = []
        self.data: List[float] = []
        self.model: List[float] = []
        self.per_epoch: List[tuple] = []
        self.mark = 0


def run_pipeline(tmp: Path, split: Dict[str, str], args: argparse.Namespace) -> Dict[str, Any]:
    from smp_like.training.config import parse_config
    from smp_like.training.run import train

    per_volume = max(1, args.steps * args.batch // args.volumes)
    cfg = parse_config({
        "seed": 0, "output_dir": str(tmp / "runs"), "run_name": f"p{time.time_ns()}", "model": model_cfg(args.encoder),
        "data": {"dim": 3, "classes": ["bg", "box", "ball"], "train": split, "val_fraction": 0.0,
                 "patch_size": [args.patch] * 3, "patches_per_volume": per_volume, "batch_size": args.batch,
                 "augment": {"train": [{"name": "RandomFlip3D"}]}},
        "loss": ["CrossEntropy", "Dice"], "optimizer": {"name": "AdamW", "lr": 1e-3},
        "trainer": {"max_epochs": args.epochs, "accelerator": args.accelerator, "devices": 1,
                    "enable_progress_bar": False, "log_every_n_steps": 1},
        "checkpoint": {"save_top_k": 0},
    })
    timer = StepTimer()
    t0 = time.perf_counter()
    train(cfg, progress=False, callbacks=[timer.callback])
    later = timer.epochs[1:] or timer.epochs
    data = sum(d for d, _ in timer.per_epoch[1:] or timer.per_epoch)
    model = sum(m for _, m in timer.per_epoch[1:] or timer.per_epoch)
    return {"epoch_s": statistics.median(later), "first_epoch_s": timer.epochs[0], "total_s": time.perf_counter() - t0,
            "steps_per_epoch": len(timer.data) // args.epochs, "model_share": model / (model + data),
            "data_ms_per_step": 1000 * data / max(1, len(timer.data) - len(timer.data) // args.epochs),
            "num_workers": cfg.data.num_workers}


def run_hand(split: Dict[str, str], args: argparse.Namespace) -> Dict[str, Any]:
    import smp_like
    from smp_like.datasets.patches import zscore
    from smp_like.io.volumes import read_volume
    from smp_like.training.builders import build_loss
    from smp_like.training.config import LossConfig

    device = torch.device("cuda" if args.accelerator != "cpu" and torch.cuda.is_available() else "cpu")
    images, masks = [], []
    for path in sorted(Path(split["images"]).iterdir()):
        images.append(zscore(read_volume(path).data.astype(np.float32)))
        masks.append(read_volume(Path(split["masks"]) / path.name).data[0].astype(np.int64))
    torch.manual_seed(0)
    cfg = model_cfg(args.encoder)
    model = smp_like.create_model(cfg.pop("arch"), in_channels=1, classes=3, spatial_dims=3, **cfg).to(device)
    loss_fn = build_loss(LossConfig.model_validate(["CrossEntropy", "Dice"]), "multiclass")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    p = args.patch
    epochs = []
    model.train()
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            xs, ys = [], []
            for _ in range(args.batch):
                i = int(rng.integers(len(images)))
                s = [int(rng.integers(0, d - p + 1)) for d in masks[i].shape]
                region = tuple(slice(a, a + p) for a in s)
                xs.append(images[i][(slice(None),) + region])
                ys.append(masks[i][region])
            x = torch.from_numpy(np.stack(xs)).to(device)
            y = torch.from_numpy(np.stack(ys)).to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        epochs.append(time.perf_counter() - t0)
    return {"epoch_s": statistics.median(epochs[1:] or epochs), "first_epoch_s": epochs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--write", default=None, help="append a result row to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        split = make_data(tmp / "data", args.volumes, args.size)
        hand = run_hand(split, args)
        pipe = run_pipeline(tmp, split, args)
    result = {"args": vars(args), "pipeline": pipe, "hand": hand, "ratio": pipe["epoch_s"] / hand["epoch_s"],
              "torch_threads": torch.get_num_threads()}
    print(json.dumps(result, indent=2))
    if args.write:
        row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {args.accelerator} ({torch.get_num_threads()} threads) | "
               f"{args.encoder} | {args.patch}^3 x {args.batch} | {pipe['steps_per_epoch']} | "
               f"{pipe['epoch_s']:.2f} | {hand['epoch_s']:.2f} | {result['ratio']:.2f} | "
               f"{pipe['data_ms_per_step']:.0f} | {100 * pipe['model_share']:.1f}% | {pipe['num_workers']} |\n")
        with open(args.write, "a", encoding="utf-8") as f:
            f.write(row)


if __name__ == "__main__":
    main()
