"""The shapes demo end to end (shortened), its dataset, and its confusion-matrix metrics."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smp_like.datasets import ShapesDataset
from smp_like.training.evaluation import confusion_matrix, per_class_iou, pixel_accuracy

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["background", "circle", "square", "triangle"]


# ------------------------------------------------------------------------------------------------ metrics


def _loop_confusion(pred, target, num_classes, ignore_index=None):
    cm = [[0] * num_classes for _ in range(num_classes)]
    for p, t in zip(pred, target):
        if ignore_index is not None and t == ignore_index:
            continue
        cm[t][p] += 1
    return cm


def _loop_iou(pred, target, num_classes):
    ious = []
    for c in range(num_classes):
        inter = sum(1 for p, t in zip(pred, target) if p == c and t == c)
        union = sum(1 for p, t in zip(pred, target) if p == c or t == c)
        ious.append(inter / union if union else float("nan"))
    return ious


@pytest.mark.parametrize("num_classes", [1, 2, 5])
def test_confusion_matrix_and_iou_match_python_loop(num_classes):
    g = torch.Generator().manual_seed(num_classes)
    target = torch.randint(num_classes, (3, 7, 9), generator=g)
    noise = torch.randint(num_classes, (3, 7, 9), generator=g)
    pred = torch.where(torch.rand(3, 7, 9, generator=g) < 0.6, target, noise)
    p, t = pred.flatten().tolist(), target.flatten().tolist()

    cm = confusion_matrix(pred, target, num_classes)
    assert cm.dtype == torch.int64 and cm.shape == (num_classes, num_classes)
    assert cm.tolist() == _loop_confusion(p, t, num_classes)

    expected = _loop_iou(p, t, num_classes)
    assert per_class_iou(cm).tolist() == pytest.approx(expected, nan_ok=True)
    assert pixel_accuracy(cm) == pytest.approx(sum(a == b for a, b in zip(p, t)) / len(p))


def test_iou_is_nan_for_absent_class_and_ignore_index_is_dropped():
    target = torch.tensor([0, 0, 1, 1, 255, 255])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(pred, target, 4, ignore_index=255)
    assert cm.tolist() == _loop_confusion(pred.tolist(), target.tolist(), 4, ignore_index=255)
    iou = per_class_iou(cm)
    assert iou[:2].tolist() == pytest.approx([1 / 2, 2 / 3])
    assert math.isnan(iou[2]) and math.isnan(iou[3])  # in neither prediction nor (kept) target


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="square"):
        per_class_iou(torch.zeros(2, 3))


# ------------------------------------------------------------------------------------------------ dataset


def test_shapes_dataset_is_deterministic_and_splits_differ():
    a = ShapesDataset(6, image_size=48, seed=3)
    b = ShapesDataset(10, image_size=48, seed=3)  # item i must not depend on n
    for i in range(6):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], ShapesDataset(1, image_size=48, seed=4)[0][0])
    assert not torch.equal(a[0][0], ShapesDataset(1, image_size=48, seed=3, split="val")[0][0])


def test_shapes_dataset_item_format_and_content():
    ds = ShapesDataset(32, image_size=(48, 64), seed=0)
    assert ds.num_classes == len(CLASSES) and list(ds.classes) == CLASSES
    image, mask = ds[0]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32
    assert mask.shape == (48, 64) and mask.dtype == torch.int64
    masks = torch.stack([ds[i][1] for i in range(len(ds))])
    assert set(masks.unique().tolist()) == set(range(len(CLASSES)))  # every class occurs
    # Normalised images: roughly zero-mean, unit-scale; de-normalising recovers [0, 1].
    images = torch.stack([ds[i][0] for i in range(8)])
    assert abs(images.mean().item()) < 0.6 and 0.5 < images.std().item() < 1.5
    raw = ShapesDataset(1, image_size=(48, 64), seed=0, normalize=False)[0][0]
    assert torch.allclose(ds.denormalize(image), raw, atol=1e-6)
    with pytest.raises(IndexError):
        ds[32]
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(1, split="training")


def test_shapes_dataset_colour_does_not_give_the_class():
    # Colours of shapes and background share one distribution: the mean colour per class is much the same.
    ds = ShapesDataset(64, image_size=48, seed=1, normalize=False)
    per_class = {c: [] for c in range(len(CLASSES))}
    for i in range(len(ds)):
        image, mask = ds[i]
        for c in mask.unique().tolist():
            per_class[c].append(image[:, mask == c].mean(dim=1))
    means = torch.stack([torch.stack(v).mean(0) for v in per_class.values()])
    assert (means - means.mean(0)).abs().max() < 0.1


def test_shapes_dataset_applies_albumentations_transform():
    A = pytest.importorskip("albumentations")
    plain = ShapesDataset(2, image_size=32, seed=5)
    flipped = ShapesDataset(2, image_size=32, seed=5, transform=A.Compose([A.HorizontalFlip(p=1.0)]))
    for i in range(2):
        (x, y), (xf, yf) = plain[i], flipped[i]
        assert torch.equal(xf, x.flip(-1)) and torch.equal(yf, y.flip(-1))


# ------------------------------------------------------------------------------------------------ demo


def _check_outputs(out: Path, metrics: dict) -> None:
    """The demo writes its dataset, its config and a full run folder, and scores the held-out test split."""
    assert json.loads((out / "metrics.json").read_text()) == metrics
    config = metrics["config"]
    for split, n in (("train", config["train_size"]), ("val", config["val_size"]), ("test", config["test_size"])):
        assert len(list((out / "data" / split / "images").glob("*.png"))) == n
        assert len(list((out / "data" / split / "masks").glob("*.png"))) == n
    run = Path(metrics["run_dir"])
    assert run == out / "runs" / "demo"
    for name in ("config.yaml", "metrics.csv", "curves.png", "predictions.png", "summary.json", "best/config.json",
                 "best/preprocessing.json", "checkpoints/last.ckpt", "test/per_class.csv", "test/metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(metrics["per_class_iou"]) == CLASSES
    for value in list(metrics["per_class_iou"].values()) + [metrics["mean_iou"]]:
        assert value is None or 0.0 <= value <= 1.0
    fg = [v for k, v in metrics["per_class_iou"].items() if k != "background" and v is not None]
    assert metrics["mean_iou"] == pytest.approx(sum(fg) / len(fg))
    assert len(list((run / "test" / "masks").glob("*.png"))) == config["test_size"]
    assert 0 <= metrics["train_time_seconds"] <= metrics["total_time_seconds"]
    for key in ("encoder_name", "encoder_depth", "train_size", "batch_size", "lr", "seed"):
        assert key in config
    # The written config is the one the user edits and reruns with `smp-like train --config`.
    from smp_like.training.config import load_config

    cfg = load_config(out / "config.yaml")
    assert cfg.trainer.max_epochs == metrics["epochs"] and cfg.data.classes == CLASSES


def test_run_demo_tiny(tmp_path):
    from smp_like.training import run_demo

    threads = torch.get_num_threads()
    metrics = run_demo(
        tmp_path / "out", epochs=2, train_size=8, val_size=4, test_size=3, image_size=32, batch_size=4, seed=1,
        progress=False,
    )
    _check_outputs(tmp_path / "out", metrics)
    assert metrics["output_dir"] == str((tmp_path / "out").resolve())
    assert metrics["config"]["train_size"] == 8 and metrics["config"]["seed"] == 1
    assert metrics["summary"]["epochs_run"] == 2 and metrics["summary"]["global_step"] == 4
    assert torch.get_num_threads() == threads  # the run leaves global state as it found it
    # The shapes written as PNG are the dataset's own images and masks.
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "out/data/train/images/00001.png"))
    expected_image, expected_mask = ShapesDataset(8, image_size=32, seed=1, split="train").generate(1)
    assert np.array_equal(image, expected_image)
    mask = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "out/data/train/masks/00001.png"))
    assert np.array_equal(mask, expected_mask)


def test_run_demo_rejects_bad_sizes(tmp_path):
    from smp_like.training import run_demo

    with pytest.raises(ValueError, match="image_size"):
        run_demo(tmp_path, image_size=36, train_size=4, val_size=2, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        run_demo(tmp_path, epochs=0, progress=False)


def test_cli_demo_quick(tmp_path):
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=pythonpath)
    proc = subprocess.run(
        [sys.executable, "-m", "smp_like", "demo", "--quick", "--output-dir", "tmp"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = (tmp_path / "tmp").resolve()
    metrics = json.loads((out / "metrics.json").read_text())
    _check_outputs(out, metrics)
    assert metrics["config"]["epochs"] == 1 and metrics["config"]["train_size"] == 16
    assert str(out) in proc.stdout  # the folder is printed at the end
    assert "mean" in proc.stdout and "circle" in proc.stdout and "smp-like train --config" in proc.stdout
    assert "Trainer.fit` stopped: `max_epochs=1` reached" in proc.stderr  # Lightning ran the training


def test_training_and_datasets_import_light():
    code = (
        "import sys, smp_like.training, smp_like.training.demo, smp_like.datasets;"
        "bad = [m for m in ('matplotlib', 'albumentations', 'lightning', 'pydantic') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
