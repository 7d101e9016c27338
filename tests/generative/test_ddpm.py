"""DDPM / DDIM wrappers: a tiny model learns a toy dataset, sampling loops against the scheduler maths,
conditioning, classifier-free guidance, reproducibility, DDPM -> DDIM checkpoints and bad input."""
import pytest
import torch

import smp_like
from smp_like.generative import DDIM, DDPM

TINY = dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8), time_embedding_dim=16)


def _model(cls=DDPM, **kwargs):
    torch.manual_seed(0)
    return cls(**{**TINY, "in_channels": 1, "num_train_timesteps": 20, **kwargs})


def two_class_blobs(n: int, generator: torch.Generator):
    """16x16 images in [-1, 1]: a Gaussian blob near (4.5, 4.5) for class 0, near (10.5, 10.5) for class 1."""
    labels = torch.randint(0, 2, (n,), generator=generator)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centres = torch.tensor([[4.5, 4.5], [10.5, 10.5]])[labels] + torch.randn(n, 2, generator=generator) * 0.7
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return (torch.exp(-d2 / 8.0) * 2 - 1)[:, None], labels


def wasserstein_1(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 distance between the pixel-value distributions of two tensors (via 1000 quantiles)."""
    q = torch.linspace(0, 1, 1000)
    return (torch.quantile(a.flatten(), q) - torch.quantile(b.flatten(), q)).abs().mean().item()


def test_tiny_ddpm_learns_two_class_blobs_and_ddim_samples_match_data():
    """Training for 250 steps at least halves the loss; 20-step DDIM samples are closer to the data than noise.

    Criterion (stated here, measured on 64 samples vs 512 data images): (a) the W1 distance between pixel value
    distributions is below 0.4x that of Gaussian noise of the same shape, (b) the mean-squared distance between mean
    images is below 0.3x that of noise, and (c) the samples of each class are closer to that class's mean image than
    to the other class's. (Seeds 0-2 gave 0.16-0.18, 0.04-0.05 and a clear class separation.)

    v-prediction: SMP's Unet has no stride-1 skip, so predicting epsilon (which at large t is the identity of x_t
    at full resolution) plateaus for this tiny model; v and x0 targets are smooth and learn fast (docs/diffusion_models.md).
    """
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = DDPM(**{**TINY, "decoder_channels": (32, 16, 8), "time_embedding_dim": 32}, in_channels=1,
                 num_train_timesteps=100, beta_schedule="cosine", num_classes=2, prediction_type="v_prediction")
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(250):
        x, y = two_class_blobs(32, g)
        loss = model.loss(x, labels=y, generator=g)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last <= 0.5 * first, (first, last)

    labels = torch.tensor([0] * 32 + [1] * 32)
    samples = model.sample(labels=labels, size=16, sampler="ddim", num_inference_steps=20,
                           generator=torch.Generator().manual_seed(1), progress=False)
    assert samples.shape == (64, 1, 16, 16) and samples.abs().max() <= 1.0
    data, data_labels = two_class_blobs(512, torch.Generator().manual_seed(2))
    noise = torch.randn(64, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    assert wasserstein_1(samples, data) < 0.4 * wasserstein_1(noise, data)
    mean_gap = ((samples.mean(0) - data.mean(0)) ** 2).mean()
    noise_gap = ((noise.mean(0) - data.mean(0)) ** 2).mean()
    assert mean_gap < 0.3 * noise_gap
    for c in (0, 1):
        own = ((samples[labels == c].mean(0) - data[data_labels == c].mean(0)) ** 2).mean()
        other = ((samples[labels == c].mean(0) - data[data_labels != c].mean(0)) ** 2).mean()
        assert own < other, (c, own, other)


def test_loss_is_mse_to_the_scheduler_target():
    model = _model(prediction_type="v_prediction")
    x0 = torch.rand(3, 1, 12, 12) * 2 - 1
    loss = model.loss(x0, generator=torch.Generator().manual_seed(5))
    # Replay the same draws by hand: t, then noise, from the same generator.
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 20, (3,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 20, dtype=torch.float64), 0)[t].float().reshape(3, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0  # Salimans & Ho 2022
    with torch.no_grad():
        ref = ((model(x_t, t) - v) ** 2).mean()
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)


def test_ddpm_sampling_loop_equals_hand_written_algorithm_2():
    model = _model(clip_sample=False).eval()
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = model.sample(noise=noise, generator=torch.Generator().manual_seed(1), progress=False)
    # Ho et al. 2020, Algorithm 2 with sigma_t^2 = beta_tilde_t, written from the closed forms.
    betas = torch.linspace(1e-4, 0.02, 20, dtype=torch.float64)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    g = torch.Generator().manual_seed(1)
    x = noise.clone()
    with torch.no_grad():
        for t in range(19, -1, -1):
            eps = model(x, torch.full((2,), t))
            abar_prev = abar[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
            mean = (x - betas[t] / (1 - abar[t]).sqrt() * eps) / alphas[t].sqrt()
            if t > 0:
                var = (1 - abar_prev) / (1 - abar[t]) * betas[t]
                mean = mean + var.sqrt() * torch.randn(x.shape, generator=g)
            x = mean.float()
    torch.testing.assert_close(out, x, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_deterministic_and_reproducible_with_generator():
    model = _model(sampler="ddim", num_inference_steps=5)
    a = model.sample(2, 8, generator=torch.Generator().manual_seed(0), progress=False)
    b = model.sample(2, 8, generator=torch.Generator().manual_seed(0), progress=False)
    c = model.sample(2, 8, generator=torch.Generator().manual_seed(1), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # eta = 0: given the starting noise, the result no longer depends on the generator.
    noise = torch.randn(2, 1, 8, 8)
    d = model.sample(noise=noise, generator=torch.Generator().manual_seed(0), progress=False)
    e = model.sample(noise=noise, generator=torch.Generator().manual_seed(9), progress=False)
    assert torch.equal(d, e)
    f = model.sample(noise=noise, eta=1.0, generator=torch.Generator().manual_seed(0), progress=False)
    h = model.sample(noise=noise, eta=1.0, generator=torch.Generator().manual_seed(9), progress=False)
    assert not torch.equal(f, h)


def test_ddim_visits_the_scheduler_step_list(monkeypatch):
    model = _model(sampler="ddim", num_inference_steps=4, timestep_spacing="quadratic")
    seen = []
    original = model.predict_noise

    def spy(x, t, *args):
        seen.append(int(t[0]))
        return original(x, t, *args)

    monkeypatch.setattr(model, "predict_noise", spy)
    model.sample(1, 8, progress=False)
    # floor(0.8 * 20 * i^2 / 9), i = 3, 2, 1, 0
    assert seen == [16, 7, 1, 0]


def test_ddpm_checkpoint_samples_with_ddim(tmp_path):
    ddpm = _model().eval()
    ddpm.save_pretrained(tmp_path)
    ddim = DDIM.from_pretrained(tmp_path)
    assert isinstance(ddim, DDIM) and ddim.sampler == "ddim"
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 17])
    torch.testing.assert_close(ddim(x, t), ddpm(x, t), rtol=0, atol=0)
    noise = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(
        ddim.sample(noise=noise, num_inference_steps=4, progress=False),
        ddpm.sample(noise=noise, sampler="ddim", num_inference_steps=4, progress=False),
    )
    # and the other way round
    back = DDPM.from_pretrained(tmp_path)
    assert type(back) is DDPM and back.sampler == "ddpm"


@pytest.mark.parametrize("class_embedding", ["embedding", "one_hot"])
def test_class_conditioning_and_per_sample_dropout(class_embedding):
    model = _model(num_classes=3, class_embedding=class_embedding, condition_dropout=0.5).eval()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 5, 9, 13])
    labels = torch.tensor([0, 1, 2, 1])
    conditional = model(x, t, labels)
    assert not torch.allclose(conditional, model(x, t, torch.tensor([1, 2, 0, 0])))
    drop = torch.tensor([True, False, True, False])
    mixed = model(x, t, labels, drop_condition=drop)
    # Dropped samples equal the null-conditioned output, kept ones the conditional output.
    null = model(x, t, labels, drop_condition=torch.ones(4, dtype=torch.bool))
    torch.testing.assert_close(mixed[drop], null[drop])
    torch.testing.assert_close(mixed[~drop], conditional[~drop])
    if class_embedding == "one_hot":  # the null label is the zero vector: no class term at all
        linear = model.class_embedding
        torch.testing.assert_close(model.condition_embedding(4, labels, None, drop)[drop], torch.zeros(2, 16))
        torch.testing.assert_close(
            model.condition_embedding(4, labels, None)[~drop], linear.weight.T[labels[~drop]]
        )


def test_guided_sampling_uses_the_cfg_formula(monkeypatch):
    model = _model(num_classes=2, condition_dropout=0.1, guidance_scale=2.0, sampler="ddim",
                   num_inference_steps=1).eval()
    x = torch.randn(2, 1, 8, 8)
    labels = torch.tensor([0, 1])
    t = model.scheduler.timesteps(1)[0].item()
    with torch.no_grad():
        eps_c = model(x, torch.full((2,), t), labels)
        eps_u = model(x, torch.full((2,), t), labels, drop_condition=torch.ones(2, dtype=torch.bool))
        guided = (1 + 2.0) * eps_c - 2.0 * eps_u  # Ho & Salimans 2021, eq. 6
        expected = model.scheduler.ddim_step(guided, t, -1, x).prev_sample
    out = model.sample(noise=x, labels=labels, progress=False)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    unguided = model.sample(noise=x, labels=labels, guidance_scale=0.0, progress=False)
    assert not torch.allclose(out, unguided)


def test_image_conditioning_concat_and_encoder():
    concat = _model(condition_channels=2)
    assert concat.model.encoder.in_channels == 3  # x_t and the condition, concatenated
    cond = torch.randn(2, 2, 8, 8)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([2, 3])
    assert not torch.allclose(concat(x, t, condition=cond), concat(x, t, condition=cond + 1))
    encoded = _model(condition_channels=2, image_conditioning="encoder", condition_encoder_name="tu-test_resnet",
                     condition_dropout=0.2)
    assert encoded.model.encoder.in_channels == 1
    big = torch.randn(2, 2, 24, 20)  # an encoded condition may have any size
    out = encoded(x, t, condition=big)
    assert out.shape == x.shape
    encoded.loss(x, condition=big).backward()
    assert encoded.condition_projection.weight.grad.abs().sum() > 0
    assert encoded.sample(condition=big, size=8, guidance_scale=1.0, sampler="ddim", num_inference_steps=2,
                          progress=False).shape == (2, 1, 8, 8)


def test_time_aware_encoder_receives_the_embedding():
    model = _model(encoder_name="cnn", encoder_depth=3, decoder_channels=(16, 8, 8))
    assert model.model.encoder.supports_time_embedding
    model.loss(torch.rand(2, 1, 12, 12)).backward()
    encoder_injections = [m for n, m in model.model.encoder.named_modules() if type(m).__name__ == "EmbeddingInjection"]
    assert encoder_injections and all(
        any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()) for m in encoder_injections
    )


def test_progress_bar_shown(capsys):
    model = _model(sampler="ddim", num_inference_steps=3)
    model.sample(1, 8, progress=True)
    assert "DDIM sampling" in capsys.readouterr().err


def test_bad_input():
    with pytest.raises(ValueError, match="undefined with image_conditioning='concat'"):
        _model(condition_channels=2, condition_dropout=0.1)
    with pytest.raises(ValueError, match="undefined with image_conditioning='concat'"):
        _model(condition_channels=2).sample(condition=torch.randn(1, 2, 8, 8), guidance_scale=1.0, progress=False)
    with pytest.raises(ValueError, match="needs a condition"):
        _model(condition_dropout=0.1)
    with pytest.raises(ValueError, match="cannot take a time embedding"):
        _model(architecture="stackedhourglass")
    with pytest.raises(ValueError, match="Unknown architecture"):
        _model(architecture="nope")
    with pytest.raises(ValueError, match="`classes` is set by"):
        _model(classes=3)
    model = _model(num_classes=2)
    with pytest.raises(ValueError, match="pass `labels`"):
        model.loss(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="must lie in 0..1"):
        model.loss(torch.randn(2, 1, 8, 8), labels=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="1 channels"):
        model.loss(torch.randn(2, 3, 8, 8), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sampler='ddim'"):
        _model().sample(1, 8, sampler="ddpm", num_inference_steps=5, progress=False)
    with pytest.raises(ValueError, match="`size` is required"):
        _model().sample(1, progress=False)
    with pytest.raises(ValueError, match="sampler"):
        _model(sampler="euler")
    with pytest.raises(ValueError, match="spatial size"):
        _model(condition_channels=2).sample(condition=torch.randn(1, 2, 8, 8), size=10, progress=False)


def test_top_level_names():
    assert smp_like.DDPM is DDPM and smp_like.DDIM is DDIM
    from smp_like.factory import get_model_class

    assert get_model_class("ddim") is DDIM and get_model_class("DDPM") is DDPM
    # create_model passes only the arguments given (a DDPM has no `classes`).
    assert type(smp_like.create_model("ddim", **TINY, num_train_timesteps=10)) is DDIM
