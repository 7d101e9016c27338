"""Tests of the parameter-free diffusion scheduler against closed forms written here, never against itself."""

import json
import math

import pytest
import torch

from smp_like.generative import DiffusionScheduler, classifier_free_guidance
from smp_like.generative.diffusion import SchedulerStepOutput

T = 1000
TS = (0, 10, 500, 999)
PRED_TYPES = ("epsilon", "v_prediction", "sample")


# ------------------------------------------------------------------------------------------------------------
# Independent references (plain Python floats, written from the papers)
# ------------------------------------------------------------------------------------------------------------


def ref_linear_abar(t, start=1e-4, end=0.02, n=T):
    """Ho et al. 2020: beta_i = linspace(start, end, n); abar_t = prod_{i<=t} (1 - beta_i)."""
    p = 1.0
    for i in range(t + 1):
        p *= 1.0 - (start + (end - start) * i / (n - 1))
    return p


def ref_scaled_linear_abar(t, start=1e-4, end=0.02, n=T):
    p = 1.0
    for i in range(t + 1):
        b = (math.sqrt(start) + (math.sqrt(end) - math.sqrt(start)) * i / (n - 1)) ** 2
        p *= 1.0 - b
    return p


def ref_cosine_f(t, n=T, s=0.008):
    """Nichol & Dhariwal 2021, eq. 17."""
    return math.cos((t / n + s) / (1 + s) * math.pi / 2) ** 2


def ref_cosine_abar(t, n=T):
    """abar for index t (paper step t+1), with each beta capped at 0.999 (only the last one is, for T=1000)."""
    p = 1.0
    for i in range(t + 1):
        beta = min(1.0 - ref_cosine_f(i + 1, n) / ref_cosine_f(i, n), 0.999)
        p *= 1.0 - beta
    return p


def bc(v, x):
    """Per-sample float64 values -> tensor broadcast over x."""
    return torch.tensor(v, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


# ------------------------------------------------------------------------------------------------------------
# Schedules
# ------------------------------------------------------------------------------------------------------------

# Golden numbers computed with 40-digit arithmetic (decimal / mpmath) from the same closed forms.
GOLDEN = {
    "linear": {0: 0.9999, 10: 0.9978065725078461, 500: 0.0777966583650239, 999: 4.035829765375683e-05},
    "cosine": {
        0: 0.99995871577517822,
        10: 0.99927890377334275,
        500: 0.49228517244880258,
        999: 2.4287669070344684e-09,
    },
}


@pytest.mark.parametrize("t", TS)
def test_linear_alphas_cumprod(t):
    s = DiffusionScheduler(beta_schedule="linear")
    assert s.alphas_cumprod.dtype == torch.float64 and s.alphas_cumprod.shape == (T,)
    assert s.alphas_cumprod[t].item() == pytest.approx(ref_linear_abar(t), rel=1e-12)
    assert s.alphas_cumprod[t].item() == pytest.approx(GOLDEN["linear"][t], rel=1e-12)
    assert s.betas[t].item() == pytest.approx(1e-4 + (0.02 - 1e-4) * t / (T - 1), rel=1e-12)
    assert s.alphas[t].item() == pytest.approx(1 - s.betas[t].item(), rel=1e-15)


@pytest.mark.parametrize("t", TS)
def test_cosine_alphas_cumprod(t):
    s = DiffusionScheduler(beta_schedule="cosine")
    assert s.alphas_cumprod[t].item() == pytest.approx(ref_cosine_abar(t), rel=1e-10)
    assert s.alphas_cumprod[t].item() == pytest.approx(GOLDEN["cosine"][t], rel=1e-10)
    if t < T - 1:  # no clipping before the last step: abar_t = f(t+1) / f(0) exactly
        assert s.alphas_cumprod[t].item() == pytest.approx(ref_cosine_f(t + 1) / ref_cosine_f(0), rel=1e-12)
    assert s.betas.max().item() == pytest.approx(0.999)


@pytest.mark.parametrize("t", TS)
def test_scaled_linear_alphas_cumprod(t):
    s = DiffusionScheduler(beta_schedule="scaled_linear")
    assert s.alphas_cumprod[t].item() == pytest.approx(ref_scaled_linear_abar(t), rel=1e-12)


def test_no_parameters_and_not_a_module():
    s = DiffusionScheduler()
    assert not isinstance(s, torch.nn.Module)
    assert not any(isinstance(v, torch.nn.Parameter) for v in vars(s).values())


# ------------------------------------------------------------------------------------------------------------
# Forward process and parametrisations
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pred", PRED_TYPES)
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (3, 1, 2, 3, 4)])
def test_exact_prediction_recovers_x0_and_eps(pred, shape):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    s = DiffusionScheduler(beta_schedule="cosine", prediction_type=pred)
    xt = s.add_noise(x0, eps, t)
    a = [ref_cosine_abar(int(i)) for i in t]
    ref_xt = bc([math.sqrt(v) for v in a], x0) * x0 + bc([math.sqrt(1 - v) for v in a], x0) * eps
    torch.testing.assert_close(xt, ref_xt, rtol=1e-10, atol=1e-12)
    ref_v = bc([math.sqrt(v) for v in a], x0) * eps - bc([math.sqrt(1 - v) for v in a], x0) * x0
    torch.testing.assert_close(s.velocity(x0, eps, t), ref_v, rtol=1e-10, atol=1e-12)

    exact = {"epsilon": eps, "v_prediction": ref_v, "sample": x0}[pred]
    torch.testing.assert_close(s.training_target(x0, eps, t), exact)
    # t = 999 under the cosine schedule has abar ~ 2e-9, so x0 from eps is ill-conditioned: loosen atol there.
    torch.testing.assert_close(s.predict_x0(exact, xt, t)[:2], x0[:2], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(s.predict_x0(exact, xt, t)[2:], x0[2:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s.predict_epsilon(exact, xt, t)[1:], eps[1:], rtol=1e-9, atol=1e-9)
    # t = 0 with x0-prediction divides by sqrt(1 - abar_0) = 0.0064: also slightly ill-conditioned.
    torch.testing.assert_close(s.predict_epsilon(exact, xt, t)[:1], eps[:1], rtol=1e-7, atol=1e-7)


def test_conversions_round_trip_between_types():
    g = torch.Generator().manual_seed(1)
    x0, eps = (
        torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64),
        torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64),
    )
    t = torch.tensor([10, 700])
    sched = {p: DiffusionScheduler(prediction_type=p) for p in PRED_TYPES}
    xt = sched["epsilon"].add_noise(x0, eps, t)
    outputs = {"epsilon": eps, "v_prediction": sched["epsilon"].velocity(x0, eps, t), "sample": x0}
    for p, s in sched.items():
        # whichever type the network predicts, x0 and eps come back
        torch.testing.assert_close(s.predict_x0(outputs[p], xt, t), x0, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(s.predict_epsilon(outputs[p], xt, t), eps, rtol=1e-9, atol=1e-9)
        # the conversions agree with eq. 4: x_t = sqrt(abar) x0_hat + sqrt(1 - abar) eps_hat
        x0h, epsh = s.predict_x0(outputs[p], xt, t), s.predict_epsilon(outputs[p], xt, t)
        torch.testing.assert_close(s.add_noise(x0h, epsh, t), xt, rtol=1e-10, atol=1e-10)


def test_scalar_t_and_float32_and_3d():
    s = DiffusionScheduler()
    x0, eps = torch.ones(2, 1, 2, 2, 2), torch.zeros(2, 1, 2, 2, 2)
    a = ref_linear_abar(500)
    torch.testing.assert_close(s.add_noise(x0, eps, 500), torch.full_like(x0, math.sqrt(a)))
    assert s.add_noise(x0, eps, torch.tensor(500)).dtype == torch.float32


# ------------------------------------------------------------------------------------------------------------
# Reverse steps
# ------------------------------------------------------------------------------------------------------------


def test_ddpm_posterior_mean_variance_closed_form():
    s = DiffusionScheduler()
    g = torch.Generator().manual_seed(2)
    x0, xt = (
        torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64),
        torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64),
    )
    t = torch.tensor([0, 1, 600])
    mean, var = s.posterior_mean_variance(x0, xt, t)
    c0, ct, v = [], [], []
    for ti in t.tolist():
        beta = 1e-4 + (0.02 - 1e-4) * ti / (T - 1)
        a_t = ref_linear_abar(ti)
        a_p = ref_linear_abar(ti - 1) if ti > 0 else 1.0
        c0.append(math.sqrt(a_p) * beta / (1 - a_t))  # Ho et al. 2020, eq. 7
        ct.append(math.sqrt(1 - beta) * (1 - a_p) / (1 - a_t))
        v.append((1 - a_p) / (1 - a_t) * beta)
    torch.testing.assert_close(mean, bc(c0, x0) * x0 + bc(ct, x0) * xt, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var.flatten(), torch.tensor(v, dtype=torch.float64), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(mean[0], x0[0])  # t = 0: the posterior is a point mass at x0


@pytest.mark.parametrize("pred", PRED_TYPES)
def test_ddpm_step_is_posterior_mean_plus_scaled_noise(pred):
    s = DiffusionScheduler(prediction_type=pred)
    g = torch.Generator().manual_seed(3)
    x0, eps = (
        torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64),
        torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64),
    )
    t = torch.tensor([300, 40])
    xt = s.add_noise(x0, eps, t)
    out = {"epsilon": eps, "v_prediction": s.velocity(x0, eps, t), "sample": x0}[pred]
    res = s.ddpm_step(out, t, xt, generator=torch.Generator().manual_seed(7))
    assert isinstance(res, SchedulerStepOutput)
    z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    c0, ct, sd = [], [], []
    for ti in t.tolist():
        beta, a_t, a_p = 1e-4 + (0.02 - 1e-4) * ti / (T - 1), ref_linear_abar(ti), ref_linear_abar(ti - 1)
        c0.append(math.sqrt(a_p) * beta / (1 - a_t))
        ct.append(math.sqrt(1 - beta) * (1 - a_p) / (1 - a_t))
        sd.append(math.sqrt((1 - a_p) / (1 - a_t) * beta))
    ref = bc(c0, x0) * x0 + bc(ct, x0) * xt + bc(sd, x0) * z
    torch.testing.assert_close(res.prev_sample, ref, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(res.pred_x0, x0, rtol=1e-8, atol=1e-8)


def test_ddpm_step_at_t0_adds_no_noise():
    s = DiffusionScheduler(prediction_type="sample")
    x0, xt = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    torch.testing.assert_close(s.ddpm_step(x0, 0, xt).prev_sample, x0)


def test_ddim_eta0_deterministic_and_matches_eq12():
    s = DiffusionScheduler(beta_schedule="cosine")
    g = torch.Generator().manual_seed(4)
    xt, eps = (
        torch.randn(2, 1, 2, 3, generator=g, dtype=torch.float64),
        torch.randn(2, 1, 2, 3, generator=g, dtype=torch.float64),
    )
    t, tp = torch.tensor([800, 500]), torch.tensor([600, -1])
    r1 = s.ddim_step(eps, t, tp, xt, eta=0.0, generator=torch.Generator().manual_seed(1)).prev_sample
    r2 = s.ddim_step(eps, t, tp, xt, eta=0.0, generator=torch.Generator().manual_seed(2)).prev_sample
    assert torch.equal(r1, r2)
    # Song et al. 2021, eq. 12 with sigma = 0, written out element-wise.
    ref = torch.empty_like(xt)
    for n in range(2):
        a_t = ref_cosine_abar(int(t[n]))
        a_p = ref_cosine_abar(int(tp[n])) if tp[n] >= 0 else 1.0
        x0_hat = (xt[n] - math.sqrt(1 - a_t) * eps[n]) / math.sqrt(a_t)
        ref[n] = math.sqrt(a_p) * x0_hat + math.sqrt(1 - a_p) * eps[n]
    torch.testing.assert_close(r1, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("pred", PRED_TYPES)
def test_ddim_with_exact_prediction_lands_on_forward_process(pred):
    s = DiffusionScheduler(prediction_type=pred)
    g = torch.Generator().manual_seed(5)
    x0, eps = (
        torch.randn(2, 2, 2, 2, 2, generator=g, dtype=torch.float64),
        torch.randn(2, 2, 2, 2, 2, generator=g, dtype=torch.float64),
    )
    t, tp = torch.tensor([999, 400]), torch.tensor([500, 0])
    xt = s.add_noise(x0, eps, t)
    out = {"epsilon": eps, "v_prediction": s.velocity(x0, eps, t), "sample": x0}[pred]
    prev = s.ddim_step(out, t, tp, xt, eta=0.0).prev_sample
    torch.testing.assert_close(prev, s.add_noise(x0, eps, tp), rtol=1e-9, atol=1e-9)
    # to t_prev = -1: the clean sample
    torch.testing.assert_close(s.ddim_step(out, t, -1, xt).prev_sample, x0, rtol=1e-9, atol=1e-9)


def test_ddim_eta1_noise_matches_eq16():
    s = DiffusionScheduler()
    xt, eps = torch.randn(1, 1, 2, 2, dtype=torch.float64), torch.randn(1, 1, 2, 2, dtype=torch.float64)
    t, tp = 700, 350
    res = s.ddim_step(eps, t, tp, xt, eta=1.0, generator=torch.Generator().manual_seed(9)).prev_sample
    z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    a_t, a_p = ref_linear_abar(t), ref_linear_abar(tp)
    sigma = math.sqrt((1 - a_p) / (1 - a_t)) * math.sqrt(1 - a_t / a_p)
    x0_hat = (xt - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    ref = math.sqrt(a_p) * x0_hat + math.sqrt(1 - a_p - sigma**2) * eps + sigma * z
    torch.testing.assert_close(res, ref, rtol=1e-9, atol=1e-9)


def test_clip_sample_clamps_predicted_x0():
    s = DiffusionScheduler(prediction_type="sample", clip_sample=True, clip_range=0.5)
    x0 = torch.tensor([-2.0, -0.2, 0.3, 4.0]).reshape(1, 1, 2, 2)
    xt = torch.zeros_like(x0)
    res = s.ddim_step(x0, 100, -1, xt)
    torch.testing.assert_close(res.pred_x0, x0.clamp(-0.5, 0.5))
    torch.testing.assert_close(res.prev_sample, x0.clamp(-0.5, 0.5))


# ------------------------------------------------------------------------------------------------------------
# Timesteps, guidance, config, errors
# ------------------------------------------------------------------------------------------------------------


def test_uniform_timesteps():
    s = DiffusionScheduler()
    assert s.timesteps(50).tolist() == list(range(980, -1, -20))
    assert s.timesteps(3).tolist() == [666, 333, 0]
    assert s.timesteps(1000).tolist() == list(range(999, -1, -1))
    assert s.timesteps(1).tolist() == [0]
    assert s.timestep_pairs(3) == [(666, 333), (333, 0), (0, -1)]


def test_quadratic_timesteps():
    s = DiffusionScheduler()
    S = 10
    # tau_i = floor(0.8 * T * (i / (S-1))^2), written with exact fractions
    ref = [math.floor(800 * i * i / 81) for i in range(S)]
    assert ref == [0, 9, 39, 88, 158, 246, 355, 483, 632, 800]
    assert s.timesteps(S, "quadratic").tolist() == ref[::-1]
    assert s.timesteps(29, "quadratic").unique().numel() == 29
    with pytest.raises(ValueError, match="at most 29"):
        s.timesteps(30, "quadratic")


def test_classifier_free_guidance():
    c, u = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(classifier_free_guidance(c, u, 0.0), c)
    torch.testing.assert_close(classifier_free_guidance(c, u, 3.0), 4.0 * c - 3.0 * u)
    w = torch.tensor([1.0, 2.0])
    got = DiffusionScheduler.classifier_free_guidance(c, u, w)
    torch.testing.assert_close(got[0], 2 * c[0] - u[0])
    torch.testing.assert_close(got[1], 3 * c[1] - 2 * u[1])
    with pytest.raises(ValueError, match="eps_uncond"):
        classifier_free_guidance(c, u[:1], 1.0)
    with pytest.raises(TypeError, match="w"):
        classifier_free_guidance(c, u, "2")


def test_config_round_trip():
    s = DiffusionScheduler(
        num_train_timesteps=50,
        beta_schedule="scaled_linear",
        beta_start=1e-3,
        beta_end=0.03,
        prediction_type="v_prediction",
        clip_sample=True,
        clip_range=2.0,
    )
    cfg = json.loads(json.dumps(s.config))
    s2 = DiffusionScheduler.from_config(cfg)
    assert s2 == s and s2.config == s.config
    assert torch.equal(s2.alphas_cumprod, s.alphas_cumprod)
    with pytest.raises(ValueError, match="unknown keys"):
        DiffusionScheduler.from_config({**cfg, "foo": 1})


def test_errors():
    with pytest.raises(ValueError, match="beta_schedule='quad'"):
        DiffusionScheduler(beta_schedule="quad")
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionScheduler(prediction_type="eps")
    s = DiffusionScheduler()
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match="spacing"):
        s.timesteps(10, "cubic")
    with pytest.raises(ValueError, match="num_inference_steps=1001"):
        s.timesteps(1001)
    with pytest.raises(ValueError, match="num_inference_steps=0"):
        s.timesteps(0)
    with pytest.raises(ValueError, match="out of range"):
        s.add_noise(x, x, 1000)
    with pytest.raises(ValueError, match="out of range"):
        s.add_noise(x, x, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match="one timestep per sample"):
        s.add_noise(x, x, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer"):
        s.add_noise(x, x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="same shape"):
        s.add_noise(x, x[:1], 3)
    with pytest.raises(ValueError, match="smaller than"):
        s.ddim_step(x, 10, 10, x)
    with pytest.raises(ValueError, match="out of range"):
        s.ddim_step(x, 10, -2, x)
    with pytest.raises(ValueError, match="eta"):
        s.ddim_step(x, 10, 5, x, eta=-1.0)
