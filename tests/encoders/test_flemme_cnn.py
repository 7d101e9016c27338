"""Flemme-style CNN encoders (cnn, cnn_small, cnn_base): contract x 2D/3D x depths, smp.Unet, time injection."""

import pytest
import torch

import smp_like as smp
from smp_like.encoders import encoders, get_encoder
from smp_like.encoders.flemme_cnn import FlemmeCNNEncoder, flemme_cnn_encoders

SIZES = {2: (61, 75), 3: (13, 17, 19)}
TINY = {"patch_channel": 4, "down_channels": (8, 8, 16, 16, 16), "middle_channels": (16,)}


@pytest.fixture
def registered():
    """Register the cnn family for the test, and restore the registry afterwards."""
    saved = {name: encoders.get(name) for name in flemme_cnn_encoders}
    encoders.update(flemme_cnn_encoders)
    yield
    for name, entry in saved.items():
        if entry is None:
            encoders.pop(name, None)
        else:
            encoders[name] = entry


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _check_contract(encoder, x):
    features = encoder(x)
    assert len(features) == encoder.depth + 1 == len(encoder.out_channels) == len(encoder.reductions)
    assert features[0] is x
    for feature, channels, reduction in zip(features, encoder.out_channels, encoder.reductions):
        assert feature.shape[1] == channels
        assert tuple(feature.shape[2:]) == tuple(-(-s // reduction) for s in x.shape[2:])
    assert encoder.reductions == tuple(2**i for i in range(encoder.depth + 1))
    return features


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("depth", [3, 4, 5])
@pytest.mark.parametrize("patch_size", [1, 2, 4])
def test_contract(spatial_dims, depth, patch_size):
    encoder = FlemmeCNNEncoder(
        in_channels=2, depth=depth, spatial_dims=spatial_dims, patch_size=patch_size, **TINY
    )
    features = _check_contract(encoder, torch.randn(2, 2, *SIZES[spatial_dims]))
    # Levels finer than the patch stride are 0-channel placeholders.
    assert all(f.shape[1] == 0 for f in features[1 : patch_size.bit_length() - 1])


@pytest.mark.parametrize("name", list(flemme_cnn_encoders))
def test_registered_variants_2d(registered, name):
    encoder = get_encoder(name, in_channels=3, depth=3)
    assert encoder.spatial_dims == 2 and encoder.supports_time_embedding
    _check_contract(encoder, torch.randn(1, 3, 29, 37))


@pytest.mark.parametrize(
    "options",
    [
        {
            "building_block": "double_conv",
            "down_mode": "pool",
            "normalization": "instance",
            "activation": "gelu",
        },
        {
            "building_block": "res_conv",
            "down_mode": "interpolate",
            "normalization": "group",
            "num_norm_groups": 2,
            "num_blocks": 2,
            "dropout": 0.1,
        },
        {"normalization": "layer", "attention": "se", "order": "nac", "activation": "LeakyReLU"},
        {"normalization": "rms", "attention": "self", "middle_channels": ()},
    ],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_options(spatial_dims, options):
    params = dict(TINY, **options)
    encoder = FlemmeCNNEncoder(in_channels=1, depth=3, spatial_dims=spatial_dims, **params)
    x = torch.randn(2, 1, *SIZES[spatial_dims])
    features = _check_contract(encoder, x)
    features[-1].mean().backward()


@pytest.mark.parametrize("spatial_dims,sizes", [(2, (61, 75)), (3, (13, 17, 19))])
@pytest.mark.parametrize("depth", [3, 5])
def test_unet_output_has_input_size(registered, spatial_dims, sizes, depth):
    model = smp.Unet(
        encoder_name="cnn",
        encoder_weights=None,
        encoder_depth=depth,
        in_channels=1,
        classes=2,
        decoder_channels=(16, 8, 8, 8, 8)[:depth],
        spatial_dims=spatial_dims,
        patch_size={3: 1, 5: 4}[depth],
        **TINY,
    ).eval()
    with torch.no_grad():
        mask = model(torch.randn(1, 1, *sizes))
    assert mask.shape == (1, 2, *sizes)


@pytest.mark.slow
def test_unet_3d_29x37x41(registered):
    model = smp.Unet(
        encoder_name="cnn",
        encoder_weights=None,
        encoder_depth=4,
        decoder_channels=(16, 8, 8, 8),
        spatial_dims=3,
        **TINY,
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 29, 37, 41)).shape == (1, 1, 29, 37, 41)


def test_unet_3d_29x37x41_fast(registered):
    """The 29x37x41 size once in the default run, with the smallest widths."""
    model = smp.Unet(
        encoder_name="cnn",
        encoder_weights=None,
        encoder_depth=3,
        decoder_channels=(4, 4, 4),
        spatial_dims=3,
        in_channels=1,
        patch_channel=2,
        down_channels=(4, 4, 4),
        middle_channels=(),
        building_block="conv",
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 29, 37, 41)).shape == (1, 1, 29, 37, 41)


def test_set_in_channels_patches_the_stem(registered):
    encoder = get_encoder("cnn", in_channels=5, depth=3, **TINY)
    assert encoder.in_channels == 5 and encoder.out_channels[0] == 5
    _check_contract(encoder, torch.randn(1, 5, 17, 19))


@pytest.mark.parametrize("mode", ["gate_bias", "gate", "bias", "cross_attention"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_time_injection(spatial_dims, mode):
    encoder = FlemmeCNNEncoder(
        in_channels=1,
        depth=3,
        spatial_dims=spatial_dims,
        time_embedding_dim=6,
        time_injection=mode,
        normalization="group",
        num_norm_groups=2,
        **TINY,
    )
    x = torch.randn(2, 1, *([9] * spatial_dims))
    e1, e2 = torch.randn(2, 6), torch.randn(2, 6)
    assert not torch.allclose(encoder(x, e1)[-1], encoder(x, e2)[-1])
    encoder(x, e1)[-1].pow(2).mean().backward()
    injections = [m for m in encoder.modules() if type(m).__name__ == "EmbeddingInjection"]
    assert len(injections) == sum(len(level.blocks) for level in encoder.levels)  # one per ConvBlock ("conv")
    for injection in injections:
        grads = [p.grad for p in injection.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_enable_time_embedding_after_construction():
    encoder = FlemmeCNNEncoder(depth=3, **TINY)
    x = torch.randn(2, 3, 11, 13)
    before = encoder(x)[-1]
    encoder.enable_time_embedding(4, "bias")
    assert torch.equal(encoder(x)[-1], before)
    assert not torch.allclose(encoder(x, torch.randn(2, 4))[-1], before)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"patch_size": 3}, "patch_size"),
        ({"depth": 2, "patch_size": 8}, "patch_size"),
        ({"down_channels": (8, 8)}, "down_channels"),
        ({"building_block": "swin"}, "building_block"),
        ({"down_mode": "stride"}, "down_mode"),
        ({"normalization": "weight"}, "normalization"),
        ({"activation": "relux"}, "activation"),
        ({"order": "cc"}, "order"),
        ({"time_embedding_dim": 4, "time_injection": "film"}, "time_injection"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"num_blocks": 0}, "num_blocks"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlemmeCNNEncoder(**kwargs)


def test_channel_lists_must_be_sequences():
    with pytest.raises(TypeError, match="down_channels"):
        FlemmeCNNEncoder(down_channels="64")
    with pytest.raises(TypeError, match="middle_channels"):
        FlemmeCNNEncoder(middle_channels=None)


def test_unknown_keyword_and_dilation(registered):
    with pytest.raises(TypeError, match="num_heads"):
        get_encoder("cnn", num_heads=4)
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("cnn", output_stride=16)
