"""``export_model`` / ``smp-like export``: each format written, reloaded and compared with eager outputs at a size
the tracing example did not have. Exporting is slow on a CPU, so the default run keeps one case per format and
architecture family; the rest are in the slow set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import smp_like as smp
from smp_like.inference import ExportMismatch, export_model

REPO = Path(__file__).resolve().parents[2]


def _build(arch):
    torch.manual_seed(0)
    if arch == "Unet":
        return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=2,
                        aux_params=dict(classes=3))
    if arch == "FPN":
        return smp.FPN("resnet18", encoder_weights=None, encoder_depth=3, decoder_pyramid_channels=16,
                       decoder_segmentation_channels=32, classes=2)
    if arch == "Segformer":
        return smp.Segformer("mit_b0", encoder_weights=None, decoder_segmentation_channels=16, classes=2)
    if arch == "Unet3D":
        return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=2,
                        in_channels=1, spatial_dims=3)
    raise AssertionError(arch)


FAST = {("Unet", "onnx"), ("Unet", "torchscript"), ("Unet", "exported-program"), ("FPN", "torchscript"),
        ("Segformer", "torchscript"), ("Unet3D", "torchscript"), ("Unet3D", "exported-program")}
CASES = [
    pytest.param(arch, fmt, marks=() if (arch, fmt) in FAST else pytest.mark.slow)
    for arch in ("Unet", "FPN", "Segformer", "Unet3D")
    for fmt in ("onnx", "torchscript", "exported-program")
]


@pytest.mark.parametrize("arch,fmt", CASES)
def test_export_round_trips_at_another_size(arch, fmt, tmp_path):
    model = _build(arch).eval()
    model.save_pretrained(tmp_path / "m")
    # Static exported programs of 3D models keep the example size; dynamic ones are checked at another size.
    dynamic = not (arch == "Unet3D" and fmt == "exported-program")
    result = export_model(tmp_path / "m", fmt, dynamic=dynamic, atol=1e-4)
    assert result.path.is_file() and result.path.parent == tmp_path / "m"
    assert result.max_abs_diff <= 1e-4
    if dynamic:
        assert result.check_shape[0] != result.example_shape[0]
        assert result.check_shape[2:] != result.example_shape[2:]
    # Independent of export_model's own comparison: reload the file and compare with eager mode here.
    x = torch.randn(result.check_shape)
    with torch.no_grad():
        eager = model(x)
        eager = eager[0] if isinstance(eager, tuple) else eager
        if fmt == "torchscript":
            got = torch.jit.load(str(result.path))(x)
        elif fmt == "exported-program":
            got = torch.export.load(str(result.path)).module()(x)
        else:
            import onnxruntime

            session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    got = got[0] if isinstance(got, (tuple, list)) else got
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)


def test_unsupported_exports_say_why(tmp_path):
    torch.manual_seed(0)
    smp.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4)).save_pretrained(
        tmp_path / "upp")
    with pytest.raises(ValueError, match="TorchScript cannot compile"):
        export_model(tmp_path / "upp", "torchscript")
    with pytest.raises(ValueError, match="format"):
        export_model(tmp_path / "upp", "tflite")
    assert not list((tmp_path / "upp").glob("*.pt"))


def test_tolerance_violation_raises(tmp_path):
    _build("Unet").save_pretrained(tmp_path / "m")
    with pytest.raises(ExportMismatch, match="exceeds the tolerance"):
        export_model(tmp_path / "m", "torchscript", atol=-1.0)  # no difference is <= -1


def test_export_cli(tmp_path):
    _build("Unet").save_pretrained(tmp_path / "m")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = tmp_path / "exported" / "unet.pt"
    result = subprocess.run([sys.executable, "-m", "smp_like", "export", "--model", str(tmp_path / "m"), "--format",
                             "torchscript", "--output", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "max |torchscript - eager|" in result.stdout
    result = subprocess.run([sys.executable, "-m", "smp_like", "export", "--model", str(tmp_path / "m"), "--format",
                             "torchscript", "--output", str(out), "--atol", "-1"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 1 and "exceeds the tolerance" in result.stderr
