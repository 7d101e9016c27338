"""Exports of every architecture, each checked numerically against eager outputs.

- torch.compile(fullgraph=True) for all (aot_eager here; inductor for all in the slow set, for Unet always);
- torch.export with dynamic batch/height/width for all, at sizes the example input did not have;
- ONNX, run with onnxruntime: opset 18 with dynamic batch/height/width and the any-size padding inside the graph
  for all; opset 17 (dynamic batch, height and width in multiples of the stride: ``input_padding=None``) for all
  but DPT, whose timm position-embedding resampling needs Resize-18's antialiasing;
- torch.jit.script for all but UnetPlusPlus (as in SMP) and DPT (timm's ViT does not script).

README.md and docs/models.md carry the table these tests keep honest.
"""

import onnx
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


# PAN's pyramid attention pools its stride-16 feature three times: inputs of at least 256 px (padded below).
MIN_EXPORT_SIZE = {"PAN": 256}


def _input(arch, batch=2, size=(64, 96)):
    extra = MIN_EXPORT_SIZE.get(arch, 64) - 64
    generator = torch.Generator().manual_seed(batch * 1000 + size[0])
    return torch.randn(batch, 3, *(s + extra for s in size), generator=generator)


# Exported graphs run other kernels (contiguous instead of channels-last maps, onnxruntime's convolutions), so
# agreement is to float32 round-off accumulated through the network; PAN multiplies its pyramid attention maps
# into the features, which amplifies it most.
ONNX_ATOL = {"PAN": 1e-3}


def _dynamic_shapes(arch):
    # Below the minimum a branch (pad up to it) would be taken, and DPT's stride-16 token grid at 32 px has a
    # pooled level of one pixel: an exported graph covers sizes from the minimum up.
    low = MIN_EXPORT_SIZE.get(arch, 64)
    return ({0: torch.export.Dim("batch", min=1, max=8), 2: torch.export.Dim("height", min=low, max=512),
             3: torch.export.Dim("width", min=low, max=512)},)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_compile_fullgraph(arch):
    model = build(arch, classes=2, aux_params=dict(classes=3, dropout=None))
    x = _input(arch)
    torch._dynamo.reset()
    # aot_eager captures the whole graph (fullgraph) and runs AOTAutograd without inductor's C++ compile; the
    # inductor backend itself is exercised for Unet in test_unet_export.py and for all in the slow set.
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    _close(_eager(compiled, x), _eager(model, x), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_compile_inductor(arch):
    model = build(arch, classes=2)
    x = _input(arch)
    torch._dynamo.reset()
    _close(_eager(torch.compile(model, fullgraph=True), x), _eager(model, x), atol=1e-4)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_torch_export_dynamic(arch):
    model = build(arch, classes=2, aux_params=dict(classes=3, dropout=None))
    program = torch.export.export(model, (_input(arch),), dynamic_shapes=_dynamic_shapes(arch))
    for other in (_input(arch, batch=3, size=(97, 161)), _input(arch, batch=1, size=(64, 64))):
        _close(program.module()(other), _eager(model, other), atol=5e-5)


def _run_onnx(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": x.numpy()})
    return out


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_onnx_opset18_any_size(arch, tmp_path):
    model = build(arch, classes=2)
    path = tmp_path / f"{arch}.onnx"
    torch.onnx.export(model, (_input(arch),), str(path), opset_version=18, dynamo=True,
                      dynamic_shapes=_dynamic_shapes(arch), input_names=["images"], output_names=["masks"],
                      verbose=False)
    assert onnx.load(str(path)).opset_import[0].version == 18
    # Odd sizes: the padding to the stride and the crop back run inside the ONNX graph.
    for other in (_input(arch), _input(arch, batch=3, size=(97, 161))):
        _close(_run_onnx(path, other), _eager(model, other), atol=ONNX_ATOL.get(arch, 3e-4))


@pytest.mark.parametrize("arch", [a for a in ALL_ARCHS if a != "DPT"])
def test_onnx_opset17_strict_sizes(arch, tmp_path):
    # Opset 17 has no Pad-18 (the exporter's only Pad) nor a converter for it: with input_padding=None the graph
    # has no padding, and sizes are multiples of the stride, as SMP requires.
    # Unet needs no padding for any size; the others run in SMP's strict mode.
    model = build(arch, classes=2) if arch == "Unet" else build(arch, classes=2, input_padding=None)
    stride = model.output_stride
    low = -(-MIN_EXPORT_SIZE.get(arch, 64) // stride)
    height = stride * torch.export.Dim("height_blocks", min=low, max=512 // stride)
    width = stride * torch.export.Dim("width_blocks", min=low, max=512 // stride)
    shapes = ({0: torch.export.Dim("batch", min=1, max=8), 2: height, 3: width},)
    path = tmp_path / f"{arch}.onnx"
    torch.onnx.export(model, (_input(arch),), str(path), opset_version=17, dynamo=True, dynamic_shapes=shapes,
                      input_names=["images"], output_names=["masks"], verbose=False)
    assert onnx.load(str(path)).opset_import[0].version == 17
    base = MIN_EXPORT_SIZE.get(arch, 64)
    other = torch.randn(3, 3, base + 2 * stride, base + 5 * stride, generator=torch.Generator().manual_seed(7))
    _close(_run_onnx(path, other), _eager(model, other), atol=ONNX_ATOL.get(arch, 3e-4))


SCRIPTABLE = [a for a in ALL_ARCHS if a not in ("UnetPlusPlus", "DPT")]


@pytest.mark.parametrize("arch", SCRIPTABLE)
def test_jit_script(arch):
    model = build(arch, classes=2, aux_params=dict(classes=3, dropout=None))
    scripted = torch.jit.script(model)
    # Any size: the scripted forward pads to the stride and crops back like the eager one.
    x = _input(arch, size=(65, 97))
    _close(_eager(scripted, x), _eager(model, x), atol=1e-6)


def test_jit_script_3d_with_replicate_padding():
    model = build("FPN", classes=2, spatial_dims=3, input_padding="replicate")
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 33, 35, 37)
    _close(_eager(scripted, x), _eager(model, x), atol=1e-6)
