"""Time embedding and its injection: closed forms, every architecture as an eps-model, SMP-compatibility, errors."""
import math

import pytest
import torch

import smp_like
from smp_like.base.embedding import INJECTION_MODES, EmbeddingInjection, TimeEmbedding, sinusoidal_embedding
from smp_like.factory import create_model

ARCHS = [
    ("Unet", "resnet18"), ("UnetPlusPlus", "resnet18"), ("MAnet", "resnet18"), ("Linknet", "resnet18"),
    ("FPN", "resnet18"), ("PSPNet", "resnet18"), ("DeepLabV3", "resnet18"), ("DeepLabV3Plus", "resnet18"),
    ("PAN", "resnet18"), ("UPerNet", "resnet18"), ("Segformer", "resnet18"), ("DPT", "tu-test_vit"),
    ("HSeM", "resnet18"),
]


# ----- closed forms -----------------------------------------------------------------------------------------------


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0, 1, 17, 999])
    dim = 6
    out = sinusoidal_embedding(t, dim)
    for row, step in enumerate(t.tolist()):
        for i in range(3):  # omega_i = 10000^(-i / 3)
            omega = 10000 ** (-i / 3)
            assert out[row, i].item() == pytest.approx(math.sin(step * omega), abs=1e-5)
            assert out[row, 3 + i].item() == pytest.approx(math.cos(step * omega), abs=1e-5)
    odd = sinusoidal_embedding(t, 7)
    assert odd.shape == (4, 7) and torch.equal(odd[:, 6], torch.zeros(4))
    with pytest.raises(ValueError, match="timesteps"):
        sinusoidal_embedding(torch.zeros(2, 2), 4)


def test_time_embedding_is_mlp_of_sinusoid():
    torch.manual_seed(0)
    emb = TimeEmbedding(8)
    t = torch.tensor([3, 40])
    lin1, lin2 = emb.mlp[0], emb.mlp[2]
    s = sinusoidal_embedding(t, 8)
    h = s @ lin1.weight.T + lin1.bias
    ref = (h * torch.sigmoid(h)) @ lin2.weight.T + lin2.bias
    torch.testing.assert_close(emb(t), ref)


@pytest.mark.parametrize("mode", ["gate_bias", "gate", "bias"])
@pytest.mark.parametrize("channel_dim", [1, -1])
def test_injection_formulas(mode, channel_dim):
    torch.manual_seed(0)
    inj = EmbeddingInjection(5, 7, mode)
    x = torch.randn(3, 5, 4, 6) if channel_dim == 1 else torch.randn(3, 4, 6, 5)
    e = torch.randn(3, 7)
    linear = inj.projection[1]
    p = torch.nn.functional.silu(e) @ linear.weight.T + linear.bias
    shape = (3, 5, 1, 1) if channel_dim == 1 else (3, 1, 1, 5)
    if mode == "gate_bias":
        ref = x * (1 + p[:, :5].reshape(shape)) + p[:, 5:].reshape(shape)
    elif mode == "gate":
        ref = x * (1 + p.reshape(shape))
    else:
        ref = x + p.reshape(shape)
    torch.testing.assert_close(inj(x, e, channel_dim=channel_dim), ref)
    assert inj(x, None, channel_dim=channel_dim) is x


def test_cross_attention_with_token_sequence_depends_on_queries():
    torch.manual_seed(0)
    inj = EmbeddingInjection(8, 6, "cross_attention", num_heads=2)
    x = torch.randn(2, 8, 3, 5, 4)  # 3D map
    tokens = torch.randn(2, 4, 6)
    out = inj(x, tokens)
    assert out.shape == x.shape
    # With several keys, different positions attend differently: the update is not constant over positions.
    update = (out - x).flatten(2)
    assert update.std(dim=2).min() > 0
    with pytest.raises(ValueError, match="cross_attention"):
        EmbeddingInjection(8, 6, "bias")(x, tokens)


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_each_mode_changes_output_and_has_gradients(mode):
    torch.manual_seed(0)
    inj = EmbeddingInjection(4, 6, mode)
    x = torch.randn(2, 4, 5)  # 1D map
    e1, e2 = torch.randn(2, 6), torch.randn(2, 6)
    assert not torch.allclose(inj(x, e1), inj(x, e2))
    inj(x, e1).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in inj.parameters() if p.requires_grad)


def test_injection_bad_input():
    with pytest.raises(ValueError, match="time_injection"):
        EmbeddingInjection(4, 6, "film")
    inj = EmbeddingInjection(4, 6)
    with pytest.raises(ValueError, match="embedding must have shape"):
        inj(torch.randn(2, 4, 5), torch.randn(3, 6))
    with pytest.raises(ValueError, match="4 channels"):
        inj(torch.randn(2, 3, 5), torch.randn(2, 6))


# ----- every architecture as an eps-model -------------------------------------------------------------------------


@pytest.mark.parametrize("arch,encoder", ARCHS, ids=[a for a, _ in ARCHS])
def test_every_architecture_takes_a_time_embedding(arch, encoder):
    torch.manual_seed(0)
    model = create_model(arch, encoder_name=encoder, encoder_weights=None, time_embedding_dim=16)
    assert len(model.time_injections) >= 2
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    t1, t2 = torch.tensor([1, 300]), torch.tensor([2, 900])
    y1 = model(x, t1)
    assert y1.shape == (2, 1, 64, 64)
    # The timestep reaches the output, per sample.
    y2 = model(x, t2)
    assert (y1 - y2).abs().flatten(1).amax(1).min() > 0
    # Gradients reach the time MLP and every decoder injection.
    model.train()
    out = model(x, t1)
    out = out[0] if isinstance(out, tuple) else out
    out.square().mean().backward()
    assert model.time_embedding.mlp[0].weight.grad.abs().sum() > 0
    for injection in model.time_injections:
        assert injection.injection.projection[1].weight.grad.abs().sum() > 0
    # Injections are cleared after each call (no graph kept alive).
    assert all(injection.embedding is None for injection in model.time_injections)


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_unet_every_injection_mode_3d(mode):
    torch.manual_seed(0)
    model = smp_like.Unet(
        "resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8), spatial_dims=3,
        time_embedding_dim=8, time_injection=mode,
    ).eval()
    x = torch.randn(1, 3, 9, 13, 11)
    a, b = model(x, torch.tensor([5])), model(x, torch.tensor([600]))
    assert a.shape == (1, 1, 9, 13, 11) and not torch.allclose(a, b)


def test_conditioning_embedding_is_added_to_time_embedding():
    torch.manual_seed(0)
    model = smp_like.FPN("resnet18", encoder_weights=None, time_embedding_dim=8).eval()
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([3, 4])
    extra = torch.randn(2, 8)
    with_extra = model(x, t, extra)
    # Same result by hooking the time MLP to return its output + extra.
    handle = model.time_embedding.register_forward_hook(lambda m, i, o: o + extra)
    try:
        torch.testing.assert_close(model(x, t), with_extra)
    finally:
        handle.remove()


def test_save_load_identical_and_smp_config_untouched(tmp_path):
    torch.manual_seed(0)
    model = smp_like.Unet("resnet18", encoder_weights=None, time_embedding_dim=16, time_injection="gate").eval()
    model.save_pretrained(tmp_path)
    loaded = smp_like.from_pretrained(tmp_path)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 20])
    torch.testing.assert_close(loaded(x, t), model(x, t), rtol=0, atol=0)
    config = model.get_config()
    assert config["time_embedding_dim"] == 16 and config["time_injection"] == "gate"
    plain = smp_like.Unet("resnet18", encoder_weights=None)
    assert "time_embedding_dim" not in plain.get_config()
    assert not any("time" in key for key in plain.state_dict())


def test_time_errors():
    x = torch.randn(1, 3, 32, 32)
    plain = smp_like.Unet("resnet18", encoder_weights=None).eval()
    with pytest.raises(ValueError, match="without `time_embedding_dim`"):
        plain(x, torch.tensor([1]))
    timed = smp_like.Unet("resnet18", encoder_weights=None, time_embedding_dim=8).eval()
    with pytest.raises(ValueError, match="model\\(x, timesteps\\)"):
        timed(x)
    with pytest.raises(ValueError, match="one per sample"):
        timed(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="time_injection"):
        smp_like.Unet("resnet18", encoder_weights=None, time_embedding_dim=8, time_injection="film")
    with pytest.raises(ValueError, match="needs `time_embedding_dim`"):
        smp_like.Unet("resnet18", encoder_weights=None, time_injection="gate")
    with pytest.raises(ValueError, match="cannot take a time embedding"):
        smp_like.StackedHourglass(encoder_weights=None, time_embedding_dim=8)
    with pytest.raises(ValueError, match="torch.jit.script"):
        torch.jit.script(timed)
    # A native encoder is not time-aware: asking it directly fails clearly.
    with pytest.raises(ValueError, match="cannot take a time embedding"):
        timed.encoder.enable_time_embedding(8)


def test_time_conditioned_model_compiles():
    torch.manual_seed(0)
    model = smp_like.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                          time_embedding_dim=8).eval()
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([7])
    compiled = torch.compile(model, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(x, t), model(x, t))
