"""timm-sk* encoders (Li et al. 2019, SKNet): what the generic SMP test does not cover.

Dilation (output stride 16 / 8) and shallow depths against SMP, key order on the meta device, a Hub file with
the classifier still in it, and clear errors for bad input.
"""


import pytest
import torch
from encoder_testing import smp_encoder
from safetensors.torch import save

import smp_like
from smp_like.encoders import get_encoder

smp_oracle = pytest.importorskip("segmentation_models_pytorch")
pytestmark = pytest.mark.conformance

NAMES = ["timm-skresnet18", "timm-skresnet34", "timm-skresnext50_32x4d"]


def with_bn_statistics(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    return module


def assert_same_features(ours, theirs, x):
    with torch.no_grad():
        got, expected = ours.eval()(x), theirs.eval()(x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize(
    "name, depth, output_stride",
    [
        ("timm-skresnet18", 5, 16),
        ("timm-skresnet18", 5, 8),
        ("timm-skresnext50_32x4d", 5, 8),
        ("timm-skresnet18", 1, 32),
        ("timm-skresnet18", 2, 32),
        ("timm-skresnet18", 4, 16),
    ],
)
def test_dilation_and_shallow_depths_match_smp(name, depth, output_stride):
    theirs = with_bn_statistics(smp_encoder(name, depth=depth, output_stride=output_stride))
    ours = get_encoder(name, depth=depth, output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert tuple(ours.out_channels) == tuple(theirs.out_channels)
    assert ours.reductions[-1] == min(2**depth, output_stride)
    x = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    assert_same_features(ours, theirs, x)


def test_state_dict_keys_and_shapes_equal_smp_on_meta():
    for name in NAMES:
        with torch.device("meta"):
            theirs = smp_encoder(name).state_dict()
            ours = get_encoder(name).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


def test_unet_matches_smp():
    theirs = with_bn_statistics(smp_oracle.Unet("timm-skresnet18", encoder_weights=None, classes=2))
    ours = smp_like.Unet("timm-skresnet18", encoder_weights=None, classes=2)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=1e-5)


def test_hub_file_with_classifier_loads(hub_env):
    """A checkpoint that still holds the ImageNet classifier (fc) loads: the encoder drops those keys."""
    setting = smp_oracle.encoders.encoders["timm-skresnet18"]["pretrained_settings"]["imagenet"]
    source = with_bn_statistics(smp_encoder("timm-skresnet18"), seed=1)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state.update({"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])
    ours = get_encoder("timm-skresnet18", weights="imagenet", in_channels=1)
    assert ours.conv1.in_channels == 1
    # One grey channel = the RGB model seeing three equal channels (pretrained stems are summed over RGB).
    grey = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        expected = source.eval()(grey.repeat(1, 3, 1, 1))
        got = ours.eval()(grey)
    for a, b in zip(got[1:], expected[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("depth", [0, 6, 2.0])
def test_bad_depth_is_refused(depth):
    with pytest.raises(ValueError, match="depth"):
        get_encoder("timm-skresnet18", depth=depth)


def test_bad_output_stride_weights_and_spatial_dims_are_refused():
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("timm-skresnet18", output_stride=4)
    with pytest.raises(ValueError, match="encoder_weights"):
        get_encoder("timm-skresnet18", weights="instagram")
    with pytest.raises(ValueError, match="spatial_dims"):
        get_encoder("timm-skresnet34", spatial_dims=3)
    with pytest.raises(ValueError, match="time embedding"):
        get_encoder("timm-skresnet18", depth=1)(torch.randn(1, 3, 32, 32), time_emb=torch.zeros(1, 4))
