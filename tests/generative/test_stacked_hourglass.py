"""StackedHourglass: per-stack shapes, intermediate supervision, Newell's re-injection, save/load, stride checks."""

import math

import pytest
import torch

import smp_like
from smp_like.decoders.hourglass.decoder import StackReinjection, plan_strides
from smp_like.decoders.hourglass.model import StackedHourglass

ENCODERS = ["resnet18", "tu-test_resnet"]


def small(encoder_name: str = "resnet18", output_stride: int = 2, **kwargs) -> StackedHourglass:
    kwargs.setdefault("encoder_depth", 3)
    kwargs.setdefault("num_stacks", 2)
    n_blocks = {1: 3, 2: 2, 4: 1}[output_stride]
    kwargs.setdefault("decoder_channels", (8, 8, 4)[3 - n_blocks :])
    return StackedHourglass(encoder_name=encoder_name, output_stride=output_stride, **kwargs)


@pytest.mark.parametrize("encoder_name", ENCODERS)
@pytest.mark.parametrize("output_stride", [1, 2, 4])
def test_per_stack_shapes_any_size(encoder_name, output_stride):
    torch.manual_seed(0)
    model = small(encoder_name, output_stride, num_stacks=3, classes=5)
    size = (20, 26)  # not multiples of the maximum stride 8: padded inside forward, cropped back
    outputs = model(torch.randn(2, 3, *size))
    assert isinstance(outputs, list) and len(outputs) == 3
    expected = tuple(math.ceil(s / output_stride) for s in size)
    assert all(o.shape == (2, 5, *expected) for o in outputs)
    assert model.output_stride == output_stride and model.input_stride == 8
    model.eval()
    last = model(torch.randn(2, 3, *size))
    assert isinstance(last, torch.Tensor) and last.shape == (2, 5, *expected)


def test_3d_shapes():
    model = small("resnet18", output_stride=2, spatial_dims=3, classes=2)
    outputs = model(torch.randn(2, 3, 8, 16, 8))
    assert [o.shape for o in outputs] == [(2, 2, 4, 8, 4)] * 2


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_intermediate_supervision_reaches_first_stack(encoder_name):
    torch.manual_seed(0)
    model = small(encoder_name, num_stacks=3, classes=2)
    x = torch.randn(2, 3, 16, 16)
    target = torch.rand(2, 2, 8, 8)
    # Only the first stack's loss: its gradient must reach the stack-1 encoder and nothing after stack 1.
    outputs = model(x)
    torch.nn.functional.mse_loss(outputs[0], target).backward()
    first_conv = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.stack_encoders.parameters())
    model.zero_grad(set_to_none=True)
    # Intermediate supervision: the sum of every stack's loss trains every stack.
    loss = sum(torch.nn.functional.mse_loss(o, target) for o in model(x))
    loss.backward()
    assert first_conv.weight.grad.abs().sum() > 0
    for head in model.segmentation_head:
        assert head[0].weight.grad.abs().sum() > 0
    for encoder in model.stack_encoders:
        conv = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.grad.abs().sum() > 0


def test_reinjection_is_newell_fig4():
    torch.manual_seed(0)
    block = StackReinjection(channels=3, classes=2)
    x, h, y = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 5), torch.randn(1, 2, 4, 5)
    # x + F h + G y with 1x1 convs written as per-pixel matrix products.
    f_w, f_b = block.features.weight[:, :, 0, 0], block.features.bias
    g_w, g_b = block.predictions.weight[:, :, 0, 0], block.predictions.bias
    expected = (
        x
        + torch.einsum("oc,nchw->nohw", f_w, h) + f_b[None, :, None, None]
        + torch.einsum("oc,nchw->nohw", g_w, y) + g_b[None, :, None, None]
    )
    torch.testing.assert_close(block(x, h, y), expected)


def test_stacks_chain_through_reinjection():
    torch.manual_seed(0)
    model = small("resnet18", num_stacks=2).eval()
    x = torch.randn(2, 3, 16, 16)
    # Recompute the second stack by hand from the first stack's modules.
    h1 = model.decoder(model.encoder(x))
    y1 = model.segmentation_head[0](h1)
    x2 = h1 + model.reinjections[0].features(h1) + model.reinjections[0].predictions(y1)
    y2 = model.segmentation_head[1](model.stack_decoders[0](model.stack_encoders[0](x2)))
    torch.testing.assert_close(model(x), y2)


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_save_load_identical(tmp_path, encoder_name):
    torch.manual_seed(0)
    model = small(encoder_name, num_stacks=2, classes=3, activation="sigmoid").eval()
    x = torch.randn(2, 3, 16, 24)
    expected = model(x)
    model.save_pretrained(tmp_path)
    for loaded in (StackedHourglass.from_pretrained(tmp_path), smp_like.from_pretrained(tmp_path)):
        assert type(loaded) is StackedHourglass
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        loaded.train()
        assert len(loaded(x)) == 2


def test_plan_strides_golden():
    assert plan_strides((1, 2, 4, 8, 16, 32), 4) == (2, 32)
    assert plan_strides((1, 2, 4, 8), 1) == (0, 8)
    # Encoders whose first stage keeps the size (repeated stride): the first index of the stride is used.
    assert plan_strides((1, 1, 2, 4), 2) == (2, 4)


@pytest.mark.parametrize(
    "output_stride, match",
    [(3, r"must be one of \[1, 2, 4\]"), (8, r"must be one of \[1, 2, 4\]"), (0, "positive int"), (True, "positive int")],
)
def test_output_stride_errors(output_stride, match):
    with pytest.raises(ValueError, match=match):
        StackedHourglass(encoder_name="resnet18", encoder_depth=3, output_stride=output_stride)


def test_other_stride_errors():
    with pytest.raises(ValueError, match="anisotropic"):
        plan_strides((1, (1, 2, 2), (2, 4, 4)), 1)
    with pytest.raises(ValueError, match="decoder_channels"):
        StackedHourglass(encoder_name="resnet18", encoder_depth=3, output_stride=2, decoder_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="num_stacks"):
        small(num_stacks=0)
    model = small("resnet18", output_stride=2, input_padding=None)
    with pytest.raises(ValueError, match=r"Pad the input to \(16, 24\)"):
        model(torch.randn(2, 3, 12, 20))
    assert model(torch.randn(2, 3, 16, 24))[0].shape == (2, 1, 8, 12)
