"""Exports of every architecture, each checked numerically against eager outputs.

torch.compile(fullgraph=True) and torch.export (dynamic batch/height/width) for all; ONNX (opset 17, dynamic
batch/height/width) run with onnxruntime for all; torch.jit.script where the architecture allows it (see
docs/models.md for the table, which these tests keep honest).
"""

import onnxruntime
import pytest
import torch
from test_architectures_common import ALL_ARCHS, build


def _eager(model, x):
    with torch.no_grad():
        return model(x)


def _close(actual, expected, atol):
    actual = actual if isinstance(actual, (tuple, list)) else (actual,)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(torch.as_tensor(a), b, rtol=1e-4, atol=atol)


def _input(arch, batch=2, size=(64, 64)):
    if arch == "PAN":
        size = tuple(s + 192 for s in size)
    return torch.randn(batch, 3, *size)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_compile_fullgraph(arch):
    model = build(arch, classes=2, aux_params=dict(classes=3, dropout=None))
    x = _input(arch, size=(64, 96))
    torch._dynamo.reset()
    # aot_eager captures the whole graph (fullgraph) and runs AOTAutograd without inductor's C++ compile; the
    # inductor backend itself is exercised for Unet in test_unet_export.py and for all in the slow set.
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    _close(_eager(compiled, x), _eager(model, x), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_compile_inductor(arch):
    model = build(arch, classes=2)
    x = _input(arch, size=(64, 96))
    torch._dynamo.reset()
    _close(_eager(torch.compile(model, fullgraph=True), x), _eager(model, x), atol=1e-4)


def _dynamic_shapes(arch):
    # PAN's pyramid attention pools to 1/8 of its stride-16 feature: below 256 px a level collapses to one pixel.
    low = {"DPT": 32, "PAN": 256}.get(arch, 64)
    return ({0: torch.export.Dim("batch", min=1, max=8), 2: torch.export.Dim("height", min=low, max=512),
             3: torch.export.Dim("width", min=low, max=512)},)


# Dynamic height/width is not exportable yet for these: their heads upsample by a fixed factor and crop, and the
# shape solver cannot prove the crop fits for every size (a guard like 4*ceil(H'/4) >= H). They export with
# dynamic batch and fixed spatial size (test below). docs/models.md keeps the table.
STATIC_SIZE_ONLY = {"DeepLabV3", "DeepLabV3Plus", "DPT"}
# PAN's exported ONNX graph disagrees with eager at other sizes (pyramid attention pooling); not claimed yet.
NO_ONNX = {"PAN"}


@pytest.mark.parametrize("arch", [a for a in ALL_ARCHS if a not in STATIC_SIZE_ONLY])
def test_torch_export_dynamic(arch):
    model = build(arch, classes=2, aux_params=dict(classes=3, dropout=None))
    x = _input(arch, size=(64, 96))
    program = torch.export.export(model, (x,), dynamic_shapes=_dynamic_shapes(arch))
    other = _input(arch, batch=3, size=(96, 160))
    _close(program.module()(other), _eager(model, other), atol=1e-5)


@pytest.mark.parametrize("arch", sorted(STATIC_SIZE_ONLY))
def test_torch_export_dynamic_batch_fixed_size(arch):
    model = build(arch, classes=2, aux_params=dict(classes=3, dropout=None))
    x = _input(arch, size=(64, 96))
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=8)},))
    other = _input(arch, batch=3, size=(64, 96))
    _close(program.module()(other), _eager(model, other), atol=1e-5)


@pytest.mark.parametrize("arch", [a for a in ALL_ARCHS if a not in NO_ONNX])
def test_onnx_dynamic_with_onnxruntime(arch, tmp_path):
    model = build(arch, classes=2)
    x = _input(arch, size=(64, 96))
    path = tmp_path / f"{arch}.onnx"
    shapes = _dynamic_shapes(arch) if arch not in STATIC_SIZE_ONLY else ({0: torch.export.Dim("batch", min=1, max=8)},)
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=True, dynamic_shapes=shapes,
                      input_names=["images"], output_names=["masks"], optimize=False, verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other_size = (64, 96) if arch in STATIC_SIZE_ONLY else (96, 160)
    for other in (x, _input(arch, batch=3, size=other_size)):
        (out,) = session.run(None, {"images": other.numpy()})
        _close(out, _eager(model, other), atol=1e-4)
