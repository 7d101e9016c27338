"""Unet ``decoder_block`` (conv / res_conv / swin / vmamba) x ``decoder_skip`` (cat / add / none).

Checks: output of the input's size for odd 2D / 3D sizes, with a CNN encoder and with the Flemme encoders the blocks
mirror; one training step reaches every decoder block; ``none`` really ignores the skips; the default stays SMP's
(module types, state-dict keys, outputs, config.json); save/load round trip; named errors; time embedding and deep
supervision on the new blocks.
"""

import itertools

import pytest
import torch

import smp_like as smp
from smp_like.decoders.unet.decoder import (
    DECODER_BLOCKS,
    DECODER_SKIPS,
    FlemmeDecoderBlock,
    UnetDecoderBlock,
    decoder_block_options,
)

NEW_KEYS = ("decoder_block", "decoder_skip", "decoder_block_kwargs")

# Small stage options per block (one block per stage keeps the test fast).
BLOCK_KWARGS = {
    "conv": None,
    "res_conv": {"norm": "group", "num_norm_groups": 4},
    "swin": {"num_blocks": 1, "num_heads": 2, "window_size": 4},
    "vmamba": {"num_blocks": 1, "state_channel": 4, "head_channel": 4},
}

RESNET = dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8))

# Small Flemme encoders (registered names) and the decoder block that mirrors each.
FLEMME = {
    "cnn": (dict(patch_channel=8, down_channels=(8, 16, 16), middle_channels=(), num_blocks=1), "res_conv"),
    "swin": (
        dict(patch_size=4, patch_channel=8, down_channels=(16, 16), num_blocks=1, num_heads=2, window_size=4),
        "swin",
    ),
    "vmamba": (
        dict(patch_size=2, patch_channel=8, down_channels=(16, 16), num_blocks=1, state_channel=4, drop_path=0.0),
        "vmamba",
    ),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(block, skip, spatial_dims=2, **overrides):
    options = dict(RESNET, decoder_block=block, decoder_skip=skip, decoder_block_kwargs=BLOCK_KWARGS[block])
    options.update(overrides)
    return smp.Unet(spatial_dims=spatial_dims, **options)


def train_step(model, x):
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], 1, *x.shape[2:])
    loss = out.square().mean()
    assert torch.isfinite(loss)
    loss.backward()
    for i, block in enumerate(model.decoder.blocks):
        grads = [p.grad for p in block.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient in block {i}"
    return out


@pytest.mark.parametrize("block,skip", list(itertools.product(DECODER_BLOCKS, DECODER_SKIPS)))
def test_every_combination_2d_odd_size(block, skip):
    torch.manual_seed(0)
    model = build(block, skip)
    expected = UnetDecoderBlock if (block, skip) == ("conv", "cat") else FlemmeDecoderBlock
    assert all(type(b) is expected for b in model.decoder.blocks)
    train_step(model, torch.randn(2, 3, 37, 45))


SUBSET_3D = [(b, s) for b in DECODER_BLOCKS for s in ("add", "none")] + [("swin", "cat")]


@pytest.mark.parametrize("block,skip", SUBSET_3D)
def test_3d_subset_odd_size(block, skip):
    torch.manual_seed(0)
    model = build(block, skip, spatial_dims=3, decoder_channels=(8, 8, 8))
    train_step(model, torch.randn(1, 3, 9, 13, 11))


@pytest.mark.parametrize("encoder", list(FLEMME))
@pytest.mark.parametrize("skip", DECODER_SKIPS)
def test_flemme_u_shapes_2d(encoder, skip):
    """Flemme's UNet / SwinU / VMambaU: the Flemme encoder with the decoder block that mirrors it."""
    torch.manual_seed(0)
    encoder_kwargs, block = FLEMME[encoder]
    model = smp.Unet(
        encoder, encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8), decoder_block=block,
        decoder_skip=skip, decoder_block_kwargs=BLOCK_KWARGS[block], **encoder_kwargs,
    )
    train_step(model, torch.randn(1, 3, 37, 45))


@pytest.mark.parametrize("encoder", list(FLEMME))
def test_flemme_u_shapes_3d(encoder):
    torch.manual_seed(0)
    encoder_kwargs, block = FLEMME[encoder]
    model = smp.Unet(
        encoder, encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8), decoder_block=block,
        decoder_block_kwargs=BLOCK_KWARGS[block], spatial_dims=3, **encoder_kwargs,
    )
    train_step(model, torch.randn(1, 3, 9, 13, 11))


def _output_with_perturbed_skip(model, x, index):
    """The model's output when encoder feature ``index`` (a skip) is replaced by noise through a forward hook."""

    def perturb(module, inputs, features):
        features = list(features)
        features[index] = torch.randn_like(features[index]) * 10
        return features

    handle = model.encoder.register_forward_hook(perturb)
    try:
        with torch.no_grad():
            return model(x)
    finally:
        handle.remove()


@pytest.mark.parametrize("block", DECODER_BLOCKS)
def test_skip_none_ignores_skips_while_cat_and_add_use_them(block):
    x = torch.randn(1, 3, 37, 45)
    for skip in DECODER_SKIPS:
        torch.manual_seed(0)
        model = build(block, skip).eval()
        with torch.no_grad():
            reference = model(x)
        for index in (1, 2):  # both skips of a depth-3 encoder (feature 3 is the bottleneck)
            changed = (_output_with_perturbed_skip(model, x, index) - reference).abs().max().item()
            if skip == "none":
                assert changed == 0, (skip, index)
            else:
                assert changed > 1e-6, (skip, index)


def test_default_is_smp_block_keys_outputs_and_config():
    torch.manual_seed(0)
    default = smp.Unet(**RESNET).eval()
    torch.manual_seed(0)
    explicit = smp.Unet(**RESNET, decoder_block="conv", decoder_skip="cat", decoder_block_kwargs=None).eval()
    # Same modules and keys as SMP's UnetDecoderBlock, block by block.
    channels = default.encoder.out_channels
    ins = [channels[-1], 16, 8]
    skips = [channels[-2], channels[-3], 0]
    for block, i, s, o in zip(default.decoder.blocks, ins, skips, (16, 8, 8)):
        assert type(block) is UnetDecoderBlock
        assert list(block.state_dict()) == list(UnetDecoderBlock(i, s, o).state_dict())
    assert list(default.state_dict()) == list(explicit.state_dict())
    explicit.load_state_dict(default.state_dict())
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(default(x), explicit(x))
    for model in (default, explicit):
        config = model.get_config()
        assert not set(NEW_KEYS) & set(config), config
    # A non-default block is recorded.
    config = build("swin", "add").get_config()
    assert config["decoder_block"] == "swin" and config["decoder_skip"] == "add"
    assert config["decoder_block_kwargs"] == BLOCK_KWARGS["swin"]
    assert "decoder_block_kwargs" not in build("conv", "none").get_config()


def test_save_load_round_trip_non_default_block(tmp_path):
    torch.manual_seed(0)
    model = build("vmamba", "add").eval()
    model.save_pretrained(tmp_path / "u")
    loaded = smp.Unet.from_pretrained(tmp_path / "u").eval()
    assert type(loaded.decoder.blocks[0]) is FlemmeDecoderBlock
    assert loaded.get_config() == model.get_config()
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("block", ["res_conv", "swin", "vmamba"])
def test_time_embedding_inside_every_alternative_block(block):
    """res_conv / swin / vmamba blocks take the embedding themselves: injections inside every block body (no hooks
    after the blocks), the vector reaches them as decoder(features, time_emb), in training (deep supervision too)."""
    torch.manual_seed(0)
    model = build(block, "cat", time_embedding_dim=8, deep_supervision=True)
    assert len(model.time_injections) == 0 and model.decoder.time_embedding_enabled
    injections = [
        [m for m in b.modules() if type(m).__name__ == "EmbeddingInjection"] for b in model.decoder.blocks
    ]
    assert all(len(per_block) >= 1 for per_block in injections)
    x = torch.randn(2, 3, 37, 45)
    model.eval()
    out = model(x, torch.tensor([1, 50]))
    assert out.shape == (2, 1, 37, 45) and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x, torch.tensor([2, 900])))
    model.train()
    main, sides = model(x, torch.tensor([1, 50]))
    (main.square().mean() + sum(s.square().mean() for s in sides)).backward()
    assert model.time_embedding.mlp[0].weight.grad.abs().sum() > 0
    for per_block in injections:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for m in per_block for p in m.parameters())


def test_conv_decoder_block_gets_the_embedding_after_each_block():
    torch.manual_seed(0)
    model = build("conv", "add", time_embedding_dim=8)
    assert len(model.time_injections) == len(model.decoder.blocks)
    assert not model.decoder.blocks_take_time_embedding
    with pytest.raises(ValueError, match="no time embedding"):
        model.decoder.enable_time_embedding(8)


@pytest.mark.parametrize("block", ["res_conv", "swin"])
def test_deep_supervision_with_new_blocks(block):
    torch.manual_seed(0)
    model = build(block, "none", deep_supervision=True).train()
    main, sides = model(torch.randn(1, 3, 37, 45))
    assert main.shape == (1, 1, 37, 45)
    assert len(sides) == 3 and all(side.shape[1] == 1 for side in sides)
    assert sides[-1].shape[2:] == (37, 45)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match=r"decoder_block.*'conv', 'res_conv', 'swin', 'vmamba'.*'mamba'"):
        smp.Unet(**RESNET, decoder_block="mamba")
    with pytest.raises(ValueError, match=r"decoder_skip.*'cat', 'add', 'none'.*'concat'"):
        smp.Unet(**RESNET, decoder_skip="concat")
    with pytest.raises(ValueError, match=r"decoder_block_kwargs.*window_size"):
        smp.Unet(**RESNET, decoder_block="vmamba", decoder_block_kwargs={"window_size": 4})
    with pytest.raises(ValueError, match=r"decoder_block_kwargs.*'conv'"):
        smp.Unet(**RESNET, decoder_block_kwargs={"norm": "group"})
    with pytest.raises(TypeError, match="decoder_block_kwargs"):
        smp.Unet(**RESNET, decoder_block="swin", decoder_block_kwargs=[("num_heads", 2)])
    with pytest.raises(ValueError, match="decoder_use_norm"):
        smp.Unet(**RESNET, decoder_block="res_conv", decoder_use_norm="inplace")
    assert "window_size" in decoder_block_options("swin")
    assert "state_channel" in decoder_block_options("vmamba")
    assert decoder_block_options("conv") == ()
