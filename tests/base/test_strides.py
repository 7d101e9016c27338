"""pad_to_stride / crop_to_shape and the SMP-style strict input check."""

import pytest
import torch

import smp_like as smp
from smp_like.base.strides import padding_for_stride


@pytest.mark.parametrize("shape, stride", [((1, 3, 37, 41), 32), ((2, 1, 16, 16), 16), ((1, 2, 9, 20, 15), 8),
                                           ((1, 1, 5, 7), (4, 8))])
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_then_crop_round_trip(shape, stride, mode):
    x = torch.randn(*shape)
    padded, original = smp.pad_to_stride(x, stride, mode=mode)
    strides = stride if isinstance(stride, tuple) else (stride,) * (x.dim() - 2)
    assert all(s % k == 0 for s, k in zip(padded.shape[2:], strides))
    assert all(0 <= p - s < k for p, s, k in zip(padded.shape[2:], shape[2:], strides))
    assert original == tuple(shape[2:])
    torch.testing.assert_close(smp.crop_to_shape(padded, original), x)


def test_padding_values():
    assert padding_for_stride((37, 41), 32) == (27, 23)
    assert padding_for_stride((64, 64), 32) == (0, 0)
    x = torch.ones(1, 1, 3, 3)
    padded, _ = smp.pad_to_stride(x, 4, value=-1.0)
    assert padded[0, 0, 3].eq(-1).all() and padded[0, 0, :3, :3].eq(1).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        smp.pad_to_stride(torch.ones(1, 1, 3, 3), 4, mode="wrap")
    with pytest.raises(ValueError, match="stride"):
        smp.pad_to_stride(torch.ones(1, 1, 3, 3), (4, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        smp.pad_to_stride(torch.ones(3, 3), 4)
    with pytest.raises(ValueError, match="cannot crop"):
        smp.crop_to_shape(torch.ones(1, 1, 3, 3), (4, 4))


def test_strict_models_say_what_to_pad_to():
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8)).eval()
    model.requires_divisible_input_shape = True  # as the architectures whose decoders need it
    model.set_input_padding(None)
    with pytest.raises(ValueError, match=r"Wrong input shape \(37, 41\).*divisible by the output stride 8.*\(40, 48\)"):
        model(torch.randn(1, 3, 37, 41))
    out = model.predict_padded(torch.randn(1, 3, 37, 41))
    assert out.shape == (1, 1, 37, 41)


@pytest.mark.parametrize("mode", ["constant", "replicate", "reflect"])
def test_padding_models_accept_any_size_and_match_manual_padding(mode):
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8)).eval()
    model.requires_divisible_input_shape = True
    model.set_input_padding(mode)
    x = torch.randn(1, 3, 37, 41)
    with torch.no_grad():
        out = model(x)
        padded, shape = smp.pad_to_stride(x, 8, mode=mode)
        model.set_input_padding(None)
        manual = smp.crop_to_shape(model(padded), shape)
    assert out.shape == (1, 1, 37, 41)
    torch.testing.assert_close(out, manual)


def test_bad_input_padding():
    model = smp.Unet("resnet18", encoder_weights=None)
    with pytest.raises(ValueError, match=r"input_padding.*'zeros'"):
        model.set_input_padding("zeros")
