"""3D volumes through the training pipeline: the config keys, whole-volume validation, NIfTI test output, and a
3D training that learns (slow)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from volume_helpers import AFFINE, TINY_3D_MODEL, blob_volume, volume_config, write_volume_split

import smp_like
from smp_like.io.volumes import write_volume
from smp_like.training.config import ConfigError, parse_config
from smp_like.training.data import SegmentationDataModule
from smp_like.training.task import validation_forward


def _errors(values):
    with pytest.raises(ConfigError) as err:
        parse_config(values)
    return err.value.errors


def _base(**data):
    d = {"dim": 3, "classes": ["bg", "fg"], "train": {"images": "/i", "masks": "/m"}}
    d.update(data)
    return {"model": dict(TINY_3D_MODEL), "data": d}


def test_config_fills_the_model_from_the_data():
    cfg = parse_config(_base(train={"images": "/i", "masks": "/m", "image_suffix": ["_t1.nii.gz", "_t2.nii.gz"]},
                             patch_size=[32, 32, 16]))
    assert cfg.model.kwargs["spatial_dims"] == 3 and cfg.model.in_channels == 2
    assert cfg.data.val_roi_size == [32, 32, 16]  # defaults to the patch size
    # an explicit value wins, and the resolved config reads back unchanged
    cfg = parse_config(dict(_base(), model=dict(TINY_3D_MODEL, in_channels=4)))
    assert cfg.model.in_channels == 4
    assert parse_config(cfg.to_dict()).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("data, message", [
    ({"crop_size": [8, 8]}, "crop_size is for 2D images; volumes (dim: 3) use patch_size"),
    ({"val_roi_size": [8, 8]}, "val_roi_size must be [d, h, w] for dim 3"),
    ({"layout": "nnunet"}, "layout 'nnunet' needs root"),
    ({"label_map": {1: 2}, "label_offset": 1}, "label_map, label_offset and relabel_consecutive are exclusive"),
    ({"normalization": {"normalization": "ct", "percentiles": [99, 1]}}, "percentiles must satisfy"),
    ({"crop_nonzero": {"margin": [1, 2]}}, "crop_nonzero.margin must be one int or [d, h, w]"),
    ({"dim": 2, "patch_size": [8, 8, 8]}, "patch_size is for volumes (dim: 3)"),
    ({"dim": 2, "normalization": {"normalization": "ct"}}, "normalization 'ct' is for volumes"),
    ({"train": {"images": "/i", "masks": "/m", "pairing": "flemish"}}, "data.train.0.pairing"),
    ({"augment": {"train": [{"name": "RandomFlip3D", "axis": 1}]}}, "RandomFlip3D takes no argument 'axis'"),
    ({"dim": 2, "augment": {"train": [{"name": "RandomFlip3D"}]}}, "RandomFlip3D transforms volumes"),
])
def test_config_errors_name_the_key(data, message):
    errors = _errors(_base(**data))
    assert any(message in e for e in errors), errors


def test_whole_volume_validation_returns_the_volume_size():
    model = smp_like.Unet(**{k: v for k, v in TINY_3D_MODEL.items() if k != "arch"}, in_channels=1, classes=3,
                          spatial_dims=3).eval()
    x = torch.randn(1, 1, 19, 23, 17)
    with torch.no_grad():
        out = validation_forward(model, x, roi_size=(16, 16, 16), overlap=0.25)
        assert out.shape == (1, 3, 19, 23, 17)
        # a volume smaller than the window along one axis
        assert validation_forward(model, torch.randn(1, 1, 9, 20, 16), (16, 16, 16)).shape == (1, 3, 9, 20, 16)


def _nnunet_dataset(root, n_train=3, n_test=1, shape=(18, 16, 14)):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "box": 1, "ball": 2},
        "numTraining": n_train, "file_ending": ".nii.gz"}))
    for split, n in (("Tr", n_train), ("Ts", n_test)):
        for i in range(n):
            image, mask = blob_volume(rng, shape, 2)
            for c in range(2):
                write_volume(root / f"images{split}" / f"case{i}_{c:04d}.nii.gz", image[c], AFFINE)
            if split == "Tr":
                write_volume(root / "labelsTr" / f"case{i}.nii.gz", mask, AFFINE)


def test_nnunet_run_trains_validates_whole_volumes_and_writes_nifti(tmp_path):
    root = tmp_path / "Dataset002_Blobs"
    _nnunet_dataset(root)
    cfg = parse_config({
        "seed": 0, "output_dir": str(tmp_path / "runs"), "run_name": "r", "model": dict(TINY_3D_MODEL),
        "data": {"dim": 3, "layout": "nnunet", "root": str(root), "patch_size": [16, 16, 16], "batch_size": 2,
                 "val_fraction": 0.34, "normalization": {"normalization": "ct"}, "crop_nonzero": {"margin": 2},
                 "augment": {"train": [{"name": "RandomFlip3D"}, {"name": "RandomIntensity"}]}},
        "loss": ["CrossEntropy", "Dice"], "plots": {"num_samples": 1},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
    })
    assert cfg.data.classes == ["background", "box", "ball"] and cfg.model.in_channels == 2
    dm = SegmentationDataModule(cfg).prepare()
    assert len(dm.datasets["train"]) == 2 and len(dm.datasets["val"]) == 1 and len(dm.datasets["test"]) == 1
    assert len(dm.ct_stats) == 2 and dm.datasets["train"][0]["image"].shape == (2, 16, 16, 16)
    val = dm.datasets["val"][0]
    assert val["image"].shape[1:] == val["mask"].shape  # a whole (cropped) volume, not a patch

    from smp_like.training.evaluate import evaluate
    from smp_like.training.run import train

    summary = train(cfg, progress=False)
    assert summary["epochs_run"] == 1 and np.isfinite(summary["final"]["val/loss"])
    assert (cfg.run_dir / "predictions.png").is_file()
    result = evaluate(cfg, split="val")
    assert result["images"] == 1 and result["mean"]["dice"] is not None
    written = nib.load(str(cfg.run_dir / "val" / "masks" / f"{dm.pairs['val'][0].stem}.nii.gz"))
    source = nib.load(str(dm.pairs["val"][0].images[0]))
    assert written.shape == source.shape == (18, 16, 14)
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.header.get_zooms() == source.header.get_zooms()
    assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1, 2}
    # imagesTs has no labels: the test writes the masks (input geometry, crop undone) and no scores
    evaluate(cfg)
    unlabelled = nib.load(str(cfg.run_dir / "test" / "masks" / "case0.nii.gz"))
    assert unlabelled.shape == (18, 16, 14)
    np.testing.assert_allclose(unlabelled.affine, AFFINE)


def test_unlabelled_volumes_and_flemme_pairing_in_the_data_module(tmp_path):
    train = write_volume_split(tmp_path / "tr", 2, 0, (8, 8, 8), suffixes=("_flair.nii.gz", "_t1.nii.gz"))
    train["pairing"] = "flemme"
    train["mask_suffix"] = "_seg.nii.gz"
    test = write_volume_split(tmp_path / "ts", 1, 1, (8, 8, 8), suffixes=("_flair.nii.gz", "_t1.nii.gz"),
                              labels=False)
    cfg = parse_config(dict(volume_config(tmp_path, 2, 1), data={
        "dim": 3, "train": train, "test": test, "val_fraction": 0.0,
        "patch_size": [8, 8, 8], "label_map": {2: 1}, "classes": ["bg", "fg", "unused"]}))
    dm = SegmentationDataModule(cfg).prepare()
    item = dm.datasets["train"][0]
    assert item["image"].shape == (2, 8, 8, 8) and int(item["mask"].max()) <= 1  # ball relabelled to 1
    assert "mask" not in dm.datasets["test"][0]


def test_2d_folder_data_takes_the_flemme_label_and_intensity_keys(tmp_path):
    from smp_like.io.images import write_index_png, write_rgb_png

    rng = np.random.default_rng(0)
    for i in range(3):
        rgb = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
        write_rgb_png(tmp_path / "raw" / "a" / f"im{i}.png", rgb)
        write_index_png(tmp_path / "label" / "a" / f"im{i}.png", np.full((12, 12), 7 if i else 0, np.uint8))
    values = {"model": {"arch": "Unet", "encoder_name": "resnet18", "encoder_weights": None, "encoder_depth": 3,
                        "decoder_channels": [8, 8, 8]},
              "data": {"classes": ["bg", "fg"], "val_fraction": 0.0, "label_map": {7: 1}, "grayscale": True,
                       "invert_intensity": True, "resize": [16, 8],
                       "normalization": {"normalization": "mean_std", "mean": [0.0], "std": [1.0]},
                       "train": {"images": str(tmp_path / "raw"), "masks": str(tmp_path / "label"),
                                 "image_suffix": ".png", "pairing": "flemme"}}}
    cfg = parse_config(values)
    assert cfg.model.in_channels == 1
    dm = SegmentationDataModule(cfg).prepare()
    ds = dm.datasets["train"]
    item = ds[1]
    assert item["image"].shape == (1, 16, 8) and item["mask"].shape == (16, 8)
    assert item["mask"].unique().tolist() == [1]
    raw, _ = ds.read(1)  # grey then inverted, in 8-bit units
    from PIL import Image

    expected = 255 - np.asarray(Image.open(ds.pairs[1].image).convert("L"), dtype=np.float32)
    np.testing.assert_allclose(raw[..., 0], expected, atol=1.0)
    # without the label map, the value 7 is reported as outside the classes
    values["data"]["label_map"] = None
    with pytest.raises(Exception, match=r"values \[7\] outside the classes 0..1"):
        SegmentationDataModule(parse_config(values)).prepare()


@pytest.mark.slow
def test_3d_training_on_patches_learns(tmp_path):
    """~2 min on a shared 2-core machine: 10 epochs of 4 patches per volume."""
    from smp_like.training.builders import build_model
    from smp_like.training.evaluate import evaluate
    from smp_like.training.run import train

    values = volume_config(tmp_path, n_train=4, n_val=2, max_epochs=10, patches_per_volume=4, batch_size=4)
    values["trainer"]["check_val_every_n_epoch"] = 10
    values["plots"] = {"every_n_epochs": 100, "num_samples": 1}
    values["optimizer"]["lr"] = 1e-2
    cfg = parse_config(values)
    torch.manual_seed(0)
    build_model(cfg.model, 3).save_pretrained(str(tmp_path / "untrained"))
    before = evaluate(cfg, checkpoint=str(tmp_path / "untrained"), split="val", out_dir=tmp_path / "before")
    train(cfg, progress=False)
    after = evaluate(cfg, split="val")
    assert after["mean"]["dice"] > before["mean"]["dice"] + 0.2, (before["mean"], after["mean"])
    assert after["per_class"]["box"]["dice"] > 0.4
