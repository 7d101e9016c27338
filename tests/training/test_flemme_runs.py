"""End to end: Flemme configs (written with Flemme's keys) train a few steps on a Flemme-layout folder
(``raw/`` + ``label/``) through ``smp-like train``, then ``smp-like test`` runs the matching Flemme test config
whose ``model_path`` names a ``ckp_*.pth``: every Flemme model name (EDM: a clear error), 2D and a 3D patch run.
Each run is a few steps on tiny images (about 1-3 s each on a quiet 2-core machine)."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("lightning")
pytest.importorskip("pydantic")

from smp_like.cli import main  # noqa: E402
from smp_like.training.flemme import FlemmeConfigWarning  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrating_from_flemme.md"
QUIET = ["--set", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0"]


def _png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def flemme_folder(root: Path, n: int, seed: int, size: int = 16, labels: bool = True) -> Path:
    """Flemme's layout: ``root/raw/caseNN.png`` (a bright square on a dark background) and ``root/label/caseNN.png``
    (0 / 255 masks)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        image = np.full((size, size), 30, np.uint8)
        mask = np.zeros((size, size), np.uint8)
        s = int(rng.integers(size // 4, size // 2))
        y, x = (int(v) for v in rng.integers(0, size - s, 2))
        image[y:y + s, x:x + s] = 220
        mask[y:y + s, x:x + s] = 255
        _png(root / "raw" / f"case{i:02d}.png", image)
        if labels:
            _png(root / "label" / f"case{i:02d}.png", mask)
    return root


def write_yaml(path: Path, cfg) -> Path:
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def train_and_test(tmp_path: Path, train_cfg, test_cfg, monkeypatch, extra=()):
    """Run both verbs from ``tmp_path`` (Flemme reads paths relative to the working directory); return the
    warnings of the train run and the test output folder's metrics.json."""
    monkeypatch.chdir(tmp_path)
    train_file = write_yaml(tmp_path / "train.yaml", train_cfg)
    test_file = write_yaml(tmp_path / "test.yaml", test_cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--config", str(train_file), *QUIET, *extra]) == 0
    flemme_warnings = [w for w in caught if issubclass(w.category, FlemmeConfigWarning)]
    assert len(flemme_warnings) <= 1  # one warning at start, or none when nothing is ignored
    for name in ("ckp_last.pth", "ckp_best_loss.pth", "ckp_best_score.pth"):
        data = torch.load(tmp_path / "ckp" / name, map_location="cpu", weights_only=True)
        assert set(data) >= {"model_config", "state_dict", "epoch"}
        assert all(torch.isfinite(v).all() for v in data["state_dict"].values() if v.is_floating_point())
    with warnings.catch_warnings(record=True):  # the test config's own translation notes
        warnings.simplefilter("always")
        assert main(["test", "--config", str(test_file)]) == 0
    out = tmp_path / "results"
    metrics = json.loads((out / "metrics.json").read_text())
    return flemme_warnings, out, metrics


def _finite(values):
    vals = [v for v in values if v is not None]
    assert vals, "no metric values"
    assert all(np.isfinite(v) for v in vals)


def _doc_yaml_blocks():
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)


def tiny_unet(out_channel=1, in_channel=1, name="UNet"):
    return {"name": name, "in_channel": in_channel, "out_channel": out_channel, "patch_channel": 8,
            "patch_size": 2, "down_channels": [8, 16], "middle_channels": [16], "building_block": "single",
            "normalization": "batch", "num_blocks": 1}


# ------------------------------------------------------------------------------------------ SeM, VAE, DDPM


def test_sem_docs_example_trains_and_tests(tmp_path, monkeypatch):
    """The example of docs/migrating_from_flemme.md, as written there."""
    train_doc, test_doc = [b for b in _doc_yaml_blocks() if "ImgSegDataset" in b][-2:]
    flemme_folder(tmp_path / "data" / "train", 8, seed=0)
    flemme_folder(tmp_path / "data" / "val", 4, seed=1)
    test_cfg = yaml.safe_load(test_doc)
    test_cfg.update(seg_dir="results", save_input=True, save_target=True, save_colorized=True)
    ws, out, metrics = train_and_test(tmp_path, train_doc, test_cfg, monkeypatch)
    # Flemme's save_input / save_target / save_colorized
    assert sorted(p.name for p in (out / "inputs").iterdir()) == [f"case{i:02d}.png" for i in range(4)]
    assert sorted(p.name for p in (out / "targets").iterdir()) == [f"case{i:02d}.png" for i in range(4)]
    from PIL import Image

    with Image.open(out / "colorized" / "case00.png") as im:
        assert im.mode == "RGB" and im.size == (16, 16)
    # the example's only ignored key is the one the doc's warning section mentions: none here
    assert not ws or "image_size" not in str(ws[0].message)
    _finite(metrics["mean"].values())
    assert len(list((out / "masks").glob("*.png"))) == 4
    summary = json.loads((tmp_path / "ckp" / "run" / "summary.json").read_text())
    assert summary["monitor"] == "val/dice"
    best = torch.load(tmp_path / "ckp" / "ckp_best_score.pth", weights_only=True)
    assert best["monitor"] == "val/dice" and best["score"] is not None
    # the files hold what their names say, against the run's own per-epoch log
    import csv

    with (tmp_path / "ckp" / "run" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/dice")]
    dice = [float(r["val/dice"]) for r in rows]
    loss = [float(r["val/loss"]) for r in rows]
    assert len(dice) == 2  # max_epoch 2, validated every epoch (save_after_epochs 1)
    assert best["score"] == pytest.approx(max(dice)) and best["epoch"] == 1 + dice.index(max(dice))
    best_loss = torch.load(tmp_path / "ckp" / "ckp_best_loss.pth", weights_only=True)
    assert best_loss["loss"] == pytest.approx(min(loss)) and best_loss["epoch"] == 1 + loss.index(min(loss))
    assert torch.load(tmp_path / "ckp" / "ckp_last.pth", weights_only=True)["epoch"] == 2


def test_vae_trains_and_tests(tmp_path, monkeypatch):
    flemme_folder(tmp_path / "imgs", 6, seed=2, labels=False)
    enc = tiny_unet(name="CNN")
    loader = {"dataset": {"name": "ImgDataset", "data_path": "imgs", "data_dir": "raw"},
              "data_transforms": [{"name": "ToTensor"}], "batch_size": 3}
    train = {"mode": "train", "model": {"name": "VAE", "reconstruction_losses": [{"name": "MSE"}],
                                        "distribution_loss": {"name": "KL", "weight": 0.001}, "encoder": enc},
             "loader": loader, "val_loader": loader, "optimizer": {"name": "Adam", "lr": 0.001},
             "evaluation_metrics": {"recon": [{"name": "SSIM"}, {"name": "PSNR"}, {"name": "MSE"}]},
             "score_metric": {"name": "PSNR", "higher_is_better": True}, "max_epoch": 1,
             "check_point_dir": "ckp", "eval_batch_num": 2}
    test = {"mode": "test", "model": train["model"], "loader": loader, "model_path": "ckp/ckp_best_score.pth",
            "recon_dir": "results", "save_input": True}
    ws, out, metrics = train_and_test(tmp_path, train, test, monkeypatch)
    assert len(ws) == 1 and "eval_batch_num" in str(ws[0].message)
    _finite(v for v in metrics["mean"].values() if isinstance(v, (int, float)))
    assert any(out.rglob("*.png"))


def test_ddpm_trains_then_samples_with_a_ddim_test_config(tmp_path, monkeypatch):
    flemme_folder(tmp_path / "imgs", 4, seed=3, labels=False)
    eps = {"time_channel": 16, "encoder": tiny_unet(in_channel=1, out_channel=1)}
    loader = {"dataset": {"name": "ImgDataset", "data_path": "imgs", "data_dir": "raw"},
              "data_transforms": [{"name": "ToTensor"}, {"name": "Normalize", "mean": [0.5], "std": [0.5]}],
              "batch_size": 4}
    train = {"mode": "train", "model": {"name": "DDPM", "num_steps": 20, "beta_schedule": "consine",
                                        "eps_loss": {"name": "MSE"}, "eps_model": eps},
             "loader": loader, "optimizer": {"name": "AdamW", "lr": 0.001}, "max_epoch": 1, "check_point_dir": "ckp",
             "sampler": {"num_sample_steps": 4, "clipped": True, "clip_range": [-1, 1]},
             "eval_gen": {"random_sample_num": 2}}
    test_model = dict(train["model"], name="DDIM", sample_num_steps=4)
    test = {"mode": "test", "model": test_model, "loader": loader, "model_path": "ckp/ckp_last.pth",
            "eval_gen": {"gen_dir": "results", "random_sample_num": 2}, "sampler": {"num_sample_steps": 4}}
    ws, out, metrics = train_and_test(tmp_path, train, test, monkeypatch)
    assert metrics["sampler"] == "ddim" and metrics["num_inference_steps"] == 4
    assert metrics["all_finite"] is True and metrics["num_samples"] == 2
    assert (out / "samples.png").is_file()


# ------------------------------------------------------------------------------------------ the other names


def _seg_loader(path="data/train"):
    return {"dataset": {"name": "ImgSegDataset", "data_path": path}, "data_transforms": [{"name": "ToTensor"}],
            "label_transforms": [{"name": "ToBinaryMask", "threshold": 0}, {"name": "ToTensor"}], "batch_size": 4}


@pytest.mark.parametrize("name", ["HSeM", "AE", "HAE", "SDIM", "SDM-nested", "LDPM"])
def test_other_model_names_train_and_test(name, tmp_path, monkeypatch):
    flemme_folder(tmp_path / "data" / "train", 6, seed=4)
    flemme_folder(tmp_path / "data" / "val", 2, seed=5)
    base = {"mode": "train", "optimizer": {"name": "Adam", "lr": 0.001}, "max_epoch": 1, "check_point_dir": "ckp"}
    recon_loader = {"dataset": {"name": "ImgDataset", "data_path": "data/train", "data_dir": "raw"},
                    "data_transforms": [{"name": "ToTensor"}], "batch_size": 3}
    out_key = "seg_dir"
    if name == "HSeM":
        model = {"name": "HSeM", "segmentation_losses": [{"name": "Dice"}, {"name": "BCEL"}], "encoder": tiny_unet()}
        train = dict(base, model=model, loader=_seg_loader(), val_loader=_seg_loader("data/val"),
                     evaluation_metrics={"seg": [{"name": "Dice"}]}, score_metric={"name": "Dice"})
        test_loader = _seg_loader("data/val")
    elif name in ("AE", "HAE"):
        model = {"name": name, "reconstruction_losses": {"name": "MSE"}, "encoder": tiny_unet(name="CNN")}
        train = dict(base, model=model, loader=recon_loader)
        test_loader, out_key = recon_loader, "recon_dir"
    elif name in ("SDIM", "SDM-nested"):
        eps = {"time_channel": 16, "encoder": tiny_unet(),
               "condition_embedding": {"combine_condition": "cat", "merge_timestep_and_condition": False,
                                       "encoder": {"name": "Identity", "out_channel": 1}}}
        settings = {"num_steps": 10, "num_ensemble": 2, "beta_schedule": "consine", "eps_loss": {"name": "MSE"},
                    "eps_model": eps, "sample_num_steps": 3}
        model = ({"name": "SDIM", **settings} if name == "SDIM" else
                 {"name": "SDM", "diffusion": {"name": "DDIM", **settings}})
        train = dict(base, model=model, loader=_seg_loader(), val_loader=_seg_loader("data/val"))
        test_loader = _seg_loader("data/val")
    else:  # LDPM on a VAE given inline (frozen at its initialisation, as Flemme does without ae_path)
        ae = {"name": "VAE", "encoder": tiny_unet(name="CNN"), "reconstruction_losses": {"name": "MSE"}}
        eps = {"time_channel": 16, "encoder": {"name": "UNet", "in_channel": 16, "out_channel": 16,
                                               "patch_channel": 8, "patch_size": 1, "down_channels": [8],
                                               "num_blocks": 1, "normalization": "batch"}}
        model = {"name": "LDPM", "num_steps": 10, "freezed_ae": True, "ae_model": ae, "eps_model": eps}
        train = dict(base, model=model, loader=recon_loader, sampler={"num_sample_steps": 3},
                     eval_gen={"random_sample_num": 2})
        test_loader, out_key = recon_loader, None
    test = {"mode": "test", "model": train["model"], "loader": test_loader, "model_path": "ckp/ckp_last.pth"}
    if out_key:
        test[out_key] = "results"
    else:
        test["eval_gen"] = {"gen_dir": "results", "random_sample_num": 2}
    _, out, metrics = train_and_test(tmp_path, train, test, monkeypatch)
    numbers = [v for v in metrics.get("mean", {}).values() if isinstance(v, (int, float))]
    if numbers:
        _finite(numbers)
    else:
        assert metrics.get("all_finite") is True


def test_clm_trains_and_tests(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    for cls, value in (("dark", 40), ("bright", 200)):
        for i in range(4):
            _png(tmp_path / "cls" / cls / f"{cls}{i}.png",
                 np.clip(rng.normal(value, 10, (16, 16)), 0, 255).astype(np.uint8))
    loader = {"dataset": {"name": "ImgClsDataset", "data_path": "cls", "cls_label": {"dark": 0, "bright": 1}},
              "data_transforms": [{"name": "ToTensor"}], "batch_size": 4,
              "class_label_transforms": [{"name": "ToOneHot", "num_classes": 2}]}
    train = {"mode": "train", "model": {"name": "ClM", "classification_losses": [{"name": "CE"}],
                                        "encoder": tiny_unet(name="CNN")},
             "loader": loader, "optimizer": {"name": "Adam", "lr": 0.001}, "max_epoch": 1, "check_point_dir": "ckp",
             "num_classes": 2, "evaluation_metrics": {"cls": [{"name": "ACC"}]}}
    test = {"mode": "test", "model": train["model"], "loader": loader, "model_path": "ckp/ckp_best_loss.pth",
            "cls_dir": "results", "num_classes": 2}
    _, out, metrics = train_and_test(tmp_path, train, test, monkeypatch)
    _finite([metrics["mean"]["accuracy"]])


def test_edm_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = {"model": {"name": "EDM", "eps_model": {"encoder": tiny_unet()}},
           "loader": {"dataset": {"name": "ImgDataset", "data_path": "x"}}}
    assert main(["train", "--config", str(write_yaml(tmp_path / "edm.yaml", cfg))]) == 2
    assert "EDM" in capsys.readouterr().err and not (tmp_path / "ckp").exists()


def test_print_config_shows_the_translation(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = {"model": {"name": "SeM", "encoder": tiny_unet(), "segmentation_losses": {"name": "BCEL"}},
           "loader": _seg_loader(), "optimizer": {"name": "Adam", "lr": 0.01}, "max_epoch": 2, "tsne_visualization": 1}
    with pytest.warns(FlemmeConfigWarning, match="tsne_visualization"):
        assert main(["train", "--config", str(write_yaml(tmp_path / "seg.yaml", cfg)), "--print-config"]) == 0
    native = yaml.safe_load(capsys.readouterr().out)
    assert native["model"]["arch"] == "Unet" and native["model"]["encoder_name"] == "cnn"
    assert native["trainer"]["max_epochs"] == 2 and native["loss"]["terms"][0]["name"] == "BCEWithLogits"
    assert native["data"]["train"][0]["images"] == str(tmp_path / "data" / "train" / "raw")
    assert native["checkpoint"]["flemme_dir"] == str(tmp_path)  # check_point_dir defaults to '.'


def test_3d_patch_segmentation_trains_and_tests(tmp_path, monkeypatch):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(7)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    for split, n in (("train", 4), ("val", 1)):
        for i in range(n):
            volume = rng.normal(0, 0.1, (12, 12, 12)).astype(np.float32)
            mask = np.zeros((12, 12, 12), np.uint8)
            z, y, x = (int(v) for v in rng.integers(0, 6, 3))
            volume[z:z + 5, y:y + 5, x:x + 5] += 1.0
            mask[z:z + 5, y:y + 5, x:x + 5] = 1
            for folder, data in (("raw", volume), ("label", mask)):
                (tmp_path / "vol" / split / folder).mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(data, affine), tmp_path / "vol" / split / folder / f"case{i}.nii.gz")

    def loader(split):
        return {"dataset": {"name": "PatchImgSegDataset", "dim": 3, "data_path": f"vol/{split}",
                            "data_suffix": ".nii.gz", "slice_builder": {"patch_shape": [8, 8, 8],
                                                                         "stride_shape": [4, 4, 4]}},
                "data_transforms": [{"name": "Normalize"}, {"name": "RandomFlip"}, {"name": "ToTensor"}],
                "label_transforms": [{"name": "RandomFlip"}, {"name": "ToTensor"}], "batch_size": 2}

    enc = dict(tiny_unet(out_channel=2), image_size=[8, 8, 8])
    train = {"mode": "train", "model": {"name": "SeM", "segmentation_losses": [{"name": "Dice"}, {"name": "CE"}],
                                        "encoder": enc},
             "loader": loader("train"), "val_loader": loader("val"), "optimizer": {"name": "Adam", "lr": 0.01},
             "evaluation_metrics": {"seg": [{"name": "Dice"}]}, "score_metric": {"name": "Dice"}, "max_epoch": 1,
             "check_point_dir": "ckp"}
    test = {"mode": "test", "model": train["model"], "loader": loader("val"), "model_path": "ckp/ckp_best_score.pth",
            "seg_dir": "results"}
    ws, out, metrics = train_and_test(tmp_path, train, test, monkeypatch)
    assert "stride_shape" in str(ws[0].message)
    _finite(metrics["mean"].values())
    written = list((out / "masks").glob("*.nii.gz"))
    assert len(written) == 1
    assert np.allclose(nib.load(written[0]).affine, affine)  # the prediction overlays the input
