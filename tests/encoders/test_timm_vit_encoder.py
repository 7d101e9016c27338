"""Plain timm ViTs: DPT's TimmViTEncoder against SMP's, and the ViTDet pyramid encoder that serves every decoder."""

import copy
import io
import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
import torch.nn.functional as F

import smp_like as smp
from smp_like.encoders import get_encoder
from smp_like.encoders.timm_universal import TimmUniversalEncoder, is_plain_vit
from smp_like.encoders.timm_vit import TimmViTEncoder, TimmViTPyramidEncoder, uniform_block_indices

SMALL_DPT = dict(decoder_fusion_channels=8)


def _run(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


def smp_vit_encoder(name, depth=4, **kwargs):
    """SMP's DPT encoder for ``tu-<name>`` (its TimmViTEncoder, built the way DPT builds it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no prefix tokens" for hierarchical models
        model = smp_oracle.DPT(f"tu-{name}", encoder_weights=None, encoder_depth=depth,
                               decoder_intermediate_channels=(8,) * depth, **SMALL_DPT, **kwargs)
    return model.encoder


# ----------------------------------------------------------------------------- DPT's encoder vs SMP's


@pytest.mark.conformance
@pytest.mark.parametrize(
    "name, depth, kwargs",
    [
        ("test_vit", 4, {}),
        ("test_vit", 1, {}),
        ("test_vit", 3, {}),
        ("test_vit", 6, {}),
        ("test_vit", 4, dict(output_indices=[-1, 1, 3, 0])),
        ("test_vit", 4, dict(reg_tokens=3)),
        ("test_vit", 4, dict(patch_size=8)),
        ("test_convnext", 4, {}),
        ("test_resnet", 3, {}),
    ],
    ids=lambda v: str(v),
)
def test_dpt_encoder_matches_smp(name, depth, kwargs):
    smp_kwargs = dict(kwargs)
    if "output_indices" in smp_kwargs:
        smp_kwargs["encoder_output_indices"] = smp_kwargs.pop("output_indices")
    theirs = smp_vit_encoder(name, depth, **smp_kwargs)
    ours = TimmViTEncoder(name, pretrained=None, depth=depth, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for attribute in ("out_channels", "output_strides", "output_stride", "has_prefix_tokens", "input_size",
                      "is_fixed_input_size"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    x = torch.randn(2, 3, 64, 96)
    (ours_f, ours_p), (their_f, their_p) = _run(ours, x), _run(theirs, x)
    assert len(ours_f) == len(their_f) == depth
    for a, b in zip(ours_f, their_f, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    for a, b in zip(ours_p, their_p, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_uniform_block_indices_golden_numbers():
    assert uniform_block_indices(6, 4) == [0, 2, 3, 5]
    assert uniform_block_indices(12, 4) == [2, 5, 8, 11]
    assert uniform_block_indices(20, 4) == [4, 9, 14, 19]  # SMP's docstring example
    assert uniform_block_indices(8, 3) == [1, 4, 7]
    assert uniform_block_indices(9, 5) == [0, 2, 4, 6, 8]
    assert uniform_block_indices(8, 6) == [0, 1, 3, 4, 5, 7]
    assert uniform_block_indices(5, 1) == [4]
    with pytest.raises(ValueError, match="cannot exceed.*7 levels.*6 blocks"):
        uniform_block_indices(6, 7)


@pytest.mark.conformance
@pytest.mark.parametrize("name", ["test_vit", "test_vit3"])
def test_default_indices_match_smp_for_every_depth(name):
    with torch.device("meta"):
        ours = TimmViTEncoder(name, pretrained=None)
        blocks = len(ours.model.blocks)
        for depth in range(1, blocks + 1):
            theirs = smp_vit_encoder(name, depth)
            ours = TimmViTEncoder(name, pretrained=None, depth=depth)
            assert ours.output_indices == list(theirs._output_indices), depth


def test_duplicate_block_is_read_twice():
    encoder = TimmViTEncoder("test_vit", pretrained=None, output_indices=[5, 5, 1, 1])
    features, prefix = _run(encoder, torch.randn(1, 3, 32, 48))
    assert encoder.output_indices == [1, 1, 5, 5] and len(features) == len(prefix) == 4
    torch.testing.assert_close(features[0], features[1], rtol=0, atol=0)
    torch.testing.assert_close(features[2], features[3], rtol=0, atol=0)


def test_dynamic_img_size_is_the_default_where_timm_has_it():
    with torch.device("meta"):
        dynamic = TimmViTEncoder("test_vit3", pretrained=None)  # timm's default for test_vit3: fixed size
        fixed = TimmViTEncoder("test_vit3", pretrained=None, dynamic_img_size=False)
        relpos = TimmViTEncoder("test_vit_relpos", pretrained=None)  # no such option: stays fixed
    assert dynamic.model.dynamic_img_size and dynamic.fixed_input_size is None
    assert not fixed.model.dynamic_img_size and fixed.fixed_input_size == (160, 160)
    assert relpos.fixed_input_size == (160, 160)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(depth=0), r"encoder_depth.*>= 1.*0"),
        (dict(depth=7), r"cannot exceed.*7.*6 blocks"),
        (dict(output_indices=[1, 2, 3]), r"Length of `encoder_output_indices`.*3.*depth 4"),
        (dict(output_indices=[1, 2, 3, 6]), r"range \[-6, 6\).*6 blocks.*index 6"),
        (dict(output_indices=[1, 2, 3, 1.5]), r"sequence of ints"),
        (dict(output_indices=5), r"sequence of ints"),
        (dict(in_chans=4), r"in_chans.*in_channels"),
        (dict(in_channels=0), r"in_channels.*0"),
    ],
)
def test_dpt_encoder_bad_input(kwargs, pattern):
    with torch.device("meta"), pytest.raises(ValueError, match=pattern):
        TimmViTEncoder("test_vit", pretrained=None, **kwargs)


# ----------------------------------------------------------------------------- the pyramid encoder


def check_contract(encoder, features, x):
    """The registry's encoder contract (tests/encoders/test_encoder_contract.py), for the pyramid."""
    assert len(features) == encoder.depth + 1 == len(encoder.out_channels) == len(encoder.reductions)
    assert encoder.reductions[0] == 1 and encoder.output_stride == encoder.reductions[-1]
    for feature, channels, reduction in zip(features, encoder.out_channels, encoder.reductions):
        assert feature.shape[:2] == (x.shape[0], channels)
        assert tuple(feature.shape[2:]) == tuple(-(-s // reduction) for s in x.shape[2:]), (reduction, feature.shape)


def test_get_encoder_serves_plain_vits_with_a_pyramid():
    encoder = get_encoder("tu-test_vit", weights=None)
    assert type(encoder) is TimmViTPyramidEncoder and isinstance(encoder, TimmUniversalEncoder)
    # ViTDet channels: D/4 at stride 4, D/2 at 8, D at 16 and 32 (test_vit: D = 64); 0-channel stride-2 slot.
    assert encoder.out_channels == (3, 0, 16, 32, 64, 64)
    assert encoder.reductions == (1, 2, 4, 8, 16, 32)
    assert encoder.output_indices == [0, 2, 3, 5] and encoder.patch_size == 16
    assert not any(k.startswith("model.head") for k in encoder.state_dict())  # unused classifier dropped
    assert type(get_encoder("tu-test_resnet", weights=None)) is TimmUniversalEncoder
    assert is_plain_vit("test_vit") and is_plain_vit("test_vit.r160_in1k")
    assert not is_plain_vit("test_resnet") and not is_plain_vit("no_such_model_xyz")


@pytest.mark.parametrize("size", [(64, 96), (65, 70), (16, 17)])
@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_pyramid_contract(depth, size):
    encoder = get_encoder("tu-test_vit", depth=depth, weights=None, in_channels=2)
    x = torch.randn(2, 2, *size)
    check_contract(encoder, _run(encoder, x), x)
    assert encoder.in_channels == 2 and encoder.depth == depth and encoder.spatial_dims == 2


@pytest.mark.parametrize("output_stride", [8, 16])
def test_pyramid_dilation_keeps_the_contract(output_stride):
    encoder = get_encoder("tu-test_vit", weights=None, output_stride=output_stride)
    x = torch.randn(1, 3, 64, 96)
    assert encoder.reductions == tuple(min(2**i, output_stride) for i in range(6))
    check_contract(encoder, _run(encoder, x), x)


def test_pyramid_patch_size_not_a_power_of_two():
    # Tokens at stride 14 are resized to the stride-16 grid first, so the contract still holds.
    encoder = get_encoder("tu-test_vit", weights=None, patch_size=14)
    assert encoder.patch_size == 14
    for size in [(56, 70), (65, 64)]:
        x = torch.randn(1, 3, *size)
        check_contract(encoder, _run(encoder, x), x)


def _conv_transpose_2x2(x, conv):
    """Reference for a kernel-2 stride-2 transposed conv: every input pixel paints its own 2x2 block."""
    out = torch.einsum("nchw,cokl->nohkwl", x, conv.weight)  # (N, O, H, 2, W, 2)
    n, o, h, _, w, _ = out.shape
    return out.reshape(n, o, 2 * h, 2 * w) + conv.bias[None, :, None, None]


def test_pyramid_levels_against_reference():
    torch.manual_seed(0)
    encoder = get_encoder("tu-test_vit", weights=None).eval()
    for p in encoder.pyramid.parameters():  # make the LayerNorm affine non-trivial
        p.data.normal_(0, 0.5)
    x = torch.randn(2, 3, 64, 96)
    features = _run(encoder, x)
    with torch.no_grad():
        tokens = encoder.model.forward_intermediates(x, indices=6, norm=True, intermediates_only=True)
    up4, up8 = encoder.pyramid[0], encoder.pyramid[1]
    with torch.no_grad():
        mid = _conv_transpose_2x2(tokens[0], up4[0])
        mid = F.layer_norm(mid.permute(0, 2, 3, 1), (mid.shape[1],), up4[1].weight, up4[1].bias, up4[1].eps)
        mid = F.gelu(mid.permute(0, 3, 1, 2))
        expected4 = _conv_transpose_2x2(mid, up4[3])
        expected8 = _conv_transpose_2x2(tokens[2], up8[0])
    torch.testing.assert_close(features[2], expected4, rtol=0, atol=1e-5)  # block 0 -> stride 4
    torch.testing.assert_close(features[3], expected8, rtol=0, atol=1e-5)  # block 2 -> stride 8
    torch.testing.assert_close(features[4], tokens[3], rtol=0, atol=0)  # block 3 -> stride 16 (identity)
    torch.testing.assert_close(features[5], F.max_pool2d(tokens[5], 2), rtol=0, atol=0)  # block 5 -> 32


def test_pyramid_pads_to_the_patch_size_and_crops():
    encoder = get_encoder("tu-test_vit", weights=None).eval()
    x = torch.randn(1, 3, 50, 70)
    padded = F.pad(x, (0, 10, 0, 14))
    for small, large in zip(_run(encoder, x)[2:], _run(encoder, padded)[2:]):
        torch.testing.assert_close(small, large[:, :, : small.shape[2], : small.shape[3]], rtol=0, atol=1e-6)


def test_pyramid_output_indices_option():
    encoder = get_encoder("tu-test_vit", weights=None, output_indices=[-1] * 4)  # ViTDet: last block only
    assert encoder.output_indices == [5, 5, 5, 5]
    features = _run(encoder, torch.randn(1, 3, 64, 64))
    torch.testing.assert_close(features[5], F.max_pool2d(features[4], 2), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"Length of `output_indices`.*2.*depth 4"):
        get_encoder("tu-test_vit", weights=None, output_indices=[1, 2])


@pytest.mark.parametrize("depth", [1, 6])
def test_pyramid_depth_out_of_range(depth):
    with pytest.raises(ValueError, match=r"depth.*2\.\.5"):
        get_encoder("tu-test_vit", depth=depth, weights=None)


def test_pyramid_refuses_3d_and_fixed_size_mismatch():
    with pytest.raises(ValueError, match=r"2D only.*spatial_dims=3"):
        get_encoder("tu-test_vit", weights=None, spatial_dims=3)
    fixed = get_encoder("tu-test_vit_relpos", weights=None).eval()  # no dynamic_img_size in timm
    assert fixed.fixed_input_size == (160, 160)
    with pytest.raises(ValueError, match=r"only \(160, 160\).*got \(64, 64\)"):
        _run(fixed, torch.randn(1, 3, 64, 64))
    x = torch.randn(1, 3, 150, 155)  # pads to 160 x 160
    check_contract(fixed, _run(fixed, x), x)


def test_unservable_pattern_still_refused():
    with pytest.raises(ValueError, match=r"reductions \[8, 16, 32\]"):
        get_encoder("tu-pit_ti_224", weights=None)


def test_pyramid_copies_and_pickles():
    encoder = get_encoder("tu-test_vit", depth=3, weights=None).eval()
    buffer = io.BytesIO()
    torch.save(encoder, buffer)
    buffer.seek(0)
    x = torch.randn(1, 3, 32, 32)
    for clone in (copy.deepcopy(encoder), torch.load(buffer, weights_only=False)):
        assert type(clone) is TimmViTPyramidEncoder
        for a, b in zip(_run(clone, x), _run(encoder, x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- a plain ViT in Unet


def test_unet_with_a_plain_vit_trains_one_step():
    torch.manual_seed(0)
    model = smp.Unet("tu-test_vit", encoder_weights=None, decoder_channels=(32, 16, 16, 8, 8), classes=3,
                     aux_params=dict(classes=2))
    x, target = torch.randn(2, 3, 64, 96), torch.randint(0, 3, (2, 64, 96))
    mask, label = model(x)
    assert mask.shape == (2, 3, 64, 96) and label.shape == (2, 2)
    loss = F.cross_entropy(mask, target) + F.cross_entropy(label, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    # Every parameter takes part: ViT (cls token, position embeddings), pyramid, decoder, heads.
    idle = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not idle, idle
    before = model.encoder.pyramid[0][0].weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.encoder.pyramid[0][0].weight)
    with torch.no_grad():
        assert torch.isfinite(model(x)[0]).all()


@pytest.mark.parametrize("size", [(65, 70), (33, 47)])
def test_unet_with_a_plain_vit_any_size(size):
    model = smp.Unet("tu-test_vit", encoder_weights=None, encoder_depth=4, decoder_channels=(32, 16, 8, 8),
                     classes=2).eval()
    assert _run(model, torch.randn(1, 3, *size)).shape == (1, 2, *size)


def test_unet_with_a_plain_vit_saves_and_loads(tmp_path):
    model = smp.Unet("tu-test_vit", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8)).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = smp.from_pretrained(tmp_path / "m")
    x = torch.randn(1, 3, 48, 64)
    torch.testing.assert_close(_run(loaded, x), _run(model, x), rtol=0, atol=0)
