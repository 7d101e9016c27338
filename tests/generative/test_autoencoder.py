"""Tests of the AE / VAE wrappers: maths against closed forms, shapes, save/load, reproducibility, bad input."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import smp_like
from smp_like.generative import AE, VAE

TINY = dict(decoder_channels=(16, 8, 8, 4, 4), latent_channels=4)
ENCODERS = ["resnet18", "tu-test_resnet"]


def _build(cls, encoder_name, **kwargs):
    torch.manual_seed(0)
    return cls(encoder_name=encoder_name, **{**TINY, **kwargs})


# ----- maths ------------------------------------------------------------------------------------------------------


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(3, 4, 2, 5, generator=g)
    logvar = torch.randn(3, 4, 2, 5, generator=g)
    # Independent reference: KL of each univariate Normal from N(0, 1), summed per sample, mean over the batch.
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    ref = ref.flatten(1).sum(1).mean()
    torch.testing.assert_close(VAE.kl_divergence(mu, logvar), ref)


def test_kl_golden_number():
    # mu = 1, logvar = 0 on 6 elements per sample: 0.5 * 6 * (1 + 1 - 1 - 0) = 3.
    mu, logvar = torch.ones(2, 1, 2, 3), torch.zeros(2, 1, 2, 3)
    assert VAE.kl_divergence(mu, logvar).item() == pytest.approx(3.0)
    assert VAE.kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0


def test_reparameterisation_gradients_and_distribution():
    mu = torch.full((20000,), 1.5, requires_grad=True)
    logvar = torch.full((20000,), 2 * torch.log(torch.tensor(0.5)).item(), requires_grad=True)
    z = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    # z = mu + sigma * eps: dz/dmu = 1, dz/dlogvar = 0.5 * sigma * eps = 0.5 * (z - mu).
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * (z.detach() - 1.5))
    assert abs(z.mean().item() - 1.5) < 0.02 and abs(z.std().item() - 0.5) < 0.02


def test_vae_gradients_reach_mu_and_logvar_through_model():
    model = _build(VAE, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 8, 4)).train()
    x = torch.rand(2, 1, 16, 16)
    recon, mu, logvar = model(x, generator=torch.Generator().manual_seed(0))
    mu.retain_grad()
    logvar.retain_grad()
    model.loss(x, recon, mu, logvar).backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    assert model.bottleneck.weight.grad.abs().sum() > 0


def test_loss_is_recon_plus_beta_kl():
    model = _build(VAE, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 8, 4)).eval()
    x = torch.rand(2, 1, 16, 16)
    recon, mu, logvar = model(x)
    mse = ((recon - x) ** 2).mean()
    l1 = (recon - x).abs().mean()
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum() / 2
    torch.testing.assert_close(model.loss(x, recon, mu, logvar, beta=0.5), mse + 0.5 * kl)
    torch.testing.assert_close(model.loss(x, recon, mu, logvar, recon_loss="l1", beta=0.0), l1)
    assert model.loss(x, x, mu, logvar, recon_loss="ssim", beta=0.0).item() == pytest.approx(0.0, abs=1e-5)


# ----- shapes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AE, VAE])
def test_odd_2d_size_reconstructed_exactly(cls):
    model = _build(cls, "resnet18", in_channels=2, out_channels=3, output_activation="sigmoid")
    out = model(torch.randn(2, 2, 37, 41))
    recon = out[0] if cls is VAE else out
    assert recon.shape == (2, 3, 37, 41)
    assert recon.min() >= 0 and recon.max() <= 1


@pytest.mark.parametrize("cls", [AE, VAE])
def test_odd_3d_size_reconstructed_exactly(cls):
    model = _build(
        cls, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 4, 4), spatial_dims=3
    )
    x = torch.randn(2, 1, 19, 21, 23)
    out = model(x)
    recon = out[0] if cls is VAE else out
    assert recon.shape == x.shape
    latent = model.encode(x)
    latent = latent[0] if cls is VAE else latent
    assert latent.shape == (2, 4, 3, 3, 3) and tuple(latent.shape[2:]) == model.latent_size((19, 21, 23))


def test_sample_shapes_and_reproducibility():
    model = _build(VAE, "resnet18", in_channels=1, output_activation="tanh").eval()
    a = model.sample(3, (37, 41), generator=torch.Generator().manual_seed(7))
    b = model.sample(3, (37, 41), generator=torch.Generator().manual_seed(7))
    c = model.sample(3, (37, 41), generator=torch.Generator().manual_seed(8))
    assert a.shape == (3, 1, 37, 41)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.sample(2, 32).shape == (2, 1, 32, 32)


def test_training_forward_reproducible_with_generator():
    model = _build(VAE, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 8, 4)).train()
    x = torch.randn(2, 1, 16, 16)
    a = model(x, generator=torch.Generator().manual_seed(3))[0]
    b = model(x, generator=torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(a, b)


# ----- every wrapper x encoder: build, forward, backward, save/load --------------------------------------------


@pytest.mark.parametrize("encoder_name", ENCODERS)
@pytest.mark.parametrize("cls", [AE, VAE])
def test_build_forward_backward_save_load(cls, encoder_name, tmp_path):
    model = _build(cls, encoder_name, in_channels=3).train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x, generator=torch.Generator().manual_seed(0)) if cls is VAE else model(x)
    loss = model.loss(x, *out) if cls is VAE else model.loss(x, out)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    model.eval()
    expected = model(x)
    model.save_pretrained(tmp_path)
    for loaded in (cls.from_pretrained(tmp_path), smp_like.from_pretrained(tmp_path)):
        assert type(loaded) is cls
        got = loaded(x)
        if cls is VAE:
            for e, g in zip(expected, got):
                torch.testing.assert_close(g, e, rtol=0, atol=0)
        else:
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_from_pretrained_wrong_class(tmp_path):
    _build(AE, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 8, 4)).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="AE"):
        VAE.from_pretrained(tmp_path)


# ----- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AE, VAE])
def test_wrong_channel_count(cls):
    model = _build(cls, "resnet18", in_channels=3, encoder_depth=3, decoder_channels=(8, 8, 4))
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="4 dims"):
        model(torch.randn(2, 3, 16, 16, 16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([1, 2])


def test_bad_recon_loss_and_mismatched_data():
    model = _build(VAE, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 8, 4)).eval()
    x = torch.rand(2, 1, 16, 16)
    recon, mu, logvar = model(x)
    with pytest.raises(ValueError, match=r"recon_loss.*mse.*'bce'"):
        model.loss(x, recon, mu, logvar, recon_loss="bce")
    with pytest.raises(ValueError, match="must equal data shape"):
        model.loss(torch.rand(2, 3, 16, 16), recon, mu, logvar)
    with pytest.raises(ValueError, match="beta"):
        model.loss(x, recon, mu, logvar, beta=-1.0)
    with pytest.raises(ValueError, match="latent_channels=4"):
        model.decode(torch.randn(2, 5, 2, 2), (16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(decoder_channels=(8, 4)), "decoder_channels"),
        (dict(output_activation="relu"), "output_activation"),
        (dict(latent_channels=0), "latent_channels"),
        (dict(spatial_dims=4), "spatial_dims"),
        (dict(out_channels=0), "out_channels"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AE(encoder_name="resnet18", **{**TINY, **kwargs})


def test_bad_sample_arguments():
    model = _build(VAE, "resnet18", in_channels=1, encoder_depth=3, decoder_channels=(8, 8, 4)).eval()
    with pytest.raises(ValueError, match="`n`"):
        model.sample(0, 16)
    with pytest.raises(ValueError, match="`size`"):
        model.sample(1, (16, 16, 16))
