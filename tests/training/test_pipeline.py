"""The training pipeline end to end: CLI run folder, learning, SIGKILL resume, NaN guard, DDP, the task in a user's
Trainer. Tiny models (Unet resnet18, depth 3, decoder 16/8/4) on 32x32 blob images written into tmp_path."""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import smp_like
from smp_like.training.config import parse_config

from pipeline_helpers import REPO_ROOT, TINY_MODEL, run_cli, tiny_config, write_config

PNG = b"\x89PNG\r\n\x1a\n"


def _ckpt_weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}


def test_cli_run_writes_every_file_and_best_equals_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, n_test=3, checkpoint={"every_n_train_steps": 2, "save_top_k": 1},
                      scheduler={"name": "CosineAnnealingLR", "interval": "step", "warmup": 1})
    path = write_config(tmp_path / "cfg.yaml", cfg)
    proc = run_cli(["train", "--config", str(path), "--set", "trainer.max_epochs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    for name in ("config.yaml", "metrics.csv", "curves.png", "predictions.png", "summary.json",
                 "best/config.json", "best/model.safetensors", "best/preprocessing.json", "checkpoints/last.ckpt",
                 "test/per_image.csv", "test/per_class.csv", "test/metrics.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    for png in ("curves.png", "predictions.png"):
        assert (run / png).read_bytes()[:8] == PNG and Image.open(run / png).size[0] > 200
    assert len(list((run / "checkpoints").glob("best-epoch*.ckpt"))) == 1

    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val/iou" and summary["best_epoch"] in (1, 2) and summary["global_step"] == 6
    assert set(summary["per_class"]["iou"]) == {"background", "square", "disc"}
    assert 0 <= summary["best_value"] <= 1 and summary["wall_time_seconds"] > 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"train/loss_step", "val/iou", "val/iou/square", "train/iou", "lr-AdamW"} <= set(rows[0])
    assert sorted({r["epoch"] for r in rows if r.get("val/iou")}) == ["0", "1"]

    # The resolved config reruns as it is.
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["trainer"]["max_epochs"] == 2 and resolved["data"]["batch_size"] == 4
    assert parse_config(resolved).to_dict() == resolved

    # best/ loads with smp_like.from_pretrained and computes what the best checkpoint computes.
    best = smp_like.from_pretrained(run / "best").eval()
    reference = smp_like.create_model(**{k: v for k, v in TINY_MODEL.items()}, classes=3).eval()
    reference.load_state_dict(_ckpt_weights(summary["best_checkpoint"]))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(best(x), reference(x), atol=1e-6)
    prep = json.loads((run / "best" / "preprocessing.json").read_text())
    assert prep["class_names"] == ["background", "square", "disc"] and prep["task"] == "multiclass"
    assert prep["mean"] == [0.45] * 3 and "class_names" not in json.loads((run / "best" / "config.json").read_text())

    # The test split: per-image x per-class rows, per-class summary, class-index palette PNGs.
    per_image = list(csv.DictReader((run / "test" / "per_image.csv").open()))
    assert len(per_image) == 3 * 3 and {"iou", "dice", "precision", "recall", "hd95"} <= set(per_image[0])
    masks = sorted((run / "test" / "masks").glob("*.png"))
    assert [m.stem for m in masks] == ["i00", "i01", "i02"]
    assert Image.open(masks[0]).mode == "P" and np.asarray(Image.open(masks[0])).max() <= 2

    # `smp-like test` on the last checkpoint agrees with scoring it here.
    proc = run_cli(["test", "--config", str(path), "--checkpoint", "last", "--split", "val"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run / "val" / "metrics.json").read_text())
    last_val_iou = float([r for r in rows if r.get("val/iou")][-1]["val/iou"])
    assert result["mean"]["iou"] == pytest.approx(last_val_iou, abs=1e-6)


def test_learning_beats_the_untrained_model(tmp_path):
    from smp_like.training.evaluate import evaluate
    from smp_like.training.run import train

    cfg = parse_config(tiny_config(tmp_path, n_train=24, n_val=6, trainer={"max_epochs": 8},
                                   optimizer={"name": "AdamW", "lr": 1e-2},
                                   metrics={"names": ["iou"]}))
    untrained = smp_like.create_model(**TINY_MODEL, classes=3)
    untrained.save_pretrained(tmp_path / "untrained")
    before = evaluate(cfg, checkpoint=str(tmp_path / "untrained"), split="val", out_dir=tmp_path / "before")
    summary = train(cfg)
    after = evaluate(cfg, split="val", out_dir=tmp_path / "after")
    assert after["mean"]["iou"] == pytest.approx(summary["best_value"], abs=1e-6)
    assert after["mean"]["iou"] > before["mean"]["iou"] + 0.3, (before["mean"], after["mean"])
    assert after["per_class"]["square"]["iou"] > 0.6


KILL_SCRIPT = """
import os, signal, sys
import lightning.pytorch as pl
from smp_like.training.config import load_config
from smp_like.training.run import train

class KillAt(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == int(sys.argv[2]):  # the checkpoint of this step is on disk by now
            os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1]), callbacks=[KillAt()])
"""


def test_sigkill_mid_epoch_then_resume_equals_an_unbroken_run(tmp_path):
    cfg = tiny_config(tmp_path, n_train=12, n_val=4, checkpoint={"every_n_train_steps": 2},
                      trainer={"max_epochs": 2, "deterministic": True},
                      data={"augment": {"train": [{"name": "HorizontalFlip", "p": 0.5}]}},
                      scheduler={"name": "StepLR", "step_size": 1, "gamma": 0.5})
    path = write_config(tmp_path / "cfg.yaml", cfg)
    unbroken = run_cli(["train", "--config", str(path), "--set", "run_name=unbroken"], tmp_path)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]

    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    path_k = write_config(tmp_path / "cfg_k.yaml", dict(cfg, run_name="killed"))
    # 3 steps per epoch: step 4 is the first of epoch 2; the run dies as batch 2 of epoch 2 starts.
    killed = subprocess.run([sys.executable, str(script), str(path_k), "4"], env=env, capture_output=True,
                            text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = tmp_path / "runs" / "killed" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4 and state["epoch"] == 1  # mid-epoch checkpoint

    resumed = run_cli(["train", "--config", str(path_k), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = _ckpt_weights(tmp_path / "runs" / "unbroken" / "checkpoints" / "last.ckpt")
    b = _ckpt_weights(last)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), atol=1e-6, rtol=0), key
    rows = list(csv.DictReader((tmp_path / "runs" / "killed" / "metrics.csv").open()))
    assert sorted({r["epoch"] for r in rows if r.get("val/iou")}) == ["0", "1"]  # history kept across the kill
    # Without --resume, a run folder with checkpoints is not overwritten.
    again = run_cli(["train", "--config", str(path_k)], tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    import lightning.pytorch as pl

    from smp_like.training.run import train
    from smp_like.training.task import NonFiniteLossError

    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 4:
                batch["image"][:] = float("nan")

    cfg = parse_config(tiny_config(tmp_path, checkpoint={"every_n_train_steps": 1}))
    with pytest.raises(NonFiniteLossError, match="at step 4") as info:
        train(cfg, callbacks=[Poison()])
    assert info.value.step == 4 and "last.ckpt" in str(info.value)
    state = torch.load(tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())

    skipping = parse_config(tiny_config(tmp_path, run_name="skip", skip_nonfinite=True))
    summary = train(skipping, callbacks=[Poison()])
    assert summary["global_step"] == 6  # Lightning counts the skipped batch's (empty) optimizer step
    rows = list(csv.DictReader((tmp_path / "runs" / "skip" / "metrics.csv").open()))
    assert {float(r["train/skipped_batches"]) for r in rows if r.get("train/skipped_batches")} == {1.0}
    weights = _ckpt_weights(tmp_path / "runs" / "skip" / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_ddp_two_processes_give_single_process_metrics(tmp_path):
    from smp_like.training.data import SegmentationDataModule
    from smp_like.training.run import build_task

    cfg = tiny_config(tmp_path, n_train=8, n_val=5, metrics={"names": ["iou", "dice", "precision"]},
                      trainer={"max_epochs": 1})
    path = write_config(tmp_path / "cfg.yaml", cfg)
    proc = run_cli(["train", "--config", str(path), "--set", "trainer.devices=2", "trainer.strategy=ddp",
                    "trainer.accelerator=cpu"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = next(r for r in rows if r.get("val/iou"))
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 1  # 8 images, batch 4 per process: one step each

    # One process, the same weights, the whole validation set (5 images: uneven across 2 processes).
    import lightning.pytorch as pl

    config = parse_config(cfg)
    task = build_task(config)
    task.load_state_dict(state["state_dict"])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, use_distributed_sampler=False)
    (single,) = trainer.validate(task, datamodule=SegmentationDataModule(config), verbose=False)
    for key in ("val/iou", "val/dice", "val/precision", "val/iou/square", "val/iou/disc", "val/dice/background"):
        assert float(logged[key]) == pytest.approx(single[key], abs=1e-6), key


def test_segmentation_task_in_a_users_own_trainer():
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from smp_like.training import SegmentationTask
    from smp_like.training.evaluation import confusion_matrix, per_class_iou

    rng = np.random.default_rng(0)
    from pipeline_helpers import blob_pair

    pairs = [blob_pair(rng) for _ in range(12)]
    x = torch.tensor(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2), dtype=torch.float32) / 255.0
    y = torch.tensor(np.stack([(p[1] == 1) for p in pairs]), dtype=torch.float32).unsqueeze(1)
    torch.manual_seed(0)
    model = smp_like.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=1)
    task = SegmentationTask(model, task="binary", optimizer={"name": "Adam", "lr": 3e-3})
    train_loader = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=4)
    val_loader = DataLoader(TensorDataset(x[8:], y[8:]), batch_size=2)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, train_loader, val_loader)
    assert trainer.global_step == 4
    (metrics,) = trainer.validate(task, val_loader, verbose=False)
    with torch.no_grad():
        pred = (task.model.eval()(x[8:]).sigmoid() >= 0.5).long()
    cm = confusion_matrix(pred, y[8:].long(), 2)  # independent reference: a plain confusion matrix
    assert metrics["val/iou"] == pytest.approx(per_class_iou(cm)[1].item(), abs=1e-6)


def test_unwritable_output_and_missing_checkpoint_fail_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    cfg = tiny_config(tmp_path, output_dir=str(tmp_path / "file" / "runs"))
    proc = run_cli(["train", "--config", str(write_config(tmp_path / "c.yaml", cfg))], tmp_path)
    assert proc.returncode == 2 and "cannot be written" in proc.stderr and "Epoch" not in proc.stderr
    cfg = tiny_config(tmp_path)
    proc = run_cli(["train", "--config", str(write_config(tmp_path / "d.yaml", cfg)), "--resume"], tmp_path)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr
    # A data problem is reported before training, with the file.
    os.remove(tmp_path / "data" / "train" / "masks" / "i03.png")
    proc = run_cli(["train", "--config", str(tmp_path / "d.yaml")], tmp_path)
    assert proc.returncode == 2 and "i03.png: image without a mask" in proc.stderr
