"""timm-layout EfficientNet / EfficientNet-Lite: odd sizes, dilation and stochastic depth against SMP, 3D.

The generic SMP conformance test covers 64x64 inputs at output stride 32; here: odd sizes, dilated encoders,
training mode (drop-path schedule), the state-dict layout of every name (l2 included, on the meta device),
3D volumes with (anisotropic) strides, 2D -> 3D inflation and bad arguments.
"""


import pytest
import torch
from encoder_testing import THICK_SLICES, random_bn_statistics, smp_encoder
from safetensors.torch import save

import smp_like
from smp_like.encoders import encoders, get_encoder
from smp_like.encoders._utils import inflate_state_dict

smp_oracle = pytest.importorskip("segmentation_models_pytorch")

NAMES = [n for n in encoders if n.startswith(("timm-efficientnet", "timm-tf_efficientnet_lite"))]


def run(encoder, x):
    with torch.no_grad():
        return encoder(x)


def assert_close_relative(got, expected, rtol):
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= rtol * max(1.0, b.abs().max().item())


@pytest.mark.conformance
@pytest.mark.parametrize(
    "name, output_stride, size",
    [
        ("timm-efficientnet-b0", 32, (65, 67)),
        ("timm-efficientnet-b1", 16, (37, 50)),
        ("timm-tf_efficientnet_lite0", 8, (65, 67)),
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
    assert_close_relative(run(ours, x), run(theirs, x), 1e-5)


@pytest.mark.conformance
def test_training_mode_drop_path_matches_smp():
    # Same random draws and per-block rates as timm (0.2 * block index / block count): with the same seed the
    # outputs agree up to float rounding, which training-mode batch statistics amplify a little.
    theirs = smp_encoder("timm-efficientnet-b1").train()
    ours = get_encoder("timm-efficientnet-b1").train()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(5)
    expected = theirs(x)
    torch.manual_seed(5)
    got = ours(x)
    assert_close_relative(got, expected, 1e-4)
    # ... and without stochastic depth they would not agree: the check above sees the dropped branches.
    ours.apply(lambda m: setattr(m, "drop_prob", 0.0) if hasattr(m, "drop_prob") else None)
    torch.manual_seed(5)
    assert (ours(x)[-1] - expected[-1]).abs().max() > 1e-2


@pytest.mark.conformance
def test_state_dict_keys_equal_smp_for_every_name_on_meta():
    assert len(NAMES) == 15
    for name in NAMES:
        with torch.device("meta"):
            theirs = smp_encoder(name).state_dict()
            ours = get_encoder(name).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


def test_lite_has_relu6_and_no_squeeze_excitation():
    encoder = get_encoder("timm-tf_efficientnet_lite2")
    assert not any(type(m).__name__ == "SqueezeExcite" for m in encoder.modules())
    assert not any(type(m).__name__ == "Swish" for m in encoder.modules())
    assert any(isinstance(m, torch.nn.ReLU6) for m in encoder.modules())
    assert encoder.conv_stem.out_channels == 32 and encoder.conv_head.out_channels == 1280
    assert len(encoder.blocks[0]) == 1 and len(encoder.blocks[-1]) == 1


def test_3d_forward_on_odd_volume():
    encoder = get_encoder("timm-efficientnet-b0", spatial_dims=3).eval()
    assert encoder.spatial_dims == 3 and encoder.reductions == (1, 2, 4, 8, 16, 32)
    x = torch.randn(1, 3, 19, 37, 41)
    features = run(encoder, x)
    assert [f.shape[1] for f in features] == [3, 32, 24, 40, 112, 320]
    for feature, reduction in zip(features, encoder.reductions):
        # Symmetric padding k // 2: each stride-2 conv rounds up.
        assert tuple(feature.shape[2:]) == tuple(-(-n // reduction) for n in x.shape[2:])


@pytest.mark.parametrize("name", ["timm-efficientnet-b0", "timm-tf_efficientnet_lite0"])
def test_3d_anisotropic_strides_give_per_axis_reductions(name):
    encoder = get_encoder(name, spatial_dims=3, strides=THICK_SLICES).eval()
    expected = ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    assert encoder.reductions == expected and encoder.output_stride == (8, 32, 32)
    x = torch.randn(1, 3, 9, 33, 35)
    for feature, reduction in zip(run(encoder, x), expected):
        assert tuple(feature.shape[2:]) == tuple(-(-n // r) for n, r in zip(x.shape[2:], reduction))


def test_3d_dilation_with_anisotropic_strides():
    encoder = get_encoder("timm-efficientnet-b0", spatial_dims=3, strides=THICK_SLICES, output_stride=8)
    encoder.eval()
    assert encoder.reductions[-3:] == ((2, 8, 8), (2, 8, 8), (2, 8, 8))
    assert tuple(run(encoder, torch.randn(1, 3, 8, 32, 32))[-1].shape[2:]) == (4, 4, 4)


def test_inflated_stem_gives_2d_response_on_constant_depth():
    torch.manual_seed(0)
    enc2d = get_encoder("timm-efficientnet-b0").eval()
    random_bn_statistics(enc2d, seed=4)
    enc3d = get_encoder("timm-efficientnet-b0", spatial_dims=3).eval()
    enc3d.load_state_dict(inflate_state_dict(enc2d.state_dict(), enc3d))
    image = torch.randn(1, 3, 31, 33)
    volume = image.unsqueeze(2).repeat(1, 1, 10, 1, 1)
    with torch.no_grad():
        out2d = enc2d.act(enc2d.bn1(enc2d.conv_stem(image)))
        out3d = enc3d.act(enc3d.bn1(enc3d.conv_stem(volume)))
    # Depth 10, padding 1, stride 2: output j sees slices 2j-1..2j+1, all real for j = 1..4.
    assert out3d.shape[2] == 5
    for j in range(1, 5):
        torch.testing.assert_close(out3d[:, :, j], out2d, rtol=1e-5, atol=1e-5)


def test_unet_3d_returns_the_input_size():
    model = smp_like.Unet("timm-tf_efficientnet_lite0", encoder_weights=None, spatial_dims=3,
                          decoder_channels=(16, 16, 8, 8, 8)).eval()
    x = torch.randn(1, 3, 9, 33, 35)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 9, 33, 35)


@pytest.mark.conformance
def test_pretrained_file_with_classifier_loads_and_inflates(hub_env):
    setting = encoders["timm-efficientnet-b0"]["pretrained_settings"]["noisy-student"]
    torch.manual_seed(0)
    source = smp_encoder("timm-efficientnet-b0")
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    # timm classification checkpoints also hold the classifier, which the encoder does not have.
    state["classifier.weight"], state["classifier.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])
    ours = get_encoder("timm-efficientnet-b0", weights="noisy-student", spatial_dims=3)
    torch.testing.assert_close(ours.conv_stem.weight.sum(2), source.conv_stem.weight)
    reduce = ours.blocks[2][0].se.conv_reduce.weight
    torch.testing.assert_close(reduce[..., 0], source.blocks[2][0].se.conv_reduce.weight)


@pytest.mark.parametrize("bad", [0, 6, 2.5, True])
def test_depth_out_of_range(bad):
    with pytest.raises(ValueError, match=r"`depth`.*1\.\.5"):
        get_encoder("timm-efficientnet-b0", depth=bad)


def test_depth_1_returns_the_stem():
    encoder = get_encoder("timm-tf_efficientnet_lite0", depth=1).eval()
    features = run(encoder, torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in features] == [(3, 32, 32), (32, 16, 16)]


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("timm-efficientnet-b0", output_stride=4)
    with pytest.raises(ValueError, match="encoder_weights.*imagenet"):
        get_encoder("timm-tf_efficientnet_lite0", weights="advprop")
    with pytest.raises(ValueError, match="encoder_weights.*noisy-student-475"):
        get_encoder("timm-efficientnet-l2", weights="imagenet")
    with pytest.raises(ValueError, match="spatial_dims"):
        get_encoder("timm-efficientnet-b0", spatial_dims=1)
    with pytest.raises(ValueError, match="strides"):
        get_encoder("timm-efficientnet-b0", spatial_dims=3, strides=[(1, 2), 2, 2, 2, 2])
    encoder = get_encoder("timm-efficientnet-b0", depth=2)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))
