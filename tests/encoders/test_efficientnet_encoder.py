"""EfficientNet (efficientnet-pytorch layout): static "SAME" padding, dilation, drop-connect vs SMP; 3D.

The generic SMP conformance test covers 64x64 inputs at output stride 32; here: odd sizes (where static and
dynamic "SAME" padding part ways), dilated encoders, training mode, the dynamic-padding option, 3D volumes
with (anisotropic) strides, 2D -> 3D inflation and bad arguments.
"""


import pytest
import torch
from encoder_testing import THICK_SLICES, random_bn_statistics, smp_encoder
from safetensors.torch import save

import smp_like
from smp_like.encoders import encoders, get_encoder
from smp_like.encoders._utils import inflate_state_dict
from smp_like.encoders.efficientnet import tf_same_padding

smp_oracle = pytest.importorskip("segmentation_models_pytorch")

NAMES = [f"efficientnet-b{i}" for i in range(8)]


def run(encoder, x):
    with torch.no_grad():
        return encoder(x)


@pytest.mark.conformance
@pytest.mark.parametrize(
    "name, output_stride, size",
    [
        ("efficientnet-b0", 32, (65, 67)),
        # B1's last stride-2 stage pads symmetrically (its nominal 240 px is odd, 15, at that level).
        ("efficientnet-b1", 32, (37, 50)),
        ("efficientnet-b1", 16, (65, 67)),
        ("efficientnet-b0", 8, (37, 50)),
    ],
)
def test_odd_sizes_and_dilation_match_smp(name, output_stride, size):
    torch.manual_seed(0)
    theirs = smp_encoder(name, output_stride=output_stride).eval()
    random_bn_statistics(theirs)
    ours = get_encoder(name, output_stride=output_stride).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.output_stride == output_stride
    x = torch.randn(1, 3, *size)
    for a, b in zip(run(ours, x), run(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.conformance
def test_training_mode_drop_connect_matches_smp():
    # Same random draws as the port: identical outputs with the same seed, drop-connect schedule included.
    theirs = smp_encoder("efficientnet-b0").train()
    ours = get_encoder("efficientnet-b0").train()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(5)
    expected = theirs(x)
    torch.manual_seed(5)
    got = ours(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.conformance
def test_state_dict_keys_equal_smp_for_every_name_on_meta():
    for name in NAMES:
        with torch.device("meta"):
            theirs = smp_encoder(name).state_dict()
            ours = get_encoder(name).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


def test_tf_same_padding_against_brute_force():
    # The smallest padding whose output has ceil(n / s) entries, the odd one at the end.
    for n in range(1, 12):
        for k in (1, 3, 5):
            for s in (1, 2):
                for d in (1, 2):
                    before, after = tf_same_padding((n,), (k,), (s,), (d,))
                    total = min(p for p in range(20) if (n + p - d * (k - 1) - 1) // s + 1 >= -(-n // s))
                    assert (before, after) == (total // 2, total - total // 2), (n, k, s, d)


def test_dynamic_padding_equals_static_padding_at_the_nominal_size():
    torch.manual_seed(0)
    static = get_encoder("efficientnet-b0", image_size=64).eval()
    dynamic = get_encoder("efficientnet-b0", image_size=None).eval()
    dynamic.load_state_dict(static.state_dict())
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(run(static, x), run(dynamic, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # On odd sizes the dynamic padding rounds every stride up, like TensorFlow.
    x = torch.randn(1, 3, 37, 45)
    for feature, reduction in zip(run(dynamic, x), dynamic.reductions):
        assert tuple(feature.shape[2:]) == (-(-37 // reduction), -(-45 // reduction))


def test_3d_forward_on_odd_volume():
    encoder = get_encoder("efficientnet-b0", spatial_dims=3).eval()
    assert encoder.spatial_dims == 3 and encoder.reductions == (1, 2, 4, 8, 16, 32)
    x = torch.randn(1, 3, 35, 37, 41)
    features = run(encoder, x)
    assert [f.shape[1] for f in features] == [3, 32, 24, 40, 112, 320]
    for feature, reduction in zip(features, encoder.reductions):
        # Static "SAME" padding rounds down or up depending on the stage (as the 2D port does).
        for n, got in zip(x.shape[2:], feature.shape[2:]):
            assert n // reduction <= got <= -(-n // reduction)
    # Padding computed from the input rounds every stride up and takes any size.
    dynamic = get_encoder("efficientnet-b0", spatial_dims=3, image_size=None).eval()
    x = torch.randn(1, 3, 19, 37, 41)
    features = run(dynamic, x)
    assert [f.shape[1] for f in features] == [3, 32, 24, 40, 112, 320]
    for feature, reduction in zip(features, dynamic.reductions):
        assert tuple(feature.shape[2:]) == tuple(-(-n // reduction) for n in x.shape[2:])


@pytest.mark.conformance
def test_too_small_inputs_are_refused_where_smp_fails():
    encoder = get_encoder("efficientnet-b0").eval()
    message = r"input spatial size \(31, 32\) is too small.*\(32, 32\).*image_size=None"
    with pytest.raises(ValueError, match=message):
        encoder(torch.randn(1, 3, 31, 32))
    with pytest.raises(ValueError, match=r"\(19, 37, 41\).*\(32, 37, 41\)"):
        get_encoder("efficientnet-b0", spatial_dims=3)(torch.randn(1, 3, 19, 37, 41))
    theirs = smp_encoder("efficientnet-b0").eval()
    with pytest.raises(RuntimeError):  # SMP fails inside a convolution
        run(theirs, torch.randn(1, 3, 31, 32))
    x = torch.randn(1, 3, 32, 32)
    assert run(theirs, x)[-1].shape == run(encoder, x)[-1].shape


def test_3d_anisotropic_strides_give_per_axis_reductions():
    encoder = get_encoder("efficientnet-b2", spatial_dims=3, strides=THICK_SLICES, image_size=None).eval()
    expected = ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    assert encoder.reductions == expected and encoder.output_stride == (8, 32, 32)
    x = torch.randn(1, 3, 9, 33, 35)
    for feature, reduction in zip(run(encoder, x), expected):
        assert tuple(feature.shape[2:]) == tuple(-(-n // r) for n, r in zip(x.shape[2:], reduction))
    static = get_encoder("efficientnet-b2", spatial_dims=3, strides=THICK_SLICES).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    for feature, reduction in zip(run(static, x), expected):
        assert tuple(feature.shape[2:]) == tuple(n // r for n, r in zip(x.shape[2:], reduction))


def test_3d_dilation_with_anisotropic_strides():
    encoder = get_encoder("efficientnet-b0", spatial_dims=3, strides=THICK_SLICES, output_stride=16).eval()
    assert encoder.reductions[-2:] == ((4, 16, 16), (4, 16, 16))
    assert tuple(run(encoder, torch.randn(1, 3, 16, 32, 32))[-1].shape[2:]) == (4, 2, 2)


def test_inflated_stem_gives_2d_response_on_constant_depth():
    torch.manual_seed(0)
    enc2d = get_encoder("efficientnet-b0").eval()
    random_bn_statistics(enc2d, seed=4)
    enc3d = get_encoder("efficientnet-b0", spatial_dims=3).eval()
    enc3d.load_state_dict(inflate_state_dict(enc2d.state_dict(), enc3d))
    image = torch.randn(1, 3, 31, 33)
    volume = image.unsqueeze(2).repeat(1, 1, 10, 1, 1)
    with torch.no_grad():
        out2d = enc2d._swish(enc2d._bn0(enc2d._conv_stem(image)))
        out3d = enc3d._swish(enc3d._bn0(enc3d._conv_stem(volume)))
    # Depth 10, static padding (0, 1), stride 2: outputs 0..3 see three real slices, output 4 the padding.
    assert out3d.shape[2] == 5
    for j in range(4):
        torch.testing.assert_close(out3d[:, :, j], out2d, rtol=1e-5, atol=1e-5)


def test_unet_3d_returns_the_input_size():
    model = smp_like.Unet("efficientnet-b0", encoder_weights=None, spatial_dims=3,
                          decoder_channels=(16, 16, 8, 8, 8)).eval()
    x = torch.randn(1, 3, 33, 33, 35)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 33, 33, 35)
    # Volumes thinner than the static padding allows: padding from the input (an encoder argument).
    model = smp_like.Unet("efficientnet-b0", encoder_weights=None, spatial_dims=3, image_size=None,
                          decoder_channels=(16, 16, 8, 8, 8)).eval()
    x = torch.randn(1, 3, 9, 33, 35)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 9, 33, 35)


@pytest.mark.conformance
def test_pretrained_file_with_classifier_loads_and_inflates(hub_env):
    setting = encoders["efficientnet-b0"]["pretrained_settings"]["imagenet"]
    torch.manual_seed(0)
    source = smp_encoder("efficientnet-b0")
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    # Classification checkpoints of the port also hold the fc layer, which the encoder does not have.
    state["_fc.weight"], state["_fc.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])
    ours = get_encoder("efficientnet-b0", weights="imagenet", spatial_dims=3)
    torch.testing.assert_close(ours._conv_stem.weight.sum(2), source._conv_stem.weight)
    depthwise = ours._blocks[3]._depthwise_conv.weight
    torch.testing.assert_close(depthwise.sum(2), source._blocks[3]._depthwise_conv.weight)


@pytest.mark.parametrize("bad", [0, 1, 6, 2.0, True])
def test_depth_out_of_range(bad):
    # SMP has no depth-1 variant of this family either.
    with pytest.raises(ValueError, match=r"`depth`.*2\.\.5"):
        get_encoder("efficientnet-b0", depth=bad)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("efficientnet-b0", output_stride=4)
    with pytest.raises(ValueError, match="encoder_weights.*advprop"):
        get_encoder("efficientnet-b0", weights="noisy-student")
    with pytest.raises(ValueError, match="spatial_dims"):
        get_encoder("efficientnet-b0", spatial_dims=1)
    with pytest.raises(ValueError, match="strides"):
        get_encoder("efficientnet-b0", spatial_dims=3, strides=[2, 2, 2])
    encoder = get_encoder("efficientnet-b0", depth=2)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))


def test_depth_2_returns_three_features():
    encoder = get_encoder("efficientnet-b3", depth=2).eval()
    features = run(encoder, torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [(3, 32, 32), (40, 16, 16), (32, 8, 8)]
