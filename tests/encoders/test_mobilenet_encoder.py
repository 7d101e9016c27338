"""MobileNetV2: dilation and odd sizes against SMP, 3D (odd volumes, anisotropic strides, inflation of the
stem and of depthwise kernels through the loopback Hub, dilation, Unet) and bad input. Features for depth 5/3
and in_channels 1/3/4 are in test_encoder_catalogue_smp.py."""

import warnings

import pytest
import torch
from encoder_testing import THICK_SLICES, assert_sizes_follow_reductions, random_bn_statistics
from safetensors.torch import save

import smp_like
from smp_like.encoders import encoders, get_encoder
from smp_like.encoders._utils import inflate_state_dict


def run(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


@pytest.mark.conformance
@pytest.mark.parametrize("output_stride, size", [(16, 64), (8, 64), (32, 45)])
def test_dilation_and_odd_sizes_match_smp(output_stride, size):
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smp_oracle.encoders.get_encoder("mobilenet_v2", weights=None, output_stride=output_stride)
    random_bn_statistics(theirs)
    ours = get_encoder("mobilenet_v2", output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.output_stride == output_stride
    x = torch.randn(1, 3, size, size + 6)
    features = run(ours, x)
    for a, b in zip(features, run(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))
    assert_sizes_follow_reductions(ours, x, features)


def test_3d_odd_volume_depth5():
    encoder = get_encoder("mobilenet_v2", spatial_dims=3, in_channels=4)
    assert encoder.spatial_dims == 3 and encoder.out_channels == (4, 16, 24, 32, 96, 1280)
    x = torch.randn(1, 4, 19, 37, 41)
    features = run(encoder, x)
    assert encoder.reductions == (1, 2, 4, 8, 16, 32)
    assert_sizes_follow_reductions(encoder, x, features)


def test_3d_anisotropic_strides():
    encoder = get_encoder("mobilenet_v2", spatial_dims=3, strides=THICK_SLICES)
    assert encoder.reductions == ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    x = torch.randn(1, 3, 9, 33, 35)
    features = run(encoder, x)
    assert features[2].shape[2:] == (9, 9, 9)
    assert_sizes_follow_reductions(encoder, x, features)


def test_3d_dilation():
    encoder = get_encoder("mobilenet_v2", spatial_dims=3, output_stride=8)
    assert encoder.reductions == (1, 2, 4, 8, 8, 8)
    x = torch.randn(1, 3, 17, 19, 21)
    features = run(encoder, x)
    assert features[3].shape[2:] == features[4].shape[2:] == features[5].shape[2:] == (3, 3, 3)


def test_inflated_stem_gives_2d_response_on_constant_depth():
    torch.manual_seed(0)
    enc2d = get_encoder("mobilenet_v2", depth=1).eval()
    random_bn_statistics(enc2d, seed=1)
    enc3d = get_encoder("mobilenet_v2", depth=1, spatial_dims=3).eval()
    enc3d.load_state_dict(inflate_state_dict(enc2d.state_dict(), enc3d), strict=True)
    image = torch.randn(1, 3, 24, 24)
    depth = 12
    volume = image.unsqueeze(2).repeat(1, 1, depth, 1, 1)
    with torch.no_grad():
        out2d = enc2d.features[0](image)  # conv, batch norm, ReLU6
        out3d = enc3d.features[0](volume)
    assert out2d.abs().max() > 0
    # Output slice j of the 3-deep, stride-2, padding-1 conv reads input slices 2j-1 .. 2j+1.
    interior = [j for j in range(out3d.shape[2]) if 2 * j - 1 >= 0 and 2 * j + 1 <= depth - 1]
    assert interior == [1, 2, 3, 4, 5]
    for j in interior:
        torch.testing.assert_close(out3d[:, :, j], out2d, rtol=0, atol=1e-5)


def test_pretrained_3d_weights_come_inflated_through_the_hub(hub_env):
    """3D get_encoder(weights=...) fetches the 2D file and inflates all kernels, depthwise ones too."""
    setting = encoders["mobilenet_v2"]["pretrained_settings"]["imagenet"]
    torch.manual_seed(0)
    source = get_encoder("mobilenet_v2").eval()
    random_bn_statistics(source, seed=2)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(10, 1280)  # a classification checkpoint's head is ignored
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])
    encoder = get_encoder("mobilenet_v2", weights="imagenet", spatial_dims=3, depth=1)
    depthwise = encoder.features[1].conv[0][0].weight
    assert depthwise.shape == (32, 1, 3, 3, 3)
    torch.testing.assert_close(depthwise.sum(2), source.features[1].conv[0][0].weight, rtol=1e-5, atol=1e-6)
    # Feature 1 (stem + first depthwise block) of a volume constant along depth is the 2D feature of its slice
    # wherever its 7-slice receptive field (input slices 2j-3 .. 2j+3) stays inside the volume.
    image = torch.randn(1, 3, 24, 24)
    depth = 16
    out3d = run(encoder, image.unsqueeze(2).repeat(1, 1, depth, 1, 1))[1]
    out2d = run(source, image)[1]
    for j in [j for j in range(out3d.shape[2]) if 2 * j - 3 >= 0 and 2 * j + 3 <= depth - 1]:
        torch.testing.assert_close(out3d[:, :, j], out2d, rtol=0, atol=1e-5)


def test_3d_unet_keeps_odd_size():
    model = smp_like.Unet("mobilenet_v2", spatial_dims=3, encoder_weights=None, in_channels=1, classes=2)
    x = torch.randn(1, 1, 19, 21, 23)
    with torch.no_grad():
        assert model.eval()(x).shape == (1, 2, 19, 21, 23)


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth.*1\.\.5"):
        get_encoder("mobilenet_v2", depth=depth)


def test_bad_output_stride():
    with pytest.raises(ValueError, match=r"output_stride.*\(8, 16, 32\).*4"):
        get_encoder("mobilenet_v2", output_stride=4)


def test_unknown_weights_tag():
    with pytest.raises(ValueError, match=r"encoder_weights.*'imagenet21k'.*imagenet"):
        get_encoder("mobilenet_v2", weights="imagenet21k")


def test_time_embedding_refused():
    encoder = get_encoder("mobilenet_v2", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 8, 8), time_emb=torch.randn(1, 4))
