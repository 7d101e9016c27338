"""torch.compile(fullgraph=True) and torch.export of Unet-resnet18 match eager outputs."""

import pytest
import torch

import smp_like as smp


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
    return model, x, expected


def assert_close_outputs(actual, expected, atol):
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_compile_fullgraph(model_and_input, backend):
    model, x, expected = model_and_input
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():
        actual = compiled(x)
    # Inductor fuses and reorders float ops: agreement to float32 round-off, not bit equality.
    assert_close_outputs(actual, expected, atol=1e-4 if backend == "inductor" else 1e-6)


def test_export(model_and_input):
    model, x, expected = model_and_input
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        actual = program.module()(x)
    assert_close_outputs(actual, expected, atol=1e-6)


def test_export_dynamic_batch_and_size(model_and_input):
    model, x, _ = model_and_input
    batch = torch.export.Dim("batch", min=1, max=8)
    # Above 32 px the deepest (stride-32) feature has more than one element, which the graph relies on.
    height = torch.export.Dim("height", min=33, max=512)
    width = torch.export.Dim("width", min=33, max=512)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch, 2: height, 3: width},))
    other = torch.randn(3, 3, 80, 48)
    with torch.no_grad():
        assert_close_outputs(program.module()(other), model(other), atol=1e-5)
