"""Flemme-style ``vit`` / ``swin`` encoders: contract on odd sizes, window masks, position embeddings, Unet, time
injection and argument errors. References are brute-force formulas written here, not the code under test."""

import math

import pytest
import torch

import smp_like as smp
from smp_like.base.embedding import INJECTION_MODES
from smp_like.encoders import encoders, get_encoder
from smp_like.encoders.transformer_blocks import (
    AbsolutePositionEmbedding,
    PatchMerging,
    SwinBlock,
    SwinStage,
    ViTStage,
    relative_position_index,
)
from smp_like.encoders.flemme_swin import FlemmeSwinEncoder, flemme_swin_encoders
from smp_like.encoders.flemme_vit import FlemmeViTEncoder, flemme_vit_encoders

NAMES = sorted(flemme_vit_encoders) + sorted(flemme_swin_encoders)
SMALL = {
    "patch_size": 2,
    "patch_channel": 8,
    "down_channels": [8, 16, 16, 16],
    "num_heads": 2,
    "num_blocks": 2,
    "window_size": 4,
}


def small(family) -> dict:
    """SMALL for an encoder name or class: ViT attends globally and takes no ``window_size``."""
    is_vit = family is FlemmeViTEncoder or (isinstance(family, str) and family.startswith("vit"))
    return {k: v for k, v in SMALL.items() if not (is_vit and k == "window_size")}


@pytest.fixture(autouse=True)
def registered():
    """Both families are registered by smp_like.encoders itself (the registry is left untouched: re-inserting
    entries would reorder it, and the encoder table follows its order); every test starts from seed 0."""
    assert all(encoders[name] is entry for name, entry in {**flemme_vit_encoders, **flemme_swin_encoders}.items())
    torch.manual_seed(0)


def check_contract(encoder, x, features):
    assert len(features) == encoder.depth + 1
    assert features[0] is x
    assert [f.shape[1] for f in features] == list(encoder.out_channels)
    assert encoder.reductions == tuple(2**i for i in range(encoder.depth + 1))
    for f, r in zip(features, encoder.reductions):
        assert f.shape[0] == x.shape[0]
        assert list(f.shape[2:]) == [-(-n // r) for n in x.shape[2:]], (tuple(f.shape), r)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth", [3, 4, 5])
def test_contract_2d(name, depth):
    encoder = get_encoder(name, in_channels=2, depth=depth, **small(name)).eval()
    x = torch.randn(1, 2, 61, 75)
    with torch.no_grad():
        check_contract(encoder, x, encoder(x))
    assert encoder.supports_time_embedding


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth", [3, 4])
def test_contract_3d(name, depth):
    encoder = get_encoder(name, depth=depth, spatial_dims=3, **small(name)).eval()
    x = torch.randn(1, 3, 13, 17, 19)
    with torch.no_grad():
        check_contract(encoder, x, encoder(x))


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_contract_large_odd_volume(name):
    # patch 4 keeps ViT's global attention small (8x10x11 tokens); a 0-channel placeholder at stride 2.
    kwargs = dict(small(name), patch_size=4, num_blocks=[2, 1, 1, 1])
    encoder = get_encoder(name, depth=4, spatial_dims=3, **kwargs).eval()
    x = torch.randn(1, 3, 29, 37, 41)
    with torch.no_grad():
        features = encoder(x)
    check_contract(encoder, x, features)
    assert encoder.out_channels[1] == 0 and features[1].shape == (1, 0, 15, 19, 21)


@pytest.mark.parametrize("block", ["swin", "double_swin", "res_swin"])
def test_swin_building_blocks(block):
    encoder = get_encoder("swin", depth=4, building_block=block, **dict(SMALL, num_blocks=1)).eval()
    x = torch.randn(2, 3, 61, 75)
    with torch.no_grad():
        check_contract(encoder, x, encoder(x))


def test_middle_channels_and_patch_4():
    encoder = FlemmeSwinEncoder(
        depth=5,
        patch_size=4,
        patch_channel=8,
        down_channels=[8, 16, 16],
        middle_channels=12,
        num_heads=[2, 2, 2, 2, 3],
        window_size=4,
    ).eval()
    x = torch.randn(1, 3, 61, 75)
    with torch.no_grad():
        features = encoder(x)
    check_contract(encoder, x, features)
    assert encoder.out_channels == (3, 0, 8, 8, 16, 12)


# --- shifted-window attention never mixes tokens from different regions ----------------------------------------


def expected_groups(grid, window, shift):
    """Attention group of each token, in the input frame: shifted windows start at offset ``shift`` (windows that
    wrap around the border in the rolled frame are split into separate groups), i.e. ``floor((p - s) / w)`` per
    axis; windows larger than the grid cover the grid, unshifted."""
    groups = {}
    for p in torch.cartesian_prod(*[torch.arange(g) for g in grid]).reshape(-1, len(grid)).tolist():
        key = []
        for pa, g, w in zip(p, grid, window):
            if g <= w:
                key.append(0)
            else:
                s = w // 2 if shift else 0
                key.append(math.floor((pa - s) / w))
        groups[tuple(p)] = tuple(key)
    return groups


@pytest.mark.parametrize(
    "grid, window, shift",
    [
        ((10, 13), 4, True),
        ((10, 13), 4, False),
        ((3, 9), 4, True),
        ((5, 6, 7), 3, True),
        ((4, 5, 7), (2, 3, 4), True),
    ],
)
def test_window_attention_regions(grid, window, shift):
    torch.manual_seed(0)
    block = SwinBlock(4, len(grid), num_heads=2, window_size=window, shift=shift).double().eval()
    with torch.no_grad():
        block.relative_position_bias_table.normal_()
        x = torch.randn(1, *grid, 4, dtype=torch.float64)
        base = block(x)
        window_t = window if isinstance(window, tuple) else (window,) * len(grid)
        groups = expected_groups(grid, window_t, shift)
        positions = list(groups)
        for p in positions[:: max(1, len(positions) // 40)]:
            y = x.clone()
            y[(0, *p)] += torch.randn(4, dtype=torch.float64)  # not constant: LayerNorm would remove it
            changed = (block(y) - base).abs().amax(-1)[0] > 1e-12
            expected = torch.zeros(grid, dtype=torch.bool)
            for q, g in groups.items():
                expected[q] = g == groups[p]
            assert torch.equal(changed, expected), (p, changed.nonzero().tolist())


def test_relative_position_index_is_a_function_of_the_offset():
    window, table = (3, 4), (4, 5)
    index = relative_position_index(window, table)
    coords = [(i, j) for i in range(3) for j in range(4)]
    seen = {}
    for a, pa in enumerate(coords):
        for b, pb in enumerate(coords):
            offset = (pa[0] - pb[0], pa[1] - pb[1])
            seen.setdefault(offset, set()).add(int(index[a, b]))
    assert all(len(v) == 1 for v in seen.values())  # same offset -> same row
    rows = [next(iter(v)) for v in seen.values()]
    assert len(set(rows)) == len(rows)  # different offsets -> different rows
    assert 0 <= min(rows) and max(rows) < (2 * 4 - 1) * (2 * 5 - 1)


def test_swin_block_bias_equals_brute_force_attention():
    """One W-MSA window (grid = window): compare with softmax(q k^T / sqrt(d) + B[offset]) v written out here."""
    torch.manual_seed(1)
    c, heads, grid = 4, 2, (3, 4)
    block = SwinBlock(c, 2, num_heads=heads, window_size=(3, 4), shift=False).double().eval()
    x = torch.randn(1, *grid, c, dtype=torch.float64)
    with torch.no_grad():
        block.relative_position_bias_table.normal_()
        got = block.attention(x)
        tokens = x.reshape(-1, c)
        q, k, v = block.qkv(tokens).reshape(-1, 3, heads, c // heads).unbind(1)
        coords = [(i, j) for i in range(3) for j in range(4)]
        out = torch.zeros(len(coords), heads, c // heads, dtype=torch.float64)
        for h in range(heads):
            for a, pa in enumerate(coords):
                logits = []
                for b, pb in enumerate(coords):
                    row = (pa[0] - pb[0] + 2) * (2 * 4 - 1) + (pa[1] - pb[1] + 3)
                    bias = block.relative_position_bias_table[row, h]
                    logits.append(q[a, h] @ k[b, h] / math.sqrt(c // heads) + bias)
                weights = torch.softmax(torch.stack(logits), 0)
                out[a, h] = (weights[:, None] * v[:, h]).sum(0)
        expected = block.proj(out.reshape(len(coords), c)).reshape(1, *grid, c)
    torch.testing.assert_close(got, expected)


# --- position embedding, patch merging ---------------------------------------------------------------------------


def test_position_embedding_exact_at_reference_and_bilinear_elsewhere():
    emb = AbsolutePositionEmbedding(3, 2, reference_grid=(4, 5))
    table = emb.embedding.detach()[0]  # (C, 4, 5)
    assert torch.equal(emb.grid_embedding((4, 5))[0].movedim(-1, 0), table)
    out_grid = (7, 3)
    got = emb.grid_embedding(out_grid)[0].movedim(-1, 0).detach()

    def taps(n_out, n_in, i):  # half-pixel-centre linear interpolation (align_corners=False)
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(math.floor(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    expected = torch.zeros(3, *out_grid)
    for y in range(out_grid[0]):
        y0, y1, ly = taps(out_grid[0], 4, y)
        for x in range(out_grid[1]):
            x0, x1, lx = taps(out_grid[1], 5, x)
            expected[:, y, x] = (
                (1 - ly) * (1 - lx) * table[:, y0, x0]
                + (1 - ly) * lx * table[:, y0, x1]
                + ly * (1 - lx) * table[:, y1, x0]
                + ly * lx * table[:, y1, x1]
            )
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("grid", [(5, 6), (3, 4, 5)])
def test_patch_merging_concatenates_each_group(grid):
    d, c = len(grid), 2
    merge = PatchMerging(c, c * 2**d, d)
    merge.norm = torch.nn.Identity()
    with torch.no_grad():
        merge.reduction.weight.copy_(torch.eye(c * 2**d))
    x = torch.randn(1, *grid, c)
    got = merge(x)
    padded = torch.zeros(1, *[g + g % 2 for g in grid], c)
    padded[(slice(None),) + tuple(slice(0, g) for g in grid)] = x
    assert got.shape[1:-1] == tuple(-(-g // 2) for g in grid)
    offsets = torch.cartesian_prod(*[torch.arange(2)] * d).reshape(-1, d).tolist()
    for p in torch.cartesian_prod(*[torch.arange(s) for s in got.shape[1:-1]]).reshape(-1, d).tolist():
        parts = [padded[(0, *[2 * pa + o for pa, o in zip(p, off)])] for off in offsets]
        torch.testing.assert_close(got[(0, *p)], torch.cat(parts))


# --- Unet, stages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spatial_dims, size", [(2, (61, 75)), (3, (13, 17, 19))])
def test_unet_output_matches_input_size(name, spatial_dims, size):
    model = smp.Unet(
        encoder_name=name,
        encoder_weights=None,
        encoder_depth=4,
        decoder_channels=(16, 8, 8, 8),
        classes=2,
        spatial_dims=spatial_dims,
        **dict(small(name), num_blocks=1),
    ).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 2, *size)


@pytest.mark.parametrize(
    "stage_cls, block", [(SwinStage, "swin"), (SwinStage, "res_swin"), (ViTStage, "vit")]
)
@pytest.mark.parametrize("size", [(11, 13), (5, 6, 7)])
def test_channels_first_stage(stage_cls, block, size):
    stage = stage_cls(
        8, len(size), num_blocks=2, num_heads=2, window_size=4, building_block=block, time_embedding_dim=6
    )
    x = torch.randn(2, 8, *size)
    e = torch.randn(2, 6)
    y = stage(x, e)
    assert y.shape == x.shape
    assert not torch.allclose(stage(x, e + 1.0), y)


# --- time injection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [FlemmeViTEncoder, FlemmeSwinEncoder])
@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_time_injection_modes(cls, mode):
    torch.manual_seed(0)
    encoder = cls(depth=3, time_embedding_dim=6, time_injection=mode, **dict(small(cls), num_blocks=1))
    x = torch.randn(2, 3, 13, 17)
    e1, e2 = torch.randn(2, 6), torch.randn(2, 6)
    f1 = encoder(x, e1)[-1]
    f2 = encoder(x, e2)[-1]
    assert not torch.allclose(f1, f2)
    f1.square().mean().backward()
    injections = [m for m in encoder.modules() if type(m).__name__ == "EmbeddingInjection"]
    assert len(injections) == 3  # one per block (three stages of one block)
    for inj in injections:
        grads = [p.grad for p in inj.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_enable_time_embedding_after_construction():
    encoder = FlemmeSwinEncoder(depth=3, **SMALL)
    x = torch.randn(1, 3, 13, 17)
    with pytest.raises(ValueError, match="enable_time_embedding"):
        encoder(x, torch.randn(1, 6))
    encoder.enable_time_embedding(6, "bias")
    assert encoder(x, torch.randn(1, 6))[-1].shape == encoder(x)[-1].shape


# --- argument errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"patch_size": 3}, "patch_size"),
        ({"patch_size": 16, "depth": 3}, "depth"),
        ({"building_block": "conv"}, "building_block"),
        ({"normalization": "batch"}, "normalization"),
        ({"activation": "mish2"}, "activation"),
        ({"num_heads": 3}, "num_heads"),
        ({"num_heads": [2, 2]}, "num_heads"),
        ({"down_channels": [8]}, "down_channels"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"window_size": (4, 4, 4)}, "window_size"),
        ({"drop_path": 1.5}, "drop_path"),
        ({"dropout": -0.1}, "dropout"),
        ({"time_embedding_dim": 4, "time_injection": "concat"}, "time_injection"),
        ({"state_channel": 4}, "state_channel"),
        ({"spatial_dims": 1}, "spatial_dims"),
    ],
)
@pytest.mark.parametrize("cls", [FlemmeViTEncoder, FlemmeSwinEncoder])
def test_bad_arguments(cls, kwargs, argument):
    params = dict(small(cls), depth=4)
    params.update(kwargs)
    if cls is FlemmeViTEncoder and argument == "building_block":
        params["building_block"] = "swin"
    with pytest.raises(ValueError, match=argument):
        cls(**params)


def test_bad_input_shape():
    encoder = FlemmeViTEncoder(depth=3, **small(FlemmeViTEncoder))
    with pytest.raises(ValueError, match="x"):
        encoder(torch.randn(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="output_stride"):
        encoder.make_dilated(16)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"qkv_bias": 1}, "qkv_bias"),
        ({"abs_pos_embedding": "yes"}, "abs_pos_embedding"),
        ({"down_channels": 8}, "down_channels"),
    ],
)
def test_bad_argument_types(kwargs, argument):
    params = dict(SMALL, depth=4)
    params.update(kwargs)
    with pytest.raises(TypeError, match=argument):
        FlemmeSwinEncoder(**params)


def test_vit_refuses_swin_only_window_size():
    """``window_size`` used to be accepted and ignored by ViT; it is a Swin option only now."""
    with pytest.raises(ValueError, match="window_size"):
        FlemmeViTEncoder(depth=3, **SMALL)
    with pytest.raises(ValueError, match="num_norm_groups"):
        FlemmeSwinEncoder(depth=3, num_norm_groups=8, **SMALL)
