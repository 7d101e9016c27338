"""Issue 17 item 4: predict_padded crops at the model's mask_scale, the same rule forward uses when it pads."""
import math

import pytest
import torch

import smp_like as smp
from smp_like.base.strides import crop_to_shape, pad_to_stride


def _fpn_x8():
    return smp.FPN("resnet18", encoder_weights=None, encoder_depth=3, upsampling=8,
                   decoder_pyramid_channels=16, decoder_segmentation_channels=32)


def _deeplab_x4():
    return smp.DeepLabV3("resnet18", encoder_weights=None, encoder_depth=3, upsampling=4, decoder_channels=16)


@pytest.mark.parametrize("build", [_fpn_x8, _deeplab_x4], ids=["FPN-upsampling8", "DeepLabV3-upsampling4"])
@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_predict_padded_covers_the_whole_input_at_mask_scale(build, mode):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(1, 3, 30, 26)
    scale = model.mask_scale
    out = model.predict_padded(x, mode=mode)
    expected_size = tuple(math.ceil(s * scale) for s in x.shape[2:])
    assert tuple(out.shape[2:]) == expected_size
    # Independent reference: pad by hand to the stride, run the model in strict mode, crop by hand.
    model.set_input_padding(None)
    padded, _ = pad_to_stride(x, model.input_stride, mode=mode)
    with torch.no_grad():
        full = model(padded)
    assert tuple(full.shape[2:]) == tuple(int(p * scale) for p in padded.shape[2:])
    torch.testing.assert_close(out, crop_to_shape(full, expected_size))


def test_predict_padded_matches_forward_padding():
    torch.manual_seed(0)
    model = _fpn_x8().eval()
    x = torch.randn(2, 3, 20, 36)
    torch.testing.assert_close(model.predict_padded(x), model.predict(x))


def test_predict_padded_rejects_unknown_mode():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        _deeplab_x4().predict_padded(torch.randn(1, 3, 32, 32), mode="mirror")
