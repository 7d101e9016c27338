"""What the training pipeline costs over a hand-written loop: one epoch of the same model, data and optimizer.

Both sides read the same PNG folder through the same ``FolderDataset`` (same augmentation, normalisation, batch size),
train a Unet (resnet18, depth 3, decoder 64/32/16, channels-last) with AdamW on cross-entropy + Dice for one epoch,
then validate on the same 64 images. The pipeline side is ``smp_like.training.run.train`` (what ``smp-like train`` runs: config checks,
data scan, Lightning Trainer, checkpoints, CSV/TensorBoard logs, plots, best/ export); the bare side is a plain
``for batch in loader: loss.backward(); opt.step()``. Both are warmed up, then run alternately ``--rounds`` times in
one process; we report the median wall time of each and the ratio, the steady-state time per optimizer step (from the
10th step on), and the peak RSS above the pre-run RSS (sampled every 2 ms).

    PYTHONPATH=$PWD OMP_NUM_THREADS=2 python benchmarks/trainer_overhead.py --images 1024 --rounds 3
"""

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the RSS at entry, sampled by a thread."""

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.delta = self.peak - self.base


def make_config(root: Path, epochs: int = 1, batch_size: int = 8):
    from smp_like.training.config import parse_config
    from smp_like.training.demo import demo_config

    values = demo_config(epochs, batch_size, 3e-3, "resnet18", 3, (64, 32, 16), 0)
    values["data"]["train"] = {"images": str(root / "data/train/images"), "masks": str(root / "data/train/masks")}
    values["data"]["val"] = {"images": str(root / "data/val/images"), "masks": str(root / "data/val/masks")}
    values["data"].pop("test")
    values["scheduler"] = {"name": None}
    values["output_dir"] = str(root / "runs")
    values["trainer"]["enable_progress_bar"] = False
    return parse_config(values)


def bare_epoch(cfg, step_times):
    """The hand-written loop over the same dataset objects."""
    from torch.utils.data import DataLoader

    from smp_like.metrics import get_stats
    from smp_like.training.builders import build_loss, build_model
    from smp_like.training.data import EpochShuffle, SegmentationDataModule, collate

    torch.manual_seed(0)
    dm = SegmentationDataModule(cfg).prepare()
    model = build_model(cfg.model, len(cfg.data.classes))
    loss_fn = build_loss(cfg.loss, cfg.data.task)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr, **cfg.optimizer.kwargs)
    train = DataLoader(dm.datasets["train"], batch_size=cfg.data.batch_size, collate_fn=collate,
                       sampler=EpochShuffle(len(dm.datasets["train"]), 0))
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format  # as the pipeline does
    model = model.to(memory_format=fmt)
    model.train()
    t = time.perf_counter()
    for i, batch in enumerate(train):
        loss = loss_fn(model(batch["image"].contiguous(memory_format=fmt)), batch["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        now = time.perf_counter()
        if i >= 10:
            step_times.append(now - t)
        t = now
    model.eval()
    tp = 0
    with torch.no_grad():
        for batch in DataLoader(dm.datasets["val"], batch_size=64, collate_fn=collate):
            logits = model(batch["image"].contiguous(memory_format=fmt))
            stats = get_stats(logits.argmax(1), batch["mask"], "multiclass", num_classes=4)
            tp = tp + stats[0].sum(0)
    return tp


def pipeline_epoch(cfg, step_times):
    import lightning.pytorch as pl

    from smp_like.training.run import train

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx >= 10:
                step_times.append(time.perf_counter() - self.t)

    return train(cfg, callbacks=[StepTimer()], progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024, help="training images (64x64 shapes)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from smp_like.training.demo import write_shapes_dataset

    root = Path(tempfile.mkdtemp(prefix="trainer_overhead_"))
    try:
        write_shapes_dataset(root / "data", {"train": args.images, "val": 64}, 64, 0)
        cfg = make_config(root)
        warm = make_config(root).model_copy()
        # Warm-up: imports, allocator, oneDNN kernels, page cache of the PNG files.
        bare_epoch(warm, [])
        pipeline_epoch(warm, [])
        shutil.rmtree(warm.run_dir, ignore_errors=True)
        times = {"bare": [], "pipeline": []}
        steps = {"bare": [], "pipeline": []}
        memory = {"bare": [], "pipeline": []}
        for _ in range(args.rounds):
            for name, fn in (("bare", bare_epoch), ("pipeline", pipeline_epoch)):
                step_times = []
                shutil.rmtree(cfg.run_dir, ignore_errors=True)  # a fresh run folder, outside the timing
                with PeakRSS() as peak:
                    t0 = time.perf_counter()
                    fn(cfg, step_times)
                    times[name].append(time.perf_counter() - t0)
                memory[name].append(peak.delta)
                steps[name].append(statistics.median(step_times))
        med = {k: statistics.median(v) for k, v in times.items()}
        step = {k: statistics.median(v) for k, v in steps.items()}
        mem = {k: statistics.median(v) for k, v in memory.items()}
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.images} images 64x64, batch 8, "
              f"{args.images // 8} steps/epoch, load average {os.getloadavg()[0]:.2f}")
        print(f"epoch wall time   bare {med['bare']:.2f} s   pipeline {med['pipeline']:.2f} s   "
              f"ratio {med['pipeline'] / med['bare']:.3f}   (all: bare {[round(t, 2) for t in times['bare']]}, "
              f"pipeline {[round(t, 2) for t in times['pipeline']]})")
        print(f"time per step     bare {step['bare'] * 1e3:.1f} ms  pipeline {step['pipeline'] * 1e3:.1f} ms  "
              f"ratio {step['pipeline'] / step['bare']:.3f}")
        print(f"peak RSS increase bare {mem['bare'] / 2**20:.0f} MiB  pipeline {mem['pipeline'] / 2**20:.0f} MiB  "
              f"ratio {mem['pipeline'] / max(mem['bare'], 1):.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
