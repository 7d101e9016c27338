"""Every generative / hierarchical wrapper x {a native ResNet, a tiny timm model, a Flemme-family encoder}: builds,
runs forward and backward, and survives save_pretrained / from_pretrained with identical outputs.
Also HAE's pyramid, SDPM's ensemble and LDPM's frozen auto-encoder against hand-written references."""
import math

import pytest
import torch
import torch.nn.functional as F

import smp_like
from smp_like.generative import AE, HAE, LDIM, LDPM, SDIM, SDPM, VAE, DDIM, DDPM

ENCODERS = ["resnet18", "tu-test_resnet", "cnn"]
DEPTH3 = dict(encoder_depth=3, decoder_channels=(16, 8, 8))
DIFFUSION = dict(DEPTH3, time_embedding_dim=16, num_train_timesteps=10, num_inference_steps=2)


def _autoencoder(cls, encoder_name, in_channels=1):
    return cls(encoder_name=encoder_name, in_channels=in_channels, latent_channels=4, **DEPTH3)


def _build(kind, encoder_name):
    torch.manual_seed(0)
    if kind in ("AE", "VAE", "HAE"):
        return _autoencoder({"AE": AE, "VAE": VAE, "HAE": HAE}[kind], encoder_name)
    if kind == "ClM":
        return smp_like.ClM(encoder_name=encoder_name, encoder_depth=3, in_channels=1, classes=3, hidden_channels=(8,))
    if kind == "HSeM":
        return smp_like.HSeM(encoder_name=encoder_name, encoder_weights=None, in_channels=1, classes=2, **DEPTH3)
    if kind in ("DDPM", "DDIM"):
        return {"DDPM": DDPM, "DDIM": DDIM}[kind](encoder_name=encoder_name, in_channels=1, num_classes=2,
                                                  condition_dropout=0.2, **DIFFUSION)
    if kind in ("SDPM", "SDIM"):
        return {"SDPM": SDPM, "SDIM": SDIM}[kind](encoder_name=encoder_name, in_channels=1, classes=1,
                                                  num_ensemble=2, **DIFFUSION)
    ae = _autoencoder(VAE, encoder_name)
    return {"LDPM": LDPM, "LDIM": LDIM}[kind](ae, encoder_name=encoder_name, **DIFFUSION)


def _train_loss(kind, model, x):
    g = torch.Generator().manual_seed(0)
    if kind == "AE":
        return model.loss(x, model(x))
    if kind == "VAE":
        return model.loss(x, *model(x, generator=g))
    if kind == "HAE":
        return model.loss(x, model(x))
    if kind == "ClM":
        return F.cross_entropy(model(x), torch.tensor([0, 2]))
    if kind == "HSeM":
        main, sides = model(x)
        return main.square().mean() + sum(s.square().mean() for s in sides)
    if kind in ("DDPM", "DDIM"):
        return model.loss(x, labels=torch.tensor([0, 1]), generator=g)
    if kind in ("SDPM", "SDIM"):
        return model.loss(x, (x > 0).float(), generator=g)
    return model.loss(x, generator=g)


def _eval_output(kind, model, x):
    g = torch.Generator().manual_seed(0)
    if kind in ("VAE",):
        return model(x)[0]
    if kind in ("DDPM", "DDIM"):
        return model.sample(labels=torch.tensor([0, 1]), size=x.shape[2:], generator=g, progress=False)
    if kind in ("SDPM", "SDIM"):
        return model.predict(x, generator=g)
    if kind in ("LDPM", "LDIM"):
        return model.sample(2, x.shape[2:], generator=g, progress=False)
    return model(x)


KINDS = ["AE", "VAE", "HAE", "ClM", "HSeM", "DDPM", "DDIM", "SDPM", "SDIM", "LDPM", "LDIM"]


@pytest.mark.parametrize("encoder_name", ENCODERS)
@pytest.mark.parametrize("kind", KINDS)
def test_wrapper_builds_trains_and_round_trips(kind, encoder_name, tmp_path):
    model = _build(kind, encoder_name).train()
    x = torch.rand(2, 1, 19, 21) * 2 - 1
    loss = _train_loss(kind, model, x)
    assert torch.isfinite(loss)
    loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert sum(int(p.grad is not None and p.grad.abs().sum() > 0) for p in trained) > len(trained) // 2
    model.eval()
    before = _eval_output(kind, model, x)
    model.save_pretrained(tmp_path)
    for loaded in (type(model).from_pretrained(tmp_path), smp_like.from_pretrained(tmp_path)):
        assert type(loaded) is type(model)
        torch.testing.assert_close(_eval_output(kind, loaded, x), before, rtol=0, atol=0)


# ----- HAE ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 41), (19, 21, 23)])
def test_hae_side_outputs_have_exact_stage_sizes(size):
    torch.manual_seed(0)
    model = HAE(encoder_name="resnet18", in_channels=1, spatial_dims=len(size), **DEPTH3).train()
    recon, sides = model(torch.rand(1, 1, *size))
    assert recon.shape[2:] == size
    assert [tuple(s.shape[2:]) for s in sides] == [tuple(math.ceil(n / 4) for n in size),
                                                    tuple(math.ceil(n / 2) for n in size)]
    assert model.side_strides() == [(4,) * len(size), (2,) * len(size)]
    assert isinstance(model.eval()(torch.rand(1, 1, *size)), torch.Tensor)


def test_hae_loss_is_main_plus_mean_of_sides_against_area_resized_input():
    torch.manual_seed(0)
    model = HAE(encoder_name="resnet18", in_channels=1, **DEPTH3).train()
    x = torch.rand(2, 1, 16, 20)
    recon, sides = model(x)
    loss = model.loss(x, (recon, sides))
    # Independent reference: area resize = mean over non-overlapping blocks (sizes divide exactly here).
    def block_mean(t, k):
        return t.reshape(2, 1, t.shape[2] // k, k, t.shape[3] // k, k).mean(dim=(3, 5))
    ref = ((recon - x) ** 2).mean() + 0.5 * (
        ((sides[0] - block_mean(x, 4)) ** 2).mean() + ((sides[1] - block_mean(x, 2)) ** 2).mean()
    )
    torch.testing.assert_close(loss, ref)


# ----- SDPM ---------------------------------------------------------------------------------------------------------


def test_sdpm_forward_is_the_mean_of_its_ensemble():
    model = _build("SDIM", "resnet18").eval()
    images = torch.rand(2, 1, 12, 12)
    noise = torch.randn(4, 1, 12, 12)
    mean = model(images, noise=noise)
    # Sample j of image i is row i*k + j: run the k samples by hand and average.
    samples = model.sample(condition=images.repeat_interleave(2, 0), noise=noise, progress=False)
    ref = ((samples.reshape(2, 2, 1, 12, 12).mean(1) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(mean, ref)
    assert mean.shape == (2, 1, 12, 12) and 0 <= mean.min() and mean.max() <= 1
    with pytest.raises(ValueError, match="must match `images`"):
        model.loss(images, torch.rand(2, 1, 10, 12))
    with pytest.raises(ValueError, match="`condition_channels` is set by"):
        SDPM(condition_channels=3)


def test_sdpm_loss_diffuses_the_rescaled_mask():
    model = _build("SDPM", "resnet18")
    images, masks = torch.rand(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(
        model.loss(images, masks, generator=g1),
        DDPM.loss(model, masks * 2 - 1, condition=images, generator=g2),
    )


# ----- LDPM ---------------------------------------------------------------------------------------------------------


def test_ldpm_frozen_autoencoder_gets_no_gradients_and_decodes_at_size():
    model = _build("LDPM", "resnet18").train()
    assert not model.autoencoder.training  # a frozen AE keeps eval mode
    x = torch.rand(2, 1, 24, 20) * 2 - 1
    model.loss(x).backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())
    mu = model.autoencoder.encode(x)[0]
    torch.testing.assert_close(model.encode_latent(x), mu * model.latent_scale)
    scale = model.estimate_latent_scale(x)
    assert scale == pytest.approx(1 / mu.std().item(), rel=1e-5)
    assert model.get_config()["latent_scale"] == pytest.approx(scale)
    out = model.sample(1, (37, 29), progress=False)
    assert out.shape == (1, 1, 37, 29)


def test_ldpm_unfrozen_trains_the_autoencoder():
    torch.manual_seed(0)
    model = LDPM(_autoencoder(AE, "resnet18"), freeze_autoencoder=False, **DIFFUSION).train()
    assert model.autoencoder.training
    model.loss(torch.rand(2, 1, 16, 16)).backward()
    assert model.autoencoder.bottleneck.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="latent_channels"):
        LDPM(_autoencoder(AE, "resnet18"), in_channels=3)
    with pytest.raises(TypeError, match="AE/VAE instance"):
        LDPM("resnet18")
