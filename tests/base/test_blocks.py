"""Block toolkit (smp_like.base.blocks / norms / attention): every option x 1D/2D/3D, forward and backward."""

import itertools
import math

import pytest
import torch
from torch import nn

from smp_like.base.attention import ATTENTIONS, SelfAttentionNd, make_attention
from smp_like.base.blocks import (
    BUILDING_BLOCKS,
    DOWN_MODES,
    SKIP_MODES,
    UP_MODES,
    ConvBlock,
    Downsample,
    ResConv,
    SkipFusion,
    Upsample,
    build_block,
    check_order,
)
from smp_like.base.norms import (
    NORMALIZATIONS,
    ChannelRMSNorm,
    InstanceNormNd,
    make_activation,
    make_norm_layer,
)

DIMS = (1, 2, 3)
SIZES = {1: (9,), 2: (7, 9), 3: (5, 6, 7)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _input(dims, channels=4, batch=2, sizes=None):
    return torch.randn(batch, channels, *(sizes or SIZES[dims]), requires_grad=True)


def _forward_backward(module, x, *args):
    y = module(x, *args)
    y.float().pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad), [
        n for n, p in module.named_parameters() if p.grad is None
    ]
    return y


@pytest.mark.parametrize("dims", DIMS)
def test_every_order_permutation(dims):
    orders = ["".join(p) for p in itertools.permutations("ncdax")]
    orders += ["c", "ca", "nc", "cn", "xc", "cx", "dc", "nac", "cnax"]
    for order in orders:
        block = ConvBlock(
            4, 6, dims, order=order, norm="group", num_norm_groups=2, dropout=0.1, attention="se"
        )
        x = _input(dims)
        y = _forward_backward(block, x)
        assert y.shape == (2, 6, *SIZES[dims]), order
        # Sub-layers run in the order the string gives.
        assert "".join(block._sequence) == order


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("norm", NORMALIZATIONS + (2, None))
@pytest.mark.parametrize("order", ["cna", "nac"])
def test_norms_before_and_after_conv(dims, norm, order):
    block = ConvBlock(4, 6, dims, order=order, norm=norm, num_norm_groups=4)
    for training in (True, False):
        block.train(training)
        x = _input(dims)
        assert _forward_backward(block, x).shape == (2, 6, *SIZES[dims])


@pytest.mark.parametrize("dims", DIMS)
def test_instance_norm_single_element_train_and_eval(dims):
    block = ConvBlock(4, 4, dims, norm="instance", order="cna")
    for training in (True, False):
        block.train(training)
        x = torch.randn(1, 4, *([1] * dims), requires_grad=True)
        assert _forward_backward(block, x).shape == x.shape
    # One element per channel: the normalised value is 0, so the norm returns its bias.
    norm = InstanceNormNd(3)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    out = norm(torch.randn(2, 3, *([1] * dims)))
    assert torch.allclose(out.flatten(1), torch.tensor([[1.0, -2.0, 3.0]] * 2))


@pytest.mark.parametrize("dims", DIMS)
def test_instance_norm_matches_torch_instance_norm(dims):
    x = torch.randn(2, 3, *SIZES[dims])
    ours = InstanceNormNd(3)
    reference = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](3, affine=True)
    with torch.no_grad():
        for module in (ours, reference):
            module.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
            module.bias.copy_(torch.tensor([0.1, 0.0, 3.0]))
    assert torch.allclose(ours(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("dims", DIMS)
def test_channel_norms_against_formulas(dims):
    x = torch.randn(2, 5, *SIZES[dims])
    # RMSNorm (Zhang & Sennrich 2019, eq. 4), one position at a time.
    rms = ChannelRMSNorm(5)
    with torch.no_grad():
        rms.weight.copy_(torch.arange(1.0, 6.0))
    out = rms(x)
    flat_x, flat_out = x.flatten(2), out.flatten(2)
    for n in range(2):
        for p in range(flat_x.shape[2]):
            v = flat_x[n, :, p]
            expected = v / math.sqrt(float((v**2).mean()) + 1e-6) * torch.arange(1.0, 6.0)
            assert torch.allclose(flat_out[n, :, p], expected, atol=1e-5)
    # LayerNorm over channels = nn.LayerNorm on channels-last.
    layer = make_norm_layer("layer", 5, dims)
    expected = nn.functional.layer_norm(torch.movedim(x, 1, -1), (5,)).movedim(-1, 1)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    # Channel norms work on a single position too.
    for name in ("layer", "rms"):
        make_norm_layer(name, 5, dims)(torch.randn(1, 5, *([1] * dims)))


def test_group_norm_groups():
    assert make_norm_layer("group", 12, 2, num_norm_groups=8).num_groups == 6  # largest divisor <= 8
    assert make_norm_layer(3, 12, 2).num_groups == 3
    with pytest.raises(ValueError, match="divisor"):
        make_norm_layer(5, 12, 2)
    with pytest.raises(ValueError, match="normalization"):
        make_norm_layer("weight", 12, 2)
    with pytest.raises(ValueError, match="num_norm_groups"):
        make_norm_layer("group", 12, 2, num_norm_groups=0)


def test_activation_by_any_torch_name():
    expected = {
        "relu": nn.ReLU,
        "ReLU": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "SiLU": nn.SiLU,
        "LeakyReLU": nn.LeakyReLU,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
        "mish": nn.Mish,
        "hardswish": nn.Hardswish,
        "tanh": nn.Tanh,
        "prelu": nn.PReLU,
        "identity": nn.Identity,
    }
    for name, cls in expected.items():
        assert isinstance(make_activation(name), cls), name
    assert isinstance(make_activation(None), nn.Identity)
    assert isinstance(make_activation(nn.GELU), nn.GELU)
    with pytest.raises(ValueError, match="activation"):
        make_activation("relux")
    with pytest.raises(ValueError, match="activation"):
        make_activation("threshold")  # needs arguments


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("attention", ATTENTIONS + (None,))
def test_attention_options(dims, attention):
    block = ConvBlock(4, 8, dims, order="cnax", attention=attention)
    x = _input(dims)
    assert _forward_backward(block, x).shape == (2, 8, *SIZES[dims])
    # Also on a single position, in training mode.
    module = make_attention(attention, 8, dims)
    x1 = torch.randn(2, 8, *([1] * dims), requires_grad=True)
    assert _forward_backward(module, x1).shape == x1.shape


def test_self_attention_against_explicit_formula():
    torch.manual_seed(1)
    module = SelfAttentionNd(6, num_heads=2).eval()
    x = torch.randn(2, 6, 3, 4)
    tokens = nn.functional.layer_norm(
        x.flatten(2).transpose(1, 2), (6,), module.norm.weight, module.norm.bias
    )
    w, b = module.attention.in_proj_weight, module.attention.in_proj_bias
    q, k, v = (tokens @ w[i * 6 : (i + 1) * 6].T + b[i * 6 : (i + 1) * 6] for i in range(3))
    heads = []
    for h in range(2):
        sl = slice(3 * h, 3 * h + 3)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(3), dim=-1)
        heads.append(weights @ v[..., sl])
    out = torch.cat(heads, dim=-1) @ module.attention.out_proj.weight.T + module.attention.out_proj.bias
    expected = x + out.transpose(1, 2).reshape(x.shape)
    assert torch.allclose(module(x), expected, atol=1e-5)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("name", BUILDING_BLOCKS)
@pytest.mark.parametrize("stride", [1, 2])
def test_building_blocks(dims, name, stride):
    block = build_block(name, 4, 6, dims, stride=stride, norm="batch", time_embedding_dim=5)
    x = _input(dims)
    y = _forward_backward(block, x, torch.randn(2, 5))
    assert y.shape == (2, 6, *[-(-s // stride) for s in SIZES[dims]])


def test_res_conv_shortcut():
    assert isinstance(ResConv(4, 4, 2).shortcut, nn.Identity)
    assert isinstance(ResConv(4, 6, 2).shortcut, nn.Conv2d)
    assert ResConv(4, 4, 2, stride=2).shortcut.stride == (2, 2)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("mode", DOWN_MODES)
@pytest.mark.parametrize("factor", [2, 3])
def test_downsample_gives_ceil_sizes(dims, mode, factor):
    down = Downsample(4, 6, dims, mode=mode, factor=factor)
    x = _input(dims)
    y = _forward_backward(down, x)
    assert y.shape == (2, 6, *[-(-s // factor) for s in SIZES[dims]])


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("mode", UP_MODES)
def test_upsample(dims, mode):
    up = Upsample(6, 4, dims, mode=mode)
    x = _input(dims, channels=6, sizes=[-(-s // 2) for s in SIZES[dims]])
    assert up(x).shape == (2, 4, *[2 * -(-s // 2) for s in SIZES[dims]])
    y = _forward_backward(up, x, SIZES[dims])  # back to the odd size
    assert y.shape == (2, 4, *SIZES[dims])


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("mode", SKIP_MODES)
@pytest.mark.parametrize("skip_channels", [4, 6])
def test_skip_fusion(dims, mode, skip_channels):
    fusion = SkipFusion(mode, 4, skip_channels, dims)
    x, skip = _input(dims), _input(dims, channels=skip_channels)
    y = fusion(x, skip)
    y.sum().backward()
    assert y.shape == (2, fusion.out_channels, *SIZES[dims])
    assert fusion.out_channels == {"cat": 4 + skip_channels, "add": 4, "none": 4}[mode]
    if mode != "none":
        assert skip.grad is not None
        with pytest.raises(ValueError, match="spatial size"):
            fusion(x, skip[..., :-1])


@pytest.mark.parametrize("mode", ["gate_bias", "gate", "bias", "cross_attention"])
def test_time_embedding_injection(mode):
    block = build_block("double_conv", 4, 6, 2, norm="group", num_norm_groups=2)
    x = torch.randn(2, 4, 7, 9)
    plain = block(x)
    block.enable_time_embedding(5, mode)
    e1, e2 = torch.randn(2, 5), torch.randn(2, 5)
    assert torch.equal(block(x), plain)  # no embedding: unchanged path
    assert not torch.allclose(block(x, e1), block(x, e2))
    block(x, e1).pow(2).mean().backward()
    for conv_block in block.blocks:
        grads = [p.grad for p in conv_block.injection.parameters()]
        # (With a single embedding vector, cross-attention has one key: its query side gets zero gradient.)
        assert grads and all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_injection_point_follows_the_norm():
    assert ConvBlock(4, 4, 2, order="cna")._inject_after == "n"
    assert ConvBlock(4, 4, 2, order="nca")._inject_after == "c"
    assert ConvBlock(4, 4, 2, order="cna", norm=None)._inject_after == "c"


def test_bad_arguments():
    for order in ("", "na", "cc", "cnq", "ncnA"):
        with pytest.raises(ValueError, match="order"):
            check_order(order)
    with pytest.raises(ValueError, match="order"):
        ConvBlock(4, 4, 2, order="cnn")
    with pytest.raises(ValueError, match="attention"):
        ConvBlock(4, 4, 2, attention="global")
    with pytest.raises(ValueError, match="dropout"):
        ConvBlock(4, 4, 2, dropout=1.0)
    with pytest.raises(ValueError, match="spatial_dims"):
        ConvBlock(4, 4, 4)
    with pytest.raises(ValueError, match="building_block"):
        build_block("triple_conv", 4, 4, 2)
    with pytest.raises(ValueError, match="down_mode"):
        Downsample(4, 4, 2, mode="stride")
    with pytest.raises(ValueError, match="up_mode"):
        Upsample(4, 4, 2, mode="pool")
    with pytest.raises(ValueError, match="skip_mode"):
        SkipFusion("mul", 4)
    with pytest.raises(ValueError, match="time_injection"):
        ConvBlock(4, 4, 2, time_embedding_dim=3, time_injection="film")
    with pytest.raises(ValueError, match="skip tensor"):
        SkipFusion("cat", 4)(torch.randn(1, 4, 3, 3))
