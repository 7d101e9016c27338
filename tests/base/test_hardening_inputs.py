"""Issue 17 item 6: the shared input check names a wrong dtype; a batch of one meeting BatchNorm on a 1x1 map in
training says why, as SMP's DeepLabV3 does."""
import pytest
import torch

import smp_like as smp
from smp_like.base.checks import check_image_batch


def _unet():
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8)).eval()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_non_floating_input_is_refused_naming_the_dtype(dtype):
    with pytest.raises(TypeError, match=rf"floating dtype .*got {dtype}"):
        _unet()(torch.zeros(1, 3, 16, 16, dtype=dtype))


def test_float_input_of_another_precision_than_the_weights_is_refused():
    model = _unet()
    with pytest.raises(TypeError, match=r"dtype torch.float64 but the model's weights are torch.float32"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.float64))
    # Matching dtypes, and autocast (which casts), still run.
    assert model.double()(torch.zeros(1, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.float()(torch.zeros(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_shared_check_can_allow_integer_masks():
    check_image_batch(torch.zeros(1, 2, 4, 4, dtype=torch.long), 2, 2, name="masks", floating=False)
    with pytest.raises(TypeError, match="masks must have a floating dtype"):
        check_image_batch(torch.zeros(1, 2, 4, 4, dtype=torch.long), 2, 2, name="masks")


@pytest.mark.parametrize("build", [
    lambda: smp.PAN("resnet18", encoder_weights=None, decoder_channels=16),
    lambda: smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8)),
], ids=["PAN", "Unet"])
def test_batch_of_one_meeting_batchnorm_on_1x1_names_the_cause(build):
    model = build().train()
    size = 32 if isinstance(model, smp.PAN) else 8
    x = torch.randn(1, 3, size, size)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*batch of 1.*1x1 feature map.*model\.eval\(\)"):
        model(x)
    assert model.eval()(x).shape[0] == 1  # inference on one sample is fine
