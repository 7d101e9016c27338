"""DenseNet family: odd sizes against SMP, 3D (odd volumes, anisotropic strides, inflation, Unet), minimum
input size and bad input. Features for every name, depth 5/3 and in_channels 1/3/4 are in
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


@pytest.mark.conformance
def test_odd_input_matches_smp():
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smp_oracle.encoders.get_encoder("densenet121", weights=None, depth=4)
    random_bn_statistics(theirs)
    ours = get_encoder("densenet121", depth=4)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 45, 51)
    for a, b in zip(run(ours, x), run(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))


def test_3d_odd_volume_depth5():
    encoder = get_encoder("densenet121", spatial_dims=3, in_channels=1)
    assert encoder.spatial_dims == 3 and encoder.out_channels == (1, 64, 256, 512, 1024, 1024)
    x = torch.randn(1, 1, 29, 37, 41)
    features = run(encoder, x)
    assert encoder.reductions == (1, 2, 4, 8, 16, 32)
    assert_sizes_follow_reductions(encoder, x, features)


def test_3d_anisotropic_strides():
    encoder = get_encoder("densenet121", spatial_dims=3, strides=THICK_SLICES)
    assert encoder.reductions == ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    x = torch.randn(1, 3, 9, 33, 35)
    features = run(encoder, x)
    assert features[2].shape[2:] == (9, 9, 9)
    assert_sizes_follow_reductions(encoder, x, features)


def test_inflated_stem_gives_2d_response_on_constant_depth():
    torch.manual_seed(0)
    enc2d = get_encoder("densenet121", depth=1).eval()
    random_bn_statistics(enc2d, seed=1)
    enc3d = get_encoder("densenet121", depth=1, spatial_dims=3).eval()
    enc3d.load_state_dict(inflate_state_dict(enc2d.state_dict(), enc3d), strict=True)
    image = torch.randn(1, 3, 24, 24)
    depth = 16
    volume = image.unsqueeze(2).repeat(1, 1, depth, 1, 1)
    out2d = run(enc2d, image)[1]  # feature 1 = relu0(norm0(conv0(x))): the stem
    out3d = run(enc3d, volume)[1]
    assert out2d.abs().max() > 0
    # Output slice j of the 7-deep, stride-2, padding-3 conv reads input slices 2j-3 .. 2j+3.
    interior = [j for j in range(out3d.shape[2]) if 2 * j - 3 >= 0 and 2 * j + 3 <= depth - 1]
    assert interior == [2, 3, 4, 5, 6]
    for j in interior:
        torch.testing.assert_close(out3d[:, :, j], out2d, rtol=0, atol=1e-5)


def test_3d_unet_keeps_odd_size():
    model = smp_like.Unet("densenet121", spatial_dims=3, encoder_weights=None, in_channels=1, classes=2)
    x = torch.randn(1, 1, 29, 33, 35)
    with torch.no_grad():
        assert model.eval()(x).shape == (1, 2, 29, 33, 35)


def test_minimum_input_size():
    # Stem rounds up, transitions round down: depth 5 needs 32 - 4 + 1 = 29 per axis.
    encoder = get_encoder("densenet121")
    assert run(encoder, torch.randn(1, 3, 29, 29))[-1].shape[2:] == (1, 1)
    with pytest.raises(ValueError, match=r"too small.*\(29, 29\)"):
        run(encoder, torch.randn(1, 3, 28, 40))


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth.*1\.\.5"):
        get_encoder("densenet121", depth=depth)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilation_refused(output_stride):
    with pytest.raises(ValueError, match=rf"output_stride.*{output_stride}.*pooling"):
        get_encoder("densenet121", output_stride=output_stride, depth=1)


@pytest.mark.conformance
def test_smp_refuses_dilation_too():
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    with pytest.raises(ValueError):
        smp_oracle.encoders.get_encoder("densenet121", weights=None, output_stride=16)


def test_unknown_weights_tag():
    with pytest.raises(ValueError, match=r"encoder_weights.*'ssl'.*imagenet"):
        get_encoder("densenet161", weights="ssl")


def test_time_embedding_refused():
    encoder = get_encoder("densenet121", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 8, 8), time_emb=torch.randn(1, 4))
