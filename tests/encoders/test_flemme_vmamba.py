"""Flemme VMamba encoders and VSS blocks: contract on odd 2D/3D sizes, building blocks x scan modes, the SS2D
mixer against a plain sequential loop written here, Unet integration, time injection, initialisation, argument
errors."""

import math

import pytest
import torch
import torch.nn.functional as F

ops = pytest.importorskip("smp_like.ops")
if not hasattr(ops, "selective_scan"):  # the ops package is written concurrently; its tests live in tests/ops
    pytest.skip("smp_like.ops.selective_scan is not available yet", allow_module_level=True)

import smp_like as smp  # noqa: E402
from smp_like.encoders import encoders, get_encoder  # noqa: E402
from smp_like.encoders._vmamba_blocks import (  # noqa: E402
    BUILDING_BLOCKS,
    SCAN_MODES,
    SS2D,
    VMambaStage,
    count_directions,
)
from smp_like.encoders.flemme_vmamba import FlemmeVMambaEncoder, flemme_vmamba_encoders  # noqa: E402

NAMES = tuple(flemme_vmamba_encoders)
TINY = dict(
    patch_channel=8,
    down_channels=(8, 16, 16, 16),
    num_blocks=1,
    mlp_hidden_ratio=2.0,
    state_channel=4,
    inner_factor=1.0,
    head_channel=4,
    drop_path=0.0,
)


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def registered():
    """The VMamba family in the registry for this test (the lead wires it in permanently)."""
    before = dict(encoders)
    encoders.update(flemme_vmamba_encoders)
    yield
    encoders.clear()
    encoders.update(before)


def _check_contract(encoder, x):
    with torch.no_grad():
        feats = encoder.eval()(x)
    assert len(feats) == encoder.depth + 1
    assert feats[0] is x
    assert [f.shape[1] for f in feats] == list(encoder.out_channels)
    assert encoder.reductions == tuple(2**i for i in range(encoder.depth + 1))
    for f, r in zip(feats, encoder.reductions):
        assert f.shape[0] == x.shape[0]
        for size, n in zip(f.shape[2:], x.shape[2:]):
            assert n // r <= size <= -(-n // r), (tuple(f.shape), r)
        assert torch.isfinite(f).all()


# ------------------------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth,patch_size", [(3, 2), (5, 4)])
def test_contract_2d_odd_size(registered, name, depth, patch_size):
    encoder = get_encoder(name, depth=depth, patch_size=patch_size, **TINY)
    assert encoder.supports_time_embedding
    _check_contract(encoder, torch.randn(2, 3, 61, 75))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth,patch_size", [(2, 2), (4, 4)])
def test_contract_3d_small(registered, name, depth, patch_size):
    encoder = get_encoder(name, depth=depth, spatial_dims=3, patch_size=patch_size, **TINY)
    _check_contract(encoder, torch.randn(1, 3, 13, 17, 19))


def test_contract_3d_big_odd_size(registered):
    # One large case: 29x37x41, scans over every axis order (cross, 6 directions) on the actual token grid.
    encoder = get_encoder("vmamba", depth=4, spatial_dims=3, patch_size=4, **TINY)
    _check_contract(encoder, torch.randn(1, 3, 29, 37, 41))


def test_patch_size_one_and_middle_stage():
    encoder = FlemmeVMambaEncoder(depth=2, patch_size=1, middle_channels=12, **TINY)
    assert encoder.out_channels == (3, 8, 12)
    _check_contract(encoder, torch.randn(1, 3, 9, 11))


def test_in_channels_adapted(registered):
    encoder = get_encoder("vmamba", in_channels=1, depth=3, patch_size=2, **TINY)
    assert encoder.out_channels[0] == 1
    _check_contract(encoder, torch.randn(1, 1, 17, 19))


def test_dilation_refused(registered):
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("vmamba", depth=5, output_stride=16, **TINY)


# ---------------------------------------------------------------------------- building blocks x scan modes


@pytest.mark.parametrize("building_block", BUILDING_BLOCKS)
@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 8, 5, 7)), (3, (1, 8, 3, 4, 5))])
def test_building_blocks(building_block, spatial_dims, shape):
    stage = VMambaStage(
        8,
        spatial_dims,
        num_blocks=1,
        building_block=building_block,
        state_channel=4,
        head_channel=4,
        mlp_hidden_ratio=1.0,
        chunk_size=8,
        drop_path=0.1,
    )
    assert stage.training
    x = torch.randn(shape, requires_grad=True)
    y = stage(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in stage.parameters())


@pytest.mark.parametrize("scan_mode", SCAN_MODES)
@pytest.mark.parametrize("flip_scan", [False, True])
@pytest.mark.parametrize("spatial_dims,shape", [(2, (1, 8, 4, 6)), (3, (1, 8, 2, 3, 4))])
def test_scan_modes(scan_mode, flip_scan, spatial_dims, shape):
    mixer = SS2D(8, spatial_dims, state_channel=4, scan_mode=scan_mode, flip_scan=flip_scan)
    assert mixer.num_directions == ops.num_directions(scan_mode, spatial_dims, flip_scan)
    assert mixer.num_directions == count_directions(scan_mode, spatial_dims, flip_scan)
    tokens = torch.randn(shape).movedim(1, -1)
    assert mixer(tokens).shape == tokens.shape


# ------------------------------------------------------------------- SS2D against a plain sequential loop


def _loop_scan(u, dt, a, b, c, d):
    """h_t = exp(dt_t a) h_{t-1} + dt_t b_t u_t ; y_t = <c_t, h_t> + d u_t (Gu & Dao 2023, eq. 2 + 4), one
    channel at a time. u, dt: (L,); a, b_t, c_t: (N,) (Mamba-1) — a is a vector, or a scalar broadcast
    (Mamba-2)."""
    h = torch.zeros(b.shape[1], dtype=torch.float64)
    out = []
    for t in range(u.shape[0]):
        h = torch.exp(dt[t] * a) * h + dt[t] * b[t] * u[t]
        out.append((c[t] * h).sum() + d * u[t])
    return torch.stack(out)


def _directions_2d(x, flip):
    """Sequences of a (C, H, W) map: row-major, column-major, then (with flip) both reversed."""
    seqs = [x.reshape(x.shape[0], -1), x.transpose(1, 2).reshape(x.shape[0], -1)]
    if flip:
        seqs += [s.flip(-1) for s in seqs]
    return seqs


def _undo_2d(seq, k, shape):
    height, width = shape
    if k >= 2:
        seq, k = seq.flip(-1), k - 2
    return seq.reshape(-1, height, width) if k == 0 else seq.reshape(-1, width, height).transpose(1, 2)


@pytest.mark.parametrize("version", [1, 2])
def test_ss2d_matches_sequential_loop(version):
    torch.manual_seed(0)
    channels, height, width = 4, 3, 4
    mixer = SS2D(
        channels,
        2,
        version=version,
        state_channel=3,
        inner_factor=1.0,
        head_channel=2,
        chunk_size=4,
        scan_mode="cross",
        flip_scan=True,
    ).double()
    with torch.no_grad():
        mixer.D.uniform_(0.5, 1.5)
    tokens = torch.randn(1, height, width, channels, dtype=torch.float64)
    got = mixer(tokens)

    with torch.no_grad():
        xz = tokens[0] @ mixer.in_proj.weight.T
        x, z = xz[..., : mixer.inner], xz[..., mixer.inner :]
        x = F.silu(mixer.conv(x.permute(2, 0, 1)[None]))[0]  # (D, H, W)
        n = mixer.state_channel
        merged = torch.zeros(mixer.inner, height, width, dtype=torch.float64)
        for k, seq in enumerate(_directions_2d(x, flip=True)):  # seq: (D, L)
            proj = mixer.x_proj_weight[k] @ seq
            if version == 1:
                r = mixer.dt_rank
                dt = F.softplus(mixer.dt_proj_weight[k] @ proj[:r] + mixer.dt_bias[k][:, None])  # (D, L)
                b, c = proj[r : r + n].T, proj[r + n :].T
                a = -torch.exp(mixer.A_log.view(-1, mixer.inner, n)[k])
                dd = mixer.D.view(-1, mixer.inner)[k]
                y = torch.stack([_loop_scan(seq[i], dt[i], a[i], b, c, dd[i]) for i in range(mixer.inner)])
            else:
                heads, p = mixer.num_heads, mixer.head_channel
                dt = F.softplus(proj[:heads] + mixer.dt_bias[k][:, None])  # (H, L)
                b, c = proj[heads : heads + n].T, proj[heads + n :].T
                a = -torch.exp(mixer.A_log.view(-1, heads)[k])
                dd = mixer.D.view(-1, heads)[k]
                y = torch.stack(
                    [_loop_scan(seq[i], dt[i // p], a[i // p], b, c, dd[i // p]) for i in range(mixer.inner)]
                )
            merged += _undo_2d(y, k, (height, width))
        y = F.layer_norm(merged.permute(1, 2, 0), (mixer.inner,), mixer.out_norm.weight, mixer.out_norm.bias)
        expected = (y * F.silu(z)) @ mixer.out_proj.weight.T
    torch.testing.assert_close(got[0], expected, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------------ Unet


@pytest.mark.parametrize("patch_size", [2, 4])  # 4: the stride-2 skip is a 0-channel placeholder
@pytest.mark.parametrize("spatial_dims,shape", [(2, (1, 3, 61, 75)), (3, (1, 3, 13, 17, 19))])
def test_unet_output_has_input_size(registered, spatial_dims, shape, patch_size):
    model = smp.Unet(
        encoder_name="vmamba",
        encoder_weights=None,
        encoder_depth=3,
        decoder_channels=(16, 8, 8),
        spatial_dims=spatial_dims,
        classes=2,
        patch_size=patch_size,
        **TINY,
    ).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], 2, *shape[2:])


# ------------------------------------------------------------------------------------------ time injection


@pytest.mark.parametrize("mode", ["gate_bias", "gate", "bias", "cross_attention"])
def test_time_injection_changes_output_and_has_gradients(mode):
    torch.manual_seed(0)
    encoder = FlemmeVMambaEncoder(depth=3, patch_size=2, time_embedding_dim=6, time_injection=mode, **TINY)
    injections = [m for m in encoder.modules() if type(m).__name__ == "EmbeddingInjection"]
    assert len(injections) == 3  # one per block, one block per stage
    x = torch.randn(2, 3, 13, 15)
    e1, e2 = torch.randn(2, 6, requires_grad=True), torch.randn(2, 6)
    out1 = encoder(x, e1)[-1]
    out2 = encoder(x, e2)[-1]
    assert not torch.allclose(out1, out2)
    out1.square().mean().backward()
    assert e1.grad is not None and e1.grad.abs().sum() > 0
    for injection in injections:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in injection.parameters())


def test_enable_time_embedding_after_construction_and_stage():
    encoder = FlemmeVMambaEncoder(depth=2, patch_size=2, **TINY)
    with pytest.raises(ValueError, match="time_emb"):
        encoder(torch.randn(1, 3, 8, 8), torch.randn(1, 4))
    encoder.enable_time_embedding(4, "bias")
    assert len(encoder(torch.randn(1, 3, 8, 8), torch.randn(1, 4))) == 3
    stage = VMambaStage(8, 3, num_blocks=2, time_embedding_dim=5, time_injection="gate", state_channel=4)
    x = torch.randn(1, 8, 3, 4, 5)
    assert not torch.allclose(stage(x, torch.randn(1, 5)), stage(x, torch.randn(1, 5)))
    assert torch.equal(stage(x), stage(x, None))


# ------------------------------------------------------------------------------------------ initialisation


@pytest.mark.parametrize("version", [1, 2])
def test_dt_and_a_initialisation(version):
    dt_min, dt_max = 0.01, 0.2
    mixer = SS2D(
        32,
        2,
        version=version,
        state_channel=5,
        head_channel=4,
        dt_min=dt_min,
        dt_max=dt_max,
        dt_init_floor=1e-4,
    )
    dt = F.softplus(mixer.dt_bias.detach())
    assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
    # log-uniform: the median lies near the geometric mean of the range
    assert abs(math.log(dt.median().item()) - 0.5 * (math.log(dt_min) + math.log(dt_max))) < 0.5
    a = -torch.exp(mixer.A_log.detach())
    if version == 1:  # S4D-real: A = -(1, 2, ..., N) for every channel
        assert torch.allclose(a, -torch.arange(1.0, 6.0).expand_as(a))
    else:  # Mamba-2: A uniform in [1, 16] per head
        assert ((-a >= 1 - 1e-5) & (-a <= 16 + 1e-5)).all()
    assert torch.equal(mixer.D.detach(), torch.ones_like(mixer.D))


def test_dt_floor_applies():
    mixer = SS2D(16, 2, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-3, state_channel=2)
    torch.testing.assert_close(F.softplus(mixer.dt_bias.detach()), torch.full_like(mixer.dt_bias, 1e-3))


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"building_block": "mamba"}, "building_block"),
        ({"scan_mode": "zigzag"}, "scan_mode"),
        ({"flip_scan": "yes"}, "flip_scan"),
        ({"normalization": "weird"}, "normalization"),
        ({"activation": "swishy"}, "activation"),
        ({"state_channel": 0}, "state_channel"),
        ({"conv_kernel_size": 0}, "conv_kernel_size"),
        ({"inner_factor": 0}, "inner_factor"),
        ({"dt_min": 0.0}, "dt_min"),
        ({"dt_min": 0.5, "dt_max": 0.1}, "dt_max"),
        ({"dt_init_floor": -1.0}, "dt_init_floor"),
        ({"dropout": 1.5}, "dropout"),
        ({"drop_path": -0.1}, "drop_path"),
        ({"mlp_hidden_ratio": -1}, "mlp_hidden_ratio"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"head_channel": 5, "building_block": "vmamba2"}, "head_channel"),
        ({"patch_size": 3}, "patch_size"),
        ({"patch_size": 16, "depth": 3}, "patch_size"),
        ({"down_channels": (8,), "depth": 4}, "down_channels"),
        ({"num_blocks": (1,), "depth": 4}, "num_blocks"),
        ({"patch_channel": 0}, "patch_channel"),
        ({"middle_channels": -2}, "middle_channels"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"time_injection": "concat", "time_embedding_dim": 4}, "time_injection"),
        ({"normalization": "group", "num_norm_groups": 3}, "num_norm_groups"),
    ],
)
def test_bad_arguments(kwargs, name):
    params = {**TINY, "depth": 3, "patch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        FlemmeVMambaEncoder(**params)


def test_bad_inputs():
    encoder = FlemmeVMambaEncoder(depth=2, patch_size=2, **TINY)
    with pytest.raises(ValueError, match="input"):
        encoder(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="input"):
        encoder(torch.randn(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="VMambaStage"):
        VMambaStage(8, 2, num_blocks=1, state_channel=2)(torch.randn(1, 7, 4, 4))


def test_variants_build_on_meta_device():
    expected = {"vmamba": 96, "vmamba_small": 96, "vmamba_base": 128}
    for name in NAMES:
        entry = flemme_vmamba_encoders[name]
        with torch.device("meta"):
            encoder = entry["encoder"](**entry["params"])
        assert encoder.out_channels[2] == expected[name]
        assert sum(p.numel() for p in encoder.parameters()) > 1_000_000
