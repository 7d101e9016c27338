"""VGG family: feature-0 convention, odd sizes against SMP, 3D (odd volumes, anisotropic strides, inflation,
Unet) and bad input. Features for every name, depth 5/3 and in_channels 1/3/4 are in
test_encoder_catalogue_smp.py."""

import warnings

import pytest
import torch
from encoder_testing import THICK_SLICES, assert_sizes_follow_reductions, random_bn_statistics

import smp_like
from smp_like.encoders import get_encoder
from smp_like.encoders._utils import inflate_state_dict


def run(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


def test_feature0_is_the_first_block_not_the_input():
    encoder = get_encoder("vgg11", in_channels=1, depth=2)
    assert encoder.out_channels == (64, 128, 256)
    x = torch.randn(1, 1, 32, 32)
    features = run(encoder, x)
    assert features[0].shape == (1, 64, 32, 32)
    torch.testing.assert_close(features[0], encoder.features[1](encoder.features[0](x)))
    assert encoder.reductions == (1, 2, 4)


@pytest.mark.conformance
@pytest.mark.parametrize("name", ["vgg11", "vgg13_bn"])
def test_odd_input_matches_smp(name):
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smp_oracle.encoders.get_encoder(name, weights=None)
    random_bn_statistics(theirs)
    ours = get_encoder(name)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 45, 51)
    for a, b in zip(run(ours, x), run(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("depth", [5, 2])
def test_3d_odd_volume(depth):
    encoder = get_encoder("vgg11_bn", spatial_dims=3, depth=depth, in_channels=2)
    assert encoder.spatial_dims == 3
    x = torch.randn(1, 2, 33, 37, 41)
    features = run(encoder, x)
    assert len(features) == depth + 1
    assert encoder.reductions == (1, 2, 4, 8, 16, 32)[: depth + 1]
    assert_sizes_follow_reductions(encoder, x, features)


def test_3d_anisotropic_strides():
    encoder = get_encoder("vgg11", spatial_dims=3, strides=THICK_SLICES)
    assert encoder.reductions == ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    x = torch.randn(1, 3, 9, 33, 35)
    features = run(encoder, x)
    assert features[2].shape[2:] == (9, 8, 8)
    assert_sizes_follow_reductions(encoder, x, features)


def test_inflated_stem_gives_2d_response_on_constant_depth():
    torch.manual_seed(0)
    enc2d = get_encoder("vgg11_bn").eval()
    random_bn_statistics(enc2d, seed=1)
    enc3d = get_encoder("vgg11_bn", spatial_dims=3).eval()
    enc3d.load_state_dict(inflate_state_dict(enc2d.state_dict(), enc3d), strict=True)
    image = torch.randn(1, 3, 24, 24)
    depth = 8
    volume = image.unsqueeze(2).repeat(1, 1, depth, 1, 1)
    with torch.no_grad():
        out2d = enc2d.features[:3](image)  # conv, batch norm, ReLU
        out3d = enc3d.features[:3](volume)
    assert out2d.abs().max() > 0
    # A 3-deep kernel with padding 1 sees only identical slices away from the first and last slice.
    for j in range(1, depth - 1):
        torch.testing.assert_close(out3d[:, :, j], out2d, rtol=0, atol=1e-5)


def test_3d_unet_keeps_odd_size():
    model = smp_like.Unet("vgg11", spatial_dims=3, encoder_weights=None, in_channels=1, classes=2)
    x = torch.randn(1, 1, 33, 35, 37)
    with torch.no_grad():
        assert model.eval()(x).shape == (1, 2, 33, 35, 37)


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth.*1\.\.5"):
        get_encoder("vgg16", depth=depth)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilation_refused(output_stride):
    with pytest.raises(ValueError, match=rf"output_stride.*{output_stride}.*max-pool"):
        get_encoder("vgg11", output_stride=output_stride)


@pytest.mark.conformance
def test_smp_refuses_dilation_too():
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    with pytest.raises(ValueError):
        smp_oracle.encoders.get_encoder("vgg11", weights=None, output_stride=16)


def test_unknown_weights_tag():
    with pytest.raises(ValueError, match=r"encoder_weights.*'instagram'.*imagenet"):
        get_encoder("vgg11", weights="instagram")


def test_too_small_input_is_a_clear_error():
    encoder = get_encoder("vgg11", depth=3)
    run(encoder, torch.randn(1, 3, 8, 9))  # 8 = 2 ** 3 is just enough
    with pytest.raises(ValueError, match=r"too small.*\(8, 8\)"):
        run(encoder, torch.randn(1, 3, 7, 9))


def test_bad_strides():
    with pytest.raises(ValueError, match="strides"):
        get_encoder("vgg11", spatial_dims=3, strides=[2, 2, 2])
    with pytest.raises(ValueError, match="strides"):
        get_encoder("vgg11", spatial_dims=3, strides=[(1, 2), 2, 2, 2, 2])


def test_time_embedding_refused():
    encoder = get_encoder("vgg11", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 8, 8), time_emb=torch.randn(1, 4))
