"""SENet family (Hu et al. 2018): what the generic SMP catalogue test does not cover.

Dilation and odd input sizes against the SMP oracle, state-dict keys of every name, 3D volumes (odd sizes,
anisotropic strides, I3D inflation of the pretrained stem, a 3D U-Net) and the errors for bad arguments.
"""


import pytest
import torch
from encoder_testing import assert_same, features, random_bn_statistics, smp_encoder
from safetensors.torch import save

import smp_like
from smp_like.encoders import encoders, get_encoder

smp_oracle = pytest.importorskip("segmentation_models_pytorch")

NAMES = [
    "senet154",
    "se_resnet50",
    "se_resnet101",
    "se_resnet152",
    "se_resnext50_32x4d",
    "se_resnext101_32x4d",
]


@pytest.mark.conformance
def test_keys_and_shapes_equal_smp_for_every_name_on_meta():
    for name in NAMES:
        with torch.device("meta"):
            theirs = smp_encoder(name).state_dict()
            ours = get_encoder(name).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


@pytest.mark.conformance
@pytest.mark.parametrize("name, output_stride", [("se_resnet50", 16), ("se_resnext50_32x4d", 8)])
def test_dilation_and_odd_sizes_match_smp(name, output_stride):
    torch.manual_seed(0)
    theirs = smp_encoder(name, output_stride=output_stride)
    random_bn_statistics(theirs)
    ours = get_encoder(name, output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.output_stride == theirs.output_stride == output_stride
    assert ours.reductions == tuple(min(2**i, output_stride) for i in range(6))
    # 65x97: the unpadded ceil-mode stem pool gives SMP's sizes (one less than ceil(size / 4) here).
    for size in ((64, 64), (65, 97)):
        x = torch.randn(1, 3, *size)
        assert_same(features(ours, x), features(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_shallow_depths_match_smp(depth):
    theirs = smp_encoder("se_resnet50", depth=depth)
    random_bn_statistics(theirs)
    ours = get_encoder("se_resnet50", depth=depth)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert_same(features(ours, x), features(theirs, x))


@pytest.mark.slow
@pytest.mark.conformance
def test_senet154_dilation_matches_smp():
    # SENet-154 has 3x3 strided projection shortcuts: dilation must pad them too.
    theirs = smp_encoder("senet154", output_stride=8)
    random_bn_statistics(theirs)
    ours = get_encoder("senet154", output_stride=8)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert_same(features(ours, x), features(theirs, x))


def _expected_size(size, reduction):
    # Stem conv (padded, stride 2) rounds up; the unpadded ceil-mode max-pool (stride 2) rounds down; later
    # strided convs round up.
    if reduction == 1:
        return size
    after_stem = -(-size // 2)
    if reduction == 2:
        return after_stem
    return -(-(after_stem // 2) // (reduction // 4))


def test_3d_odd_volume_sizes_follow_reductions():
    encoder = get_encoder("se_resnet50", spatial_dims=3)
    assert encoder.spatial_dims == 3 and encoder.reductions == (1, 2, 4, 8, 16, 32)
    x = torch.randn(1, 3, 19, 37, 41)
    out = features(encoder, x)
    assert [f.shape[1] for f in out] == list(encoder.out_channels) == [3, 64, 256, 512, 1024, 2048]
    for feature, reduction in zip(out, encoder.reductions):
        assert feature.dim() == 5
        expected = tuple(_expected_size(s, reduction) for s in x.shape[2:])
        assert tuple(feature.shape[2:]) == expected, reduction
        # Never more than one voxel below ceil(size / reduction).
        assert all(0 <= -(-s // reduction) - f <= 1 for s, f in zip(x.shape[2:], feature.shape[2:]))


@pytest.mark.parametrize("name", NAMES)
def test_3d_every_name_on_meta(name):
    with torch.device("meta"):
        encoder = get_encoder(name, in_channels=2, spatial_dims=3)
        out = encoder(torch.randn(1, 2, 32, 64, 32))
    assert [tuple(f.shape) for f in out] == [
        (1, c, 32 // r, 64 // r, 32 // r) for c, r in zip(encoder.out_channels, encoder.reductions)
    ]


def test_3d_anisotropic_strides_give_per_axis_reductions():
    strides = [(1, 2, 2), (1, 2, 2), 2, 2, 2]
    encoder = get_encoder("se_resnext50_32x4d", spatial_dims=3, strides=strides)
    expected = ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    assert encoder.reductions == expected and encoder.output_stride == (8, 32, 32)
    x = torch.randn(1, 3, 8, 64, 64)
    for feature, reduction in zip(features(encoder, x), expected):
        assert tuple(feature.shape[2:]) == tuple(s // r for s, r in zip(x.shape[2:], reduction))


def test_3d_anisotropic_strides_with_dilation_stop_reducing_dilated_stages():
    encoder = get_encoder(
        "se_resnet50", spatial_dims=3, strides=[(1, 2, 2), (1, 2, 2), 2, 2, 2], output_stride=16
    )
    assert encoder.reductions[-2:] == ((4, 16, 16), (4, 16, 16))
    assert tuple(features(encoder, torch.randn(1, 3, 16, 32, 32))[-1].shape[2:]) == (4, 2, 2)


def test_3d_stride_one_stem_pool_keeps_the_axis():
    # A stage with stride 1 on an axis must not shrink it (the pool is padded along that axis only).
    encoder = get_encoder("se_resnet50", spatial_dims=3, depth=2, strides=[(1, 2, 2), (1, 2, 2), 2, 2, 2])
    out = features(encoder, torch.randn(1, 3, 5, 16, 16))
    assert tuple(out[2].shape[2:]) == (5, 4, 4)


@pytest.mark.conformance
def test_inflated_pretrained_stem_gives_2d_response(hub_env):
    """Weights fetched for a 3D encoder are inflated: on a volume constant along depth the stem (conv, BN,
    ReLU) answers like the 2D stem on each depth slice that the 7-deep kernel sees whole."""
    torch.manual_seed(0)
    encoder_2d = get_encoder("se_resnet50")
    random_bn_statistics(encoder_2d, seed=1)
    state = {k: v.contiguous() for k, v in encoder_2d.state_dict().items()}
    # Classifier keys of classification checkpoints are dropped, not refused.
    state.update({"last_linear.weight": torch.zeros(1000, 2048), "last_linear.bias": torch.zeros(1000)})
    setting = encoders["se_resnet50"]["pretrained_settings"]["imagenet"]
    hub_env.add_file(setting["repo_id"], "model.safetensors", save(state), commit_sha=setting["revision"])

    encoder_3d = get_encoder("se_resnet50", weights="imagenet", spatial_dims=3).eval()
    image = torch.randn(1, 3, 24, 20)
    volume = image.unsqueeze(2).repeat(1, 1, 16, 1, 1)
    with torch.no_grad():
        expected = encoder_2d.eval().layer0(image)
        got = encoder_3d.layer0(volume)
    assert got.shape[2] == 8
    # Output slice d sees input slices 2d-3 .. 2d+3: complete for d = 2 .. 6.
    for d in range(2, 7):
        torch.testing.assert_close(got[:, :, d], expected, rtol=0, atol=1e-5)


def test_unet_3d_odd_volume_keeps_its_size():
    model = smp_like.Unet(
        "se_resnet50", encoder_weights=None, spatial_dims=3, classes=2, decoder_channels=(16, 16, 16, 16, 16)
    ).eval()
    x = torch.randn(1, 3, 9, 33, 35)
    with torch.no_grad():
        assert model(x).shape == (1, 2, 9, 33, 35)


def test_unet_3d_anisotropic_odd_volume_keeps_its_size():
    model = smp_like.Unet(
        "se_resnext50_32x4d",
        encoder_weights=None,
        spatial_dims=3,
        strides=[(1, 2, 2), (1, 2, 2), 2, 2, 2],
        decoder_channels=(16, 16, 16, 16, 16),
    ).eval()
    assert model.input_stride == (8, 32, 32)
    x = torch.randn(1, 3, 9, 33, 35)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 9, 33, 35)


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
def test_unsupported_depth(depth):
    with pytest.raises(ValueError, match=r"`depth`.*1\.\.5"):
        get_encoder("se_resnet50", depth=depth)


def test_unsupported_output_stride():
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("se_resnet50", output_stride=4)


def test_unknown_weights_tag():
    with pytest.raises(ValueError, match=r"encoder_weights.*'ssl'.*\['imagenet'\]"):
        get_encoder("se_resnet50", weights="ssl")


def test_bad_strides_and_spatial_dims():
    with pytest.raises(ValueError, match="strides"):
        get_encoder("se_resnet50", spatial_dims=3, strides=[2, 2, 2])
    with pytest.raises(ValueError, match="strides"):
        get_encoder("se_resnet50", spatial_dims=3, strides=[(1, 2), 2, 2, 2, 2])
    with pytest.raises(ValueError, match="spatial_dims"):
        get_encoder("se_resnet50", spatial_dims=4)


def test_time_embedding_refused():
    encoder = get_encoder("se_resnet50", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))
