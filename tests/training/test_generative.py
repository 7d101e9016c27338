"""Generative and classification training through the same train / test pipeline: AE, VAE, HAE, DDPM, DDIM, SDPM,
SDIM, LDPM, LDIM and ClM from native configs on tiny on-disk folders (16x16 grey squares, 2 steps per epoch)."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import smp_like
from smp_like.training.config import ConfigError, parse_config
from smp_like.training.evaluate import evaluate
from smp_like.training.image_metrics import PSNR_CAP, image_mse, image_ssim, psnr
from smp_like.training.run import train

from generative_helpers import generative_config, model_for
from pipeline_helpers import run_cli, write_config

PNG = b"\x89PNG\r\n\x1a\n"


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)


# ------------------------------------------------------------------------------------------------ metrics


def _ssim_reference(x: np.ndarray, y: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 eq. 13 with a Gaussian window, evaluated by a plain loop over every valid window position."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    g = np.exp(-((np.arange(window) - (window - 1) / 2) ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for i in range(x.shape[0] - window + 1):
        for j in range(x.shape[1] - window + 1):
            a, b = x[i:i + window, j:j + window], y[i:i + window, j:j + window]
            mx, my = (w * a).sum(), (w * b).sum()
            vx, vy = (w * a * a).sum() - mx ** 2, (w * b * b).sum() - my ** 2
            cxy = (w * a * b).sum() - mx * my
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_psnr_mse_ssim_against_closed_form_and_a_plain_loop():
    x = torch.rand(3, 2, 14, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for delta in (0.5, 0.1, 0.01):
        y = x + delta  # MSE = delta^2 exactly, so PSNR = 20 log10(1 / delta)
        assert torch.allclose(image_mse(x, y), torch.full((3,), delta ** 2, dtype=torch.float32), rtol=1e-5)
        assert torch.allclose(psnr(x, y), torch.full((3,), -20 * math.log10(delta)), atol=1e-3)
    assert torch.equal(psnr(x, x), torch.full((3,), PSNR_CAP))
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)).clamp(0, 1)
    got = image_ssim(x, noisy)
    for n in range(3):
        ref = np.mean([_ssim_reference(x[n, c].numpy(), noisy[n, c].numpy()) for c in range(2)])
        assert abs(float(got[n]) - ref) < 1e-5
    assert torch.allclose(image_ssim(x, x), torch.ones(3), atol=1e-6)
    # Images smaller than the 11-pixel window use the largest odd window that fits.
    small = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert abs(float(image_ssim(small, small * 0.5)) - _ssim_reference(small[0, 0].numpy(), small[0, 0].numpy() * 0.5,
                                                                        window=7)) < 1e-5
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(x, x[:, :1])


# ------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("arch, task, monitor", [
    ("AE", "reconstruction", "val/psnr"), ("VAE", "reconstruction", "val/psnr"), ("HAE", "reconstruction", "val/psnr"),
    ("DDPM", "generation", "val/loss"), ("DDIM", "generation", "val/loss"), ("LDPM", "generation", "val/loss"),
    ("LDIM", "generation", "val/loss"), ("ClM", "classification", "val/accuracy"), ("SDPM", "segmentation", "val/loss"),
    ("SDIM", "segmentation", "val/loss"), ("Unet", "segmentation", "val/iou"),
])
def test_task_resolves_from_arch_and_fills_its_defaults(arch, task, monitor):
    model = model_for(arch) if arch != "Unet" else {"arch": "Unet", "encoder_name": "resnet18",
                                                   "encoder_weights": None}
    data = {"train": {"images": "/i", "masks": "/m"}}
    if arch in ("SDPM", "SDIM", "Unet"):
        data.update(task="binary", classes=["fg"])
    if arch == "ClM":
        data.update(classes=["a", "b"], labels_csv="/l.csv")
    cfg = parse_config({"model": model, "data": data})
    assert cfg.resolved_task == task and cfg.task == "auto" and cfg.metrics.monitor == monitor
    # The written config (defaults filled) reads back as the same config.
    assert parse_config(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_wrong_task_loss_metrics_and_missing_labels_are_reported():
    def errors(**values):
        with pytest.raises(ConfigError) as info:
            parse_config(values)
        return info.value.errors

    data = {"train": {"images": "/i"}}
    assert any(e.startswith("task: 'reconstruction' needs model.arch") and "'DDPM'" in e
               for e in errors(task="reconstruction", model=model_for("DDPM"), data=data))
    assert any(e.startswith("loss.terms: a diffusion model trains with the MSE")
               for e in errors(model=model_for("DDPM"), data=data, loss="Dice"))
    assert any(e.startswith("metrics.names: ['iou'] are not metrics of a reconstruction run")
               for e in errors(model=model_for("AE"), data=data, metrics={"names": ["iou"], "monitor": "val/loss"}))
    assert any(e.startswith("loss.terms.1.name: KLDivergenceLoss needs a VAE")
               for e in errors(model=model_for("AE"), data=data, loss=["MSELoss", "KLDivergenceLoss"]))
    assert any(e.startswith("data.labels_csv: a classification run needs")
               for e in errors(model=model_for("ClM"), data={**data, "classes": ["a", "b"]}))
    assert any(e.startswith("data.normalization: reconstruction and generation runs scale images to [0, 1]")
               for e in errors(model=model_for("DDPM"), data={**data, "normalization": {"mean": [0.5], "std": [0.5]}}))
    bad_eps = dict(model_for("DDPM"), eps_model=dict(model_for("DDPM")["eps_model"], decoder_chanels=[8, 4]))
    assert any(e.startswith("model: DDPM cannot be built") and "decoder_chanels" in e
               for e in errors(model=bad_eps, data=data))
    clash = dict(model_for("DDPM"), decoder_channels=[8, 4])
    assert any("model.eps_model and model both set ['decoder_channels']" in e for e in errors(model=clash, data=data))


def test_nested_eps_model_builds_the_named_architecture():
    from smp_like.training.builders import build_model

    cfg = parse_config({"model": model_for("DDPM"), "data": {"train": {"images": "/i"}}})
    model = build_model(cfg.model, 1)
    assert type(model).__name__ == "DDPM" and type(model.model).__name__ == "Unet"
    assert model.model.encoder.depth == 2 and model.scheduler.num_train_timesteps == 10
    assert model.in_channels == 1 and model.model.encoder.out_channels[-1] == 8
    sdpm = build_model(parse_config({"model": model_for("SDPM"), "data": {
        "train": {"images": "/i", "masks": "/m"}, "classes": ["bg", "a", "b"]}}).model, 3)
    assert sdpm.classes == 3 and sdpm.image_channels == 1 and sdpm.num_ensemble == 2


# -------------------------------------------------------------------------------------------- train + test


@pytest.mark.parametrize("arch, pictures, outputs", [
    ("AE", ["reconstructions.png"], ["reconstructions/s00.png", "reconstructions.png", "per_image.csv"]),
    ("VAE", ["reconstructions.png", "samples.png"], ["reconstructions/s01.png", "samples/sample_002.png"]),
    ("HAE", ["reconstructions.png"], ["reconstructions/s00.png"]),
    ("DDPM", ["samples.png"], ["samples/sample_000.png", "samples.png"]),
    ("SDPM", ["samples.png"], ["masks/s00.png", "per_image.csv"]),
    ("LDPM", ["samples.png"], ["samples/sample_002.png"]),
    ("ClM", [], ["predictions.csv"]),
    pytest.param("DDIM", ["samples.png"], ["samples/sample_000.png"], marks=pytest.mark.slow),
    pytest.param("SDIM", ["samples.png"], ["masks/s01.png"], marks=pytest.mark.slow),
    pytest.param("LDIM", ["samples.png"], ["samples/sample_000.png"], marks=pytest.mark.slow),
])
def test_each_wrapper_trains_from_a_native_config_and_tests(tmp_path, arch, pictures, outputs):
    cfg = parse_config(generative_config(tmp_path, arch))
    summary = train(cfg)
    run = cfg.run_dir
    for name in ["config.yaml", "metrics.csv", "curves.png", "summary.json", "best/config.json",
                 "best/model.safetensors", "checkpoints/last.ckpt", *pictures]:
        assert (run / name).is_file(), name
    for name in pictures:
        assert (run / name).read_bytes()[:8] == PNG
    assert summary["global_step"] == 2 and math.isfinite(summary["best_value"])
    assert summary["monitor"] == cfg.metrics.monitor
    assert all(math.isfinite(v) for k, v in summary["final"].items() if v is not None)
    loaded = smp_like.from_pretrained(run / "best")
    assert type(loaded).__name__ == arch

    result = evaluate(cfg)
    for name in ["metrics.json", *outputs]:
        assert (run / "test" / name).is_file(), name
    assert json.loads((run / "test" / "metrics.json").read_text()) == result
    means = [v for v in result["mean"].values()]
    assert means and all(v is not None and math.isfinite(v) for v in means)
    if cfg.resolved_task == "reconstruction":
        assert 0 < result["mean"]["psnr"] < PSNR_CAP and -1 <= result["mean"]["ssim"] <= 1
        rows = list(csv.DictReader((run / "test" / "per_image.csv").open()))
        assert len(rows) == 2 and abs(np.mean([float(r["psnr"]) for r in rows]) - result["mean"]["psnr"]) < 1e-6


def test_cli_train_then_test_writes_reconstructions(tmp_path):
    cfg = generative_config(tmp_path, "AE")
    path = write_config(tmp_path / "ae.yaml", cfg)
    proc = run_cli(["train", "--config", str(path)], tmp_path)  # tests the test split after training
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = tmp_path / "runs" / "ae" / "test"
    assert (test / "metrics.json").is_file() and (test / "reconstructions" / "s00.png").is_file()
    assert "psnr" in proc.stdout and "best val/psnr" in proc.stdout
    assert json.loads((test / "metrics.json").read_text())["checkpoint"] == "best"


@pytest.mark.slow
def test_cli_test_verb_on_the_last_checkpoint(tmp_path):
    cfg = generative_config(tmp_path, "VAE")
    path = write_config(tmp_path / "vae.yaml", cfg)
    assert run_cli(["train", "--config", str(path), "--no-test"], tmp_path).returncode == 0
    proc = run_cli(["test", "--config", str(path), "--checkpoint", "last"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "runs" / "vae" / "test" / "metrics.json").read_text())
    assert result["checkpoint"] == "last" and math.isfinite(result["mean"]["psnr"])
    assert (tmp_path / "runs" / "vae" / "test" / "samples" / "sample_000.png").is_file()


def test_ddpm_run_is_sampled_through_a_ddim_test_config_without_retraining(tmp_path):
    values = generative_config(tmp_path, "DDPM")
    cfg = parse_config(values)
    train(cfg)
    run = cfg.run_dir
    ddpm_result = evaluate(cfg, out_dir=tmp_path / "ddpm_test")
    assert ddpm_result["sampler"] == "ddpm" and ddpm_result["num_inference_steps"] == 10

    ddim_values = json.loads(json.dumps(values))
    ddim_values["model"]["arch"] = "DDIM"
    ddim_values["generation"]["num_inference_steps"] = 4
    ddim_cfg = parse_config(ddim_values)
    assert ddim_cfg.run_dir == run  # the test config points at the DDPM run
    result = evaluate(ddim_cfg)
    assert result["sampler"] == "ddim" and result["num_inference_steps"] == 4 and result["model"] == "DDPM"

    # Independent reference: the saved DDPM sampled with 4 DDIM steps from the same seeded generator.
    reference_model = smp_like.DDPM.from_pretrained(run / "best").eval()
    generator = torch.Generator().manual_seed(ddim_cfg.generation.seed)
    ref = reference_model.sample(3, (16, 16), generator=generator, sampler="ddim", num_inference_steps=4,
                                 progress=False)
    ref = ((ref + 1) / 2).clamp(0, 1)
    for j in range(3):
        written = np.asarray(Image.open(run / "test" / "samples" / f"sample_{j:03d}.png"), dtype=np.int64)
        assert np.abs(written - np.round(ref[j, 0].numpy() * 255)).max() <= 1
    ddpm_written = np.asarray(Image.open(tmp_path / "ddpm_test" / "samples" / "sample_000.png"), dtype=np.int64)
    assert not np.array_equal(ddpm_written, np.asarray(Image.open(run / "test" / "samples" / "sample_000.png")))

    # The DDPM's Lightning checkpoint loads into the DDIM model the test config builds: the same samples.
    from_ckpt = evaluate(ddim_cfg, checkpoint=str(run / "checkpoints" / "last.ckpt"), out_dir=tmp_path / "ckpt")
    assert from_ckpt["model"] == "DDIM"
    assert np.array_equal(_pixels(tmp_path / "ckpt" / "samples.png"), _pixels(run / "test" / "samples.png"))


def test_sample_grid_is_reproducible_with_the_fixed_seed(tmp_path):
    from smp_like.training.generative_task import render_pictures
    from smp_like.training.generative_data import ImageDataModule
    from smp_like.training.plots import save_image_grid

    cfg = parse_config(generative_config(tmp_path, "VAE", n_test=0))
    train(cfg)
    run = cfg.run_dir
    model = smp_like.from_pretrained(run / "best").eval()
    dataset = ImageDataModule(cfg).prepare().datasets["val"]

    def draw(seed, name):
        gen = cfg.generation.model_copy(update={"seed": seed})
        rows = render_pictures(model, dataset, gen, cfg.model.arch)["samples"]
        return _pixels(save_image_grid(tmp_path / name, [[t.numpy() for t in row] for row in rows]))

    # The run's samples.png was drawn from the final (= best, one epoch) weights with generation.seed.
    assert np.array_equal(draw(cfg.generation.seed, "a.png"), _pixels(run / "samples.png"))
    assert np.array_equal(draw(cfg.generation.seed, "b.png"), _pixels(run / "samples.png"))
    assert not np.array_equal(draw(cfg.generation.seed + 1, "c.png"), _pixels(run / "samples.png"))


def test_sdpm_test_scores_the_ensemble_mean(tmp_path):
    from smp_like.training.data import SegmentationDataModule

    cfg = parse_config(generative_config(tmp_path, "SDPM", generation={"num_ensemble": 3}))
    train(cfg)
    result = evaluate(cfg)
    assert result["num_ensemble"] == 3
    # Independent recount: the same seeded ensemble means, thresholded at 0.5, IoU / Dice from summed counts.
    model = smp_like.from_pretrained(cfg.run_dir / "best").eval()
    dataset = SegmentationDataModule(cfg).prepare().datasets["test"]
    generator = torch.Generator().manual_seed(cfg.generation.seed)
    tp = fp = fn = 0
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            mean = torch.stack([s for s in model.sample(condition=item["image"][None].repeat(3, 1, 1, 1),
                                                        generator=generator, progress=False)]).mean(0)
            pred = ((mean + 1) / 2).clamp(0, 1)[0].numpy() >= 0.5
            truth = item["mask"].numpy().reshape(pred.shape) > 0
            tp += int((pred & truth).sum())
            fp += int((pred & ~truth).sum())
            fn += int((~pred & truth).sum())
    assert result["mean"]["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    assert result["mean"]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)


def test_classification_accuracy_is_the_share_of_right_predictions(tmp_path):
    values = generative_config(tmp_path, "ClM")
    cfg = parse_config(values)
    train(cfg)
    result = evaluate(cfg)
    rows = list(csv.DictReader((cfg.run_dir / "test" / "predictions.csv").open()))
    assert len(rows) == 2 and {r["label"] for r in rows} <= {"small", "big"}
    assert result["mean"]["accuracy"] == pytest.approx(np.mean([r["label"] == r["predicted"] for r in rows]))
    for r in rows:
        assert float(r["p_small"]) + float(r["p_big"]) == pytest.approx(1.0, abs=1e-5)
    # A missing label row is reported with the file, before training.
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(csv_path.read_text().splitlines()[:-1]) + "\n")
    from smp_like.datasets.folder import DataError
    from smp_like.training.generative_data import ImageDataModule

    with pytest.raises(DataError, match=r"s01\.png: no row 's01'"):
        ImageDataModule(parse_config(values)).prepare()


# ------------------------------------------------------------------------------------------------------ docs


def _blocks(name, language):
    import re

    from pipeline_helpers import REPO_ROOT

    text = (REPO_ROOT / "docs" / name).read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_documented_model_sections_are_valid_configs():
    import yaml

    snippets = [b for doc in ("generative_training.md", "configuration.md") for b in _blocks(doc, "yaml")
                if "arch:" in b and any(a in b for a in ("DDPM", "SDPM", "LDPM", "VAE", "ClM"))]
    assert len(snippets) >= 7
    for text in snippets:
        values = yaml.safe_load(text)
        values.setdefault("data", {"train": {"images": "/i"}})
        if values["model"]["arch"] == "SDPM":
            values["data"].setdefault("classes", ["square"])
            values["data"].setdefault("task", "binary")
            values["data"]["train"].setdefault("masks", "/m")
        cfg = parse_config(values)  # names and nested arguments checked, the model built on the meta device
        assert cfg.resolved_task in ("reconstruction", "generation", "segmentation", "classification")


def test_documented_example_trains_ddpm_and_tests_it_as_ddim(tmp_path, monkeypatch):
    from smp_like.training.config import load_config

    monkeypatch.chdir(tmp_path)
    exec(compile(_blocks("generative_training.md", "python")[0], "generative_training.md", "exec"), {})
    folder = tmp_path / "gen_example"
    summary = train(load_config(folder / "ddpm.yaml"))
    assert summary["monitor"] == "val/loss" and (folder / "runs" / "ddpm" / "samples.png").is_file()
    result = evaluate(load_config(folder / "ddim_test.yaml"), split="val")
    assert (result["model"], result["sampler"], result["num_inference_steps"]) == ("DDPM", "ddim", 4)
    assert len(list((folder / "runs" / "ddpm" / "val" / "samples").glob("*.png"))) == 4


def test_volumes_are_read_scaled_and_written_back_with_their_geometry(tmp_path):
    """The 3D path of the images-only data and of the test outputs (NIfTI in, NIfTI out with the same affine)."""
    from smp_like.io.volumes import read_volume, write_volume
    from smp_like.training.generative_data import ImageFolderDataset, scan_images
    from smp_like.training.generative_evaluate import _write_output

    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [10.0, -4.0, 7.5]
    rng = np.random.default_rng(0)
    for i in range(2):
        write_volume(tmp_path / "vols" / f"case{i}_t1.nii.gz", rng.normal(300, 50, (12, 10, 8)).astype(np.float32),
                     affine)
    (tmp_path / "vols" / "notes.txt").write_text("not an image")
    items, problems = scan_images([{"images": str(tmp_path / "vols"), "image_suffix": "_t1"}], dim=3)
    assert not problems and [it.stem for it in items] == ["case0", "case1"]
    item = ImageFolderDataset(items, dim=3)[1]
    x = item["image"]
    assert x.shape == (1, 12, 10, 8) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    raw = read_volume(items[1].path).data.astype(np.float64)
    assert np.allclose(x.numpy(), (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    out = _write_output(tmp_path / "out", item["meta"]["stem"], x.numpy() * 0.5, item["meta"], dim=3)
    back = read_volume(out)
    assert out.name == "case1.nii.gz" and np.allclose(back.affine, affine)
    assert np.allclose(back.data[0], x.numpy()[0] * 0.5, atol=1e-6)
    assert back.spacing == pytest.approx((0.8, 0.9, 2.5))
