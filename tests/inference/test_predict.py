"""``smp-like predict`` end to end (subprocess) and ``predict_files`` in process, checked against MONAI's sliding
window run on the same model with the normalisation written out by hand."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import smp_like as smp
from smp_like.inference import predict_files
from smp_like.io import Preprocessing

monai_inferers = pytest.importorskip("monai.inferers")
tifffile = pytest.importorskip("tifffile")
nibabel = pytest.importorskip("nibabel")
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "smp_like", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=3)
    # Non-trivial batch-norm statistics, so the mask depends on the input.
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 64, 64))
    model.eval().save_pretrained(folder)
    Preprocessing(mean=MEAN, std=STD, class_names=["bg", "cat", "dog"]).save(folder)
    return folder


def _oracle_probs(model, image_hwc, roi):
    """Probabilities the documented way: (x/255 - mean)/std, softmax per window, MONAI's Gaussian blending."""
    x = (image_hwc.astype(np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    x = torch.from_numpy(np.moveaxis(x, -1, 0).copy())[None]
    with torch.no_grad():
        probs = monai_inferers.sliding_window_inference(
            x, roi, 4, lambda w: torch.softmax(model(w), 1), overlap=0.25, mode="gaussian")
    return torch.as_tensor(probs)[0].numpy()


def test_predict_cli_mixed_folder_writes_good_files_and_lists_bad_ones(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    images = {
        "a": rng.integers(0, 256, (40, 60, 3), dtype=np.uint8),
        "sub/b": rng.integers(0, 256, (33, 47, 3), dtype=np.uint8),
        "c": rng.integers(0, 256, (50, 29, 3), dtype=np.uint8),
        "d": rng.integers(0, 256, (70, 90, 3), dtype=np.uint8),
    }
    Image.fromarray(images["a"]).save(src / "a.png")
    Image.fromarray(images["sub/b"]).save(src / "sub" / "b.bmp")
    np.save(src / "c.npy", images["c"])
    tifffile.imwrite(src / "d.tif", images["d"], tile=(32, 32))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(src / "grey.png")

    out = tmp_path / "out"
    result = _run("predict", "--model", str(model_dir), "--input", str(src), "--output", str(out), "--roi", "32",
                  "--save-probabilities", "--overlay", "--device", "cpu", "--no-progress")
    assert result.returncode == 1, result.stderr
    failures = result.stderr.split("FAILED", 1)[1]
    assert "broken.png" in failures and "grey.png" in failures and "3 input channels" in failures
    assert "a.png" not in failures and "d.tif" not in failures

    model = smp.from_pretrained(str(model_dir)).eval()
    for name, image in images.items():
        mask_file = out / f"{name}.png"
        with Image.open(mask_file) as png:
            assert png.mode == "P"  # class indices with a palette
            mask = np.array(png)
        probs = _oracle_probs(model, image, 32)
        saved = np.load(out / f"{name}_probs.npy")
        assert saved.dtype == np.float16 and saved.shape == probs.shape
        np.testing.assert_allclose(saved.astype(np.float32), probs, atol=2e-3)
        # Pixels whose top two classes differ by more than float rounding must get the oracle's class.
        top2 = np.sort(probs, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-4
        assert np.array_equal(mask[clear], probs.argmax(0)[clear])
        with Image.open(out / f"{name}_overlay.png") as overlay:
            assert overlay.size == (image.shape[1], image.shape[0]) and overlay.mode == "RGB"
    assert not (out / "broken.png").exists() and not (out / "grey.png").exists()


def test_predict_cli_nifti_keeps_affine_and_header(tmp_path):
    torch.manual_seed(1)
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=2,
                     in_channels=1, spatial_dims=3).eval()
    model.save_pretrained(tmp_path / "model3d")
    Preprocessing(normalization="zscore", spatial_dims=3, class_names=["bg", "organ"]).save(tmp_path / "model3d")
    affine = np.array([[0.8, 0, 0, -10], [0, 0.7, 0.1, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    data = np.random.default_rng(0).normal(100, 20, (20, 18, 13)).astype(np.float32)
    image = nibabel.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    (tmp_path / "vols").mkdir()
    nibabel.save(image, str(tmp_path / "vols" / "ct.nii.gz"))

    out = tmp_path / "out"
    result = _run("predict", "--model", str(tmp_path / "model3d"), "--input", str(tmp_path / "vols"), "--output",
                  str(out), "--roi", "16", "--tta", "flip3d", "--save-probabilities", "--device", "cpu",
                  "--no-progress")
    assert result.returncode == 0, result.stderr
    written = nibabel.load(str(out / "ct.nii.gz"))
    np.testing.assert_allclose(written.affine, affine)
    assert written.header.get_xyzt_units() == ("mm", "sec")
    mask = np.asarray(written.dataobj)
    assert mask.shape == data.shape and mask.dtype == np.uint8

    # Oracle: z-score by hand, TTA as a plain loop over the 8 flips, MONAI's Gaussian blending.
    x = torch.from_numpy((data - data.mean()) / data.std())[None, None]

    def flipped_mean(w):
        outs = []
        for axes in [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]:
            y = model(torch.flip(w, axes) if axes else w)
            outs.append(torch.softmax(torch.flip(y, axes) if axes else y, 1))
        return sum(outs) / 8

    with torch.no_grad():
        probs = torch.as_tensor(monai_inferers.sliding_window_inference(x, 16, 4, flipped_mean, mode="gaussian"))[0]
    saved = np.moveaxis(np.asarray(nibabel.load(str(out / "ct_probs.nii.gz")).dataobj), -1, 0)
    np.testing.assert_allclose(saved, probs.numpy(), atol=2e-3)
    clear = (probs[1] - probs[0]).abs().numpy() > 1e-3
    assert np.array_equal(mask[clear], probs.argmax(0).numpy()[clear])


def test_existing_outputs_are_skipped_unless_overwrite(model_dir, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "x.png").write_bytes(b"keep me")
    report = predict_files(model_dir, [image], out, device="cpu", progress=False)
    assert report.skipped == [image] and (out / "x.png").read_bytes() == b"keep me" and report.ok
    report = predict_files(model_dir, [image], out, device="cpu", progress=False, overwrite=True)
    assert report.written == [out / "x.png"] and (out / "x.png").read_bytes() != b"keep me"


def test_without_preprocessing_json_falls_back_to_encoder_statistics(tmp_path):
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=1)
    model.save_pretrained(tmp_path / "m")
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "x.png")
    notes = []
    report = predict_files(tmp_path / "m", [tmp_path / "x.png"], tmp_path / "out", device="cpu", progress=False,
                           log=notes.append)
    assert report.ok and "preprocessing.json" in notes[0] and "0.485" in notes[0]
    with Image.open(tmp_path / "out" / "x.png") as png:
        assert set(np.unique(np.array(png))) <= {0, 1}  # a binary model: 0/1 mask


def test_streamed_tiff_equals_in_memory_prediction(model_dir, tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 433, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(48, 64), compression="zlib")
    common = dict(device="cpu", progress=False, roi_size=64, overlap=0.25, save_probabilities=True)
    streamed = predict_files(model_dir, [tmp_path / "big.tif"], tmp_path / "s", stream_pixels=1000, **common)
    in_memory = predict_files(model_dir, [tmp_path / "big.tif"], tmp_path / "m", **common)
    assert streamed.ok and in_memory.ok, (streamed.failed, in_memory.failed)
    assert [p.name for p in streamed.written] == ["big.tif", "big_probs.tif"]
    mask = tifffile.imread(tmp_path / "s" / "big.tif")
    with tifffile.TiffFile(tmp_path / "s" / "big.tif") as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE
    with Image.open(tmp_path / "m" / "big.png") as png:
        reference = np.array(png)
    assert (mask != reference).mean() < 1e-4  # only near-ties may differ (see below)
    probs = tifffile.imread(tmp_path / "s" / "big_probs.tif")
    # Same windows, weights and blending order; window batches differ (rows vs across rows), which changes conv
    # rounding in the last float32 bits: at most one float16 step apart.
    np.testing.assert_allclose(np.moveaxis(probs, -1, 0).astype(np.float32),
                               np.load(tmp_path / "m" / "big_probs.npy").astype(np.float32), rtol=0, atol=1e-3)


def test_usage_errors_exit_2(model_dir, tmp_path):
    result = _run("predict", "--model", str(model_dir), "--input", str(tmp_path), "--output", str(tmp_path),
                  "--tta", "flip3d", "--no-progress")
    assert result.returncode == 2 and "3D" in result.stderr
    result = _run("predict", "--model", str(model_dir), "--input", str(tmp_path), "--output", str(tmp_path),
                  "--classes", "a", "b")
    assert result.returncode == 2 and "class names" in result.stderr


def test_multilabel_model_writes_one_mask_per_label(tmp_path):
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=2).eval()
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    prep = Preprocessing(mean=MEAN, std=STD, task="multilabel", class_names=["road", "car"], threshold=0.5)
    report = predict_files(model, [tmp_path / "x.png"], tmp_path / "out", preprocessing=prep, device="cpu",
                           progress=False, overlay=True)
    assert report.ok, report.failed
    x = torch.from_numpy(((image / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        expected = (torch.sigmoid(model(x))[0] > 0.5).numpy()
    for k, name in enumerate(["road", "car"]):
        with Image.open(tmp_path / "out" / f"x_{name}.png") as png:
            assert np.array_equal(np.array(png), expected[k].astype(np.uint8))
    assert (tmp_path / "out" / "x_overlay.png").is_file()
