"""tu-<timm model>: reduction patterns, NHWC handling, tags, errors; SMP parity of keys and features."""

import pytest
import segmentation_models_pytorch as smp_oracle
import torch

from smp_like.encoders import get_encoder
from smp_like.encoders.timm_universal import TimmUniversalEncoder, resolve_timm_name


def _features(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


@pytest.mark.conformance
@pytest.mark.parametrize("depth", [3, 5])
@pytest.mark.parametrize("name", ["tu-test_resnet", "tu-test_convnext", "tu-test_mambaout", "tu-test_efficientnet"])
def test_matches_smp(name, depth):
    theirs = smp_oracle.encoders.get_encoder(name, depth=depth, weights=None)
    ours = get_encoder(name, depth=depth, weights=None)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.out_channels) == list(theirs.out_channels)
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(_features(ours, x), _features(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_transformer_style_gets_zero_channel_placeholder():
    encoder = get_encoder("tu-test_convnext", depth=4, weights=None)
    features = _features(encoder, torch.randn(1, 3, 64, 64))
    assert encoder.out_channels[1] == 0
    assert features[1].shape == (1, 0, 32, 32)
    assert encoder.reductions == (1, 2, 4, 8, 16)


def test_nhwc_model_is_returned_channels_first():
    encoder = get_encoder("tu-test_mambaout", depth=5, weights=None)
    assert encoder._channels_last
    raw = encoder.model(torch.randn(1, 3, 64, 64))
    assert raw[0].shape[-1] == encoder.out_channels[2]  # timm gives NHWC ...
    features = _features(encoder, torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == list(encoder.out_channels)  # ... we give NCHW


def test_vgg_style_uses_models_own_stride_one_feature():
    with torch.device("meta"):
        ours = get_encoder("tu-vgg11", depth=5, weights=None)
        theirs = smp_oracle.encoders.get_encoder("tu-vgg11", depth=5, weights=None)
        features = ours(torch.randn(1, 3, 64, 64))
    assert ours.reductions == (1, 2, 4, 8, 16, 32)
    assert list(ours.out_channels) == list(theirs.out_channels) and ours.out_channels[0] == 64
    assert [f.shape[1] for f in features] == list(ours.out_channels)
    assert list(ours.state_dict()) == list(theirs.state_dict())



def test_depth_deeper_than_model():
    with pytest.raises(ValueError, match="depth"):
        get_encoder("tu-test_resnet", depth=6, weights=None)


def test_3d_refused_with_clear_message():
    with pytest.raises(ValueError, match=r"2D only.*spatial_dims=3"):
        get_encoder("tu-test_resnet", spatial_dims=3)


def test_tags():
    assert resolve_timm_name("test_resnet", None) == "test_resnet"
    assert resolve_timm_name("test_resnet", "imagenet") == "test_resnet"
    assert resolve_timm_name("test_resnet", "r160_in1k") == "test_resnet.r160_in1k"
    assert resolve_timm_name("test_resnet.r160_in1k", "imagenet") == "test_resnet.r160_in1k"
    with pytest.raises(ValueError, match=r"available tags: \['imagenet', 'r160_in1k'\]"):
        resolve_timm_name("test_resnet", "in22k")
    with pytest.raises(ValueError, match="conflicts"):
        resolve_timm_name("test_resnet.r160_in1k", "other")
    with pytest.raises(ValueError, match="Unknown timm model"):
        resolve_timm_name("no_such_model_xyz", None)


def test_in_channels_and_output_stride_at_construction():
    encoder = get_encoder("tu-test_resnet", in_channels=5, output_stride=16, weights=None)
    features = _features(encoder, torch.randn(1, 5, 64, 64))
    assert encoder.in_channels == 5 and encoder.output_stride == 16
    assert features[-1].shape[-1] == 4
    assert isinstance(encoder, TimmUniversalEncoder)
