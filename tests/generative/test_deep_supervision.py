"""Deep supervision on Unet, UnetPlusPlus and FPN (``deep_supervision=True``): exact side sizes, side outputs equal
to a hand-applied 1x1 head on the hooked decoder stages, eval = train main, PyramidLoss gradients, save/load; and
nothing changes with the option off (the SMP conformance files check outputs against SMP)."""

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like import FPN, Unet, UnetPlusPlus
from smp_like.losses.pyramid import PyramidLoss

ARCHS = ["Unet", "UnetPlusPlus", "FPN"]
CLASSES = {"Unet": Unet, "UnetPlusPlus": UnetPlusPlus, "FPN": FPN}


def build(arch, depth=5, **kwargs):
    config = dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=depth, classes=3)
    if arch == "FPN":
        config.update(decoder_pyramid_channels=16, decoder_segmentation_channels=32)
        if depth == 3:
            config["upsampling"] = 1  # input-sized mask at depth 3 (SMP keeps upsampling=4 otherwise)
    else:
        config["decoder_channels"] = (16, 16, 8, 8, 8)[:depth]
    config.update(kwargs)
    torch.manual_seed(0)
    return CLASSES[arch](**config)


def expected_strides(arch, depth):
    # Unet / UnetPlusPlus: one stage per encoder stage, strides 2^(depth-1) .. 1; FPN: p5..p2, the last four
    # encoder features (strides 32, 16, 8, 4 at depth 5; 8, 4, 2, 1 at depth 3).
    if arch == "FPN":
        return [2 ** (depth - i) for i in range(4)]
    return [2 ** (depth - 1 - i) for i in range(depth)]


def stage_modules(model, arch):
    """The modules whose outputs are the decoder stages, coarse to fine (hooked for the reference)."""
    d = model.decoder
    if arch == "Unet":
        return list(d.blocks)
    if arch == "UnetPlusPlus":
        return [d.blocks[f"x_0_{j}"] for j in range(d.depth + 1)]
    return [d.p5, d.p4, d.p3, d.p2]


def eval_norms(model):
    """Model stays in training mode (the flag path) but norms and dropout use eval behaviour."""
    model.train()
    for child in model.children():
        child.eval()
    return model


# ---------------------------------------------------------------- option off: nothing changes


@pytest.mark.parametrize("arch", ARCHS)
def test_default_off_same_keys_and_outputs(arch, tmp_path):
    plain = build(arch)
    assert plain.side_heads is None and not plain.deep_supervision
    supervised = build(arch, deep_supervision=True)
    extra = set(supervised.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(supervised.state_dict())
    assert extra and all(k.startswith("side_heads.") for k in extra)
    # Same weights on the shared keys -> the same eval output, and the train-mode main output of the flag path
    # equals the default model's train-mode output (norms in eval, so batch statistics do not differ).
    plain.load_state_dict({k: v for k, v in supervised.state_dict().items() if k in plain.state_dict()})
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(supervised.eval()(x), plain.eval()(x), rtol=0, atol=0)
    main, _ = eval_norms(supervised)(x)
    torch.testing.assert_close(main, eval_norms(plain)(x), rtol=0, atol=0)
    # config.json omits the option while False, and keeps it when True.
    plain.save_pretrained(tmp_path / "off")
    assert "deep_supervision" not in json.loads((tmp_path / "off" / "config.json").read_text())
    assert "deep_supervision" not in plain.get_config()


# ---------------------------------------------------------------- option on: shapes and values


@pytest.mark.parametrize("arch", ARCHS)
def test_side_sizes_exact_2d_odd(arch):
    model = build(arch, deep_supervision=True).train()
    h, w = 37, 41
    main, sides = model(torch.randn(2, 3, h, w))
    assert main.shape == (2, 3, h, w)
    strides = expected_strides(arch, 5)
    assert [tuple(s.shape) for s in sides] == [(2, 3, math.ceil(h / s), math.ceil(w / s)) for s in strides]
    assert model.side_output_sizes((h, w)) == [[math.ceil(h / s), math.ceil(w / s)] for s in strides]


@pytest.mark.parametrize("arch", ARCHS)
def test_side_sizes_exact_3d_odd(arch):
    model = build(arch, depth=3, deep_supervision=True, spatial_dims=3, in_channels=1, classes=2).train()
    size = (19, 21, 23)
    main, sides = model(torch.randn(1, 1, *size))
    assert main.shape == (1, 2) + size
    expected = [(1, 2) + tuple(math.ceil(n / s) for n in size) for s in expected_strides(arch, 3)]
    assert [tuple(s.shape) for s in sides] == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_sides_are_head_on_hooked_stages(arch):
    # Reference: capture each stage with a forward hook, apply the side head's 1x1 conv by hand (F.conv2d), keep
    # the first ceil(size / stride) pixels (UnetPlusPlus and FPN pad the input at its end).
    model = eval_norms(build(arch, deep_supervision=True))
    captured = []
    handles = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in stage_modules(model, arch)]
    h, w = 37, 41
    _, sides = model(torch.randn(1, 3, h, w))
    for handle in handles:
        handle.remove()
    assert len(captured) == len(sides)
    for stage, head, side, s in zip(captured, model.side_heads, sides, expected_strides(arch, 5)):
        conv = head[0]
        reference = F.conv2d(stage, conv.weight, conv.bias)[:, :, : math.ceil(h / s), : math.ceil(w / s)]
        torch.testing.assert_close(side, reference)


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_returns_main_equal_to_train_main(arch):
    model = build(arch, deep_supervision=True)
    x = torch.randn(2, 3, 37, 41)
    out = eval_norms(model)(x)
    assert isinstance(out, tuple) and len(out) == 2
    main, sides = out
    model.eval()
    evaluated = model(x)
    assert isinstance(evaluated, torch.Tensor)
    torch.testing.assert_close(evaluated, main, rtol=0, atol=0)
    torch.testing.assert_close(model.predict(x), main, rtol=0, atol=0)


def test_aux_params_main_is_mask_and_label():
    model = build("Unet", deep_supervision=True, aux_params=dict(classes=4)).train()
    (mask, label), sides = model(torch.randn(2, 3, 32, 32))
    assert mask.shape == (2, 3, 32, 32) and label.shape == (2, 4) and len(sides) == 5
    mask_eval, label_eval = model.eval()(torch.randn(2, 3, 32, 32))
    assert mask_eval.shape == (2, 3, 32, 32) and label_eval.shape == (2, 4)


@pytest.mark.parametrize("arch", ARCHS)
def test_pyramid_loss_backward_reaches_side_heads(arch):
    model = build(arch, deep_supervision=True).train()
    x = torch.randn(2, 3, 37, 41)
    target = torch.randint(0, 3, (2, 37, 41))
    outputs = model(x)
    loss = PyramidLoss(nn.CrossEntropyLoss())(outputs, target)
    loss.backward()
    for head in model.side_heads:
        assert head[0].weight.grad is not None and head[0].weight.grad.abs().sum() > 0
    # The side terms are in the loss: main alone is smaller by exactly the mean of the side losses (eq. 3).
    main, sides = outputs
    side_terms = [
        F.cross_entropy(s, F.interpolate(target[:, None].float(), size=s.shape[2:], mode="nearest")[:, 0].long())
        for s in sides
    ]
    expected = F.cross_entropy(main, target) + sum(side_terms) / len(side_terms)
    torch.testing.assert_close(loss, expected)


# ---------------------------------------------------------------- save / load, bad input, TorchScript


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip_keeps_deep_supervision(arch, tmp_path):
    model = build(arch, deep_supervision=True)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["deep_supervision"] is True
    loaded = CLASSES[arch].from_pretrained(tmp_path)
    assert loaded.deep_supervision
    x = torch.randn(1, 3, 37, 41)
    main, sides = eval_norms(model)(x)
    main_loaded, sides_loaded = eval_norms(loaded)(x)
    torch.testing.assert_close(main_loaded, main, rtol=0, atol=0)
    for a, b in zip(sides_loaded, sides):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_flag_raises_type_error(arch):
    with pytest.raises(TypeError, match="deep_supervision"):
        build(arch, deep_supervision="yes")


def test_scripting_refused_with_side_heads():
    model = build("Unet", deep_supervision=True).eval()
    with pytest.raises(RuntimeError, match="deep_supervision=False"):
        torch.jit.script(model)
