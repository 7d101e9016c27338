"""Diffusion scheduler: the maths of DDPM and DDIM, with no parameters of its own.

The scheduler owns the noise schedule (``betas``, ``alphas``, ``alphas_cumprod``), the forward process
(``add_noise``), the conversions between what a network may predict (epsilon, v or x0), and one reverse step of
either sampler (``ddpm_step``, ``ddim_step``). It holds no ``nn.Parameter`` and no buffers of a model: a DDPM
checkpoint samples with DDIM through the same scheduler without retraining, and the settings travel as the plain
dict ``config``.

Timestep convention: an integer ``t`` in ``{0, ..., T-1}`` (``T = num_train_timesteps``) indexes the tables and
is step ``t + 1`` of the papers, so ``alphas_cumprod[0] = 1 - betas[0]`` (one step of noise) and
``alphas_cumprod[T-1]`` is the noisiest. ``t = -1`` is accepted only as a *previous* timestep and means "the
clean sample", with ``alphas_cumprod[-1] := 1`` (Song et al. 2021, where ``alpha_0 = 1``).

References:
    Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM).
    Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (DDIM).
    Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (cosine schedule).
    Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models" (v-prediction).
    Ho & Salimans 2021, "Classifier-Free Diffusion Guidance".
    Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models" (scaled-linear betas).
"""

import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional, Union

import torch

from smp_like.base.checks import check_real

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
    "DiffusionScheduler",
    "SchedulerStepOutput",
    "classifier_free_guidance",
]

BETA_SCHEDULES = ("linear", "cosine", "scaled_linear")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("uniform", "quadratic")

# Nichol & Dhariwal 2021, sec. 3.2: offset s of the cosine schedule and the cap on beta near t = T.
COSINE_S = 0.008
COSINE_MAX_BETA = 0.999

Timestep = Union[int, torch.Tensor]


class SchedulerStepOutput(NamedTuple):
    """Result of one reverse step.

    Attributes:
        prev_sample: ``x_{t_prev}``, same shape and dtype as ``x_t``.
        pred_x0: the network's estimate of the clean sample at ``t`` (after clipping, if enabled).
    """

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"DiffusionScheduler: {name}={value!r} is not supported; choose one of {list(choices)}."
        )
    return value


def classifier_free_guidance(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: Union[float, torch.Tensor]
) -> torch.Tensor:
    """Guided prediction ``(1 + w) * eps_cond - w * eps_uncond`` (Ho & Salimans 2021, eq. 6).

    ``w = 0`` is the plain conditional model; ``w > 0`` pushes samples towards the condition. The formula is
    linear, so it applies equally to v- or x0-predictions.

    Args:
        eps_cond: prediction with the condition, any shape.
        eps_uncond: prediction with the null condition, same shape.
        w: guidance weight, a float or a tensor of shape ``(N,)`` (one weight per sample, broadcast over the
            remaining dimensions) or any shape broadcastable to the predictions.

    Returns:
        Tensor of the predictions' shape.

    Raises:
        ValueError: if the two predictions differ in shape or ``w`` has a bad shape.
        TypeError: if ``w`` is neither a number nor a tensor.
    """
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(
            f"classifier_free_guidance: eps_cond shape {tuple(eps_cond.shape)} and eps_uncond shape "
            f"{tuple(eps_uncond.shape)} must be equal."
        )
    if isinstance(w, torch.Tensor):
        if w.dim() == 1 and eps_cond.dim() > 1:
            if w.shape[0] != eps_cond.shape[0]:
                raise ValueError(
                    f"classifier_free_guidance: w of shape {tuple(w.shape)} must have one weight per sample "
                    f"(batch size {eps_cond.shape[0]})."
                )
            w = w.reshape(-1, *([1] * (eps_cond.dim() - 1)))
        w = w.to(device=eps_cond.device, dtype=eps_cond.dtype)
    elif isinstance(w, bool) or not isinstance(w, (int, float)):
        raise TypeError(f"classifier_free_guidance: w must be a float or a tensor, got {type(w).__name__}.")
    return (1 + w) * eps_cond - w * eps_uncond


class DiffusionScheduler:
    """Noise schedule and reverse steps of DDPM / DDIM, with no learnable state.

    Args:
        num_train_timesteps: ``T``, number of diffusion steps the model is trained with.
        beta_schedule: ``"linear"`` (Ho et al. 2020, sec. 4: ``beta_t = linspace(beta_start, beta_end, T)``),
            ``"scaled_linear"`` (Rombach et al. 2022: ``linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2``) or
            ``"cosine"`` (Nichol & Dhariwal 2021, eq. 17 with ``s = 0.008``, betas capped at 0.999;
            ``beta_start`` / ``beta_end`` are ignored).
        beta_start: first beta of the (scaled-)linear schedules.
        beta_end: last beta of the (scaled-)linear schedules.
        prediction_type: what the network predicts: ``"epsilon"`` (the noise), ``"v_prediction"``
            (``v = sqrt(abar) * eps - sqrt(1 - abar) * x0``, Salimans & Ho 2022) or ``"sample"`` (x0).
        clip_sample: clamp the predicted x0 to ``[-clip_range, clip_range]`` inside the reverse steps.
        clip_range: bound used when ``clip_sample`` is True.

    Attributes:
        betas, alphas, alphas_cumprod: float64 CPU tensors of shape ``(T,)``; ``alphas = 1 - betas`` and
            ``alphas_cumprod[t] = prod_{i <= t} alphas[i]`` (``abar_t``).

    Raises:
        ValueError: for an unknown schedule or prediction type, ``T < 1``, or betas outside ``(0, 1)``.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction_type: str = "epsilon",
        clip_sample: bool = False,
        clip_range: float = 1.0,
    ) -> None:
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int):
            raise TypeError(
                f"DiffusionScheduler: num_train_timesteps must be an int, got {num_train_timesteps!r}."
            )
        if num_train_timesteps < 1:
            raise ValueError(f"DiffusionScheduler: num_train_timesteps={num_train_timesteps} must be >= 1.")
        _check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
        _check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        check_real("beta_start", beta_start)
        check_real("beta_end", beta_end)
        if beta_schedule != "cosine" and not (0.0 < beta_start < 1.0 and 0.0 < beta_end < 1.0):
            raise ValueError(
                f"DiffusionScheduler: beta_start={beta_start} and beta_end={beta_end} must lie in (0, 1)."
            )
        if beta_schedule != "cosine" and beta_start > beta_end:
            # A noise schedule that shrinks makes no sense for DDPM (noise must grow with t).
            raise ValueError(
                f"DiffusionScheduler: `beta_start`={beta_start} must be <= `beta_end`={beta_end} (noise grows with t)."
            )
        if not isinstance(clip_sample, bool):
            raise TypeError(f"DiffusionScheduler: clip_sample must be a bool, got {clip_sample!r}.")
        check_real("clip_range", clip_range, low=0.0, low_open=True)

        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.clip_range = float(clip_range)

        self.betas = self._make_betas()
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    # --------------------------------------------------------------------------------------------------------
    # Schedule
    # --------------------------------------------------------------------------------------------------------

    def _make_betas(self) -> torch.Tensor:
        T = self.num_train_timesteps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float64)
        if self.beta_schedule == "scaled_linear":
            return torch.linspace(self.beta_start**0.5, self.beta_end**0.5, T, dtype=torch.float64) ** 2
        # Nichol & Dhariwal 2021, eq. 17: abar(t) = f(t) / f(0), f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2,
        # and beta_t = 1 - abar(t) / abar(t-1) capped at 0.999 (paper t = 1..T, our index t-1).
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos(((steps / T + COSINE_S) / (1 + COSINE_S)) * (math.pi / 2)) ** 2
        abar = f / f[0]
        betas = 1.0 - abar[1:] / abar[:-1]
        return betas.clamp(max=COSINE_MAX_BETA)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-serialisable dict (``from_config`` rebuilds the scheduler)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": self.prediction_type,
            "clip_sample": self.clip_sample,
            "clip_range": self.clip_range,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DiffusionScheduler":
        """Build a scheduler from a dict made by ``config``.

        Raises:
            ValueError: if the dict has keys that are not constructor arguments.
        """
        known = set(cls().config)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"DiffusionScheduler.from_config: unknown keys {unknown}; valid keys are {sorted(known)}."
            )
        return cls(**dict(config))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DiffusionScheduler) and self.config == other.config

    # --------------------------------------------------------------------------------------------------------
    # Timestep handling
    # --------------------------------------------------------------------------------------------------------

    def _check_t(
        self, t: Timestep, x: torch.Tensor, name: str, allow_minus_one: bool = False
    ) -> torch.Tensor:
        """Return ``t`` as a CPU int64 tensor of shape () or (N,), after range and shape checks."""
        if isinstance(t, bool):
            raise TypeError(f"DiffusionScheduler: {name} must be an int or an integer tensor, got a bool.")
        if isinstance(t, int):
            t = torch.tensor(t, dtype=torch.long)
        elif isinstance(t, torch.Tensor):
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"DiffusionScheduler: {name} must be an integer tensor, got dtype {t.dtype}.")
            if t.dim() > 1:
                raise ValueError(
                    f"DiffusionScheduler: {name} must be a scalar or of shape (N,), got {tuple(t.shape)}."
                )
            if t.dim() == 1 and (x.dim() == 0 or t.shape[0] != x.shape[0]):
                raise ValueError(
                    f"DiffusionScheduler: {name} has {t.shape[0]} timesteps but the sample has shape "
                    f"{tuple(x.shape)}; give one timestep per sample."
                )
            t = t.detach().to("cpu", torch.long)
        else:
            raise TypeError(
                f"DiffusionScheduler: {name} must be an int or an integer tensor, got {type(t).__name__}."
            )
        low = -1 if allow_minus_one else 0
        if t.numel() and (int(t.min()) < low or int(t.max()) >= self.num_train_timesteps):
            raise ValueError(
                f"DiffusionScheduler: {name}={t.tolist()} is out of range; valid timesteps are "
                f"{low}..{self.num_train_timesteps - 1}."
            )
        return t

    def _abar(self, t: torch.Tensor) -> torch.Tensor:
        """``abar_t`` for checked timesteps, with ``abar_{-1} = 1`` (float64, CPU)."""
        return torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))

    @staticmethod
    def _bcast(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Move a () or (N,) float64 coefficient to ``x``'s device/dtype, shaped to broadcast over x."""
        if coef.dim() == 1:
            coef = coef.reshape(-1, *([1] * (x.dim() - 1)))
        return coef.to(device=x.device, dtype=x.dtype)

    @staticmethod
    def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
        if a.shape != b.shape:
            raise ValueError(
                f"DiffusionScheduler: {names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}."
            )

    @staticmethod
    def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        # Draw on the generator's device so a CPU generator gives the same numbers whatever device x is on.
        device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)

    def timesteps(self, num_inference_steps: int, spacing: str = "uniform") -> torch.Tensor:
        """Sub-sequence of training timesteps a sampler visits, in sampling order (decreasing).

        With ``T = num_train_timesteps``, ``S = num_inference_steps`` and ``i = 0, ..., S-1`` (DDIM paper,
        sec. 4.2 and appendix D.2, which picks ``tau_i`` as ``floor(c * i)`` or ``floor(c * i^2)``):

        - ``"uniform"``: ``tau_i = floor(i * T / S)``. E.g. ``T=1000, S=50`` gives 0, 20, ..., 980 (the DDIM
          code's ``range(0, T, T // S)`` when S divides T; always exactly S steps otherwise).
        - ``"quadratic"``: ``tau_i = floor(0.8 * T * i^2 / (S-1)^2)`` (``[0]`` when S = 1), computed in exact
          integer arithmetic; this is the DDIM code's ``linspace(0, sqrt(0.8 T), S) ** 2`` without float
          rounding. The steps are dense near t = 0. It is only valid while the values are distinct, i.e.
          ``(S-1)^2 <= 0.8 T`` (S <= 29 for T = 1000).

        The first step of sampling is the largest ``tau``; each step goes to the next entry, and after the last
        (``tau_0 = 0``) to ``t_prev = -1``, the clean sample (see ``timestep_pairs``).

        Args:
            num_inference_steps: S, between 1 and ``num_train_timesteps``.
            spacing: ``"uniform"`` or ``"quadratic"``.

        Returns:
            int64 tensor of shape ``(S,)``, strictly decreasing.

        Raises:
            ValueError: for an unknown spacing, S out of range, or a quadratic spacing with repeated steps.
        """
        _check_choice("spacing", spacing, TIMESTEP_SPACINGS)
        T = self.num_train_timesteps
        S = num_inference_steps
        if isinstance(S, bool) or not isinstance(S, int):
            raise TypeError(f"DiffusionScheduler: num_inference_steps must be an int, got {S!r}.")
        if not 1 <= S <= T:
            raise ValueError(
                f"DiffusionScheduler: num_inference_steps={S} must be between 1 and num_train_timesteps={T}."
            )
        if spacing == "uniform":
            steps = [(i * T) // S for i in range(S)]
        else:
            steps = [0] if S == 1 else [(4 * T * i * i) // (5 * (S - 1) ** 2) for i in range(S)]
            if len(set(steps)) != S:
                max_s = math.isqrt(4 * T // 5) + 1
                raise ValueError(
                    f"DiffusionScheduler: spacing='quadratic' with num_inference_steps={S} repeats timesteps "
                    f"for num_train_timesteps={T}; use at most {max_s} steps or spacing='uniform'."
                )
        return torch.tensor(steps[::-1], dtype=torch.long)

    def timestep_pairs(self, num_inference_steps: int, spacing: str = "uniform") -> list[tuple[int, int]]:
        """``(t, t_prev)`` for each sampling step, ending with ``t_prev = -1`` (the clean sample).

        Args and errors as in ``timesteps``.
        """
        ts = self.timesteps(num_inference_steps, spacing).tolist()
        return list(zip(ts, ts[1:] + [-1]))

    # --------------------------------------------------------------------------------------------------------
    # Forward process and parametrisations
    # --------------------------------------------------------------------------------------------------------

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """Sample ``q(x_t | x0)``: ``x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise`` (Ho et al. 2020, eq. 4).

        Args:
            x0: clean samples, (N, C, *spatial) for any number of spatial dims.
            noise: standard normal noise of the same shape.
            t: an int or an int64 tensor of shape (N,) (one timestep per sample).

        Returns:
            ``x_t``, same shape and dtype as ``x0``.

        Raises:
            ValueError: for a shape mismatch or ``t`` outside ``0..T-1``.
        """
        self._check_same_shape(x0, noise, "x0 and noise")
        abar = self._abar(self._check_t(t, x0, "t"))
        return self._bcast(abar.sqrt(), x0) * x0 + self._bcast((1 - abar).sqrt(), x0) * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """``v = sqrt(abar_t) * noise - sqrt(1 - abar_t) * x0`` (Salimans & Ho 2022, sec. 4 / appendix D).

        Args and errors as in ``add_noise``.
        """
        self._check_same_shape(x0, noise, "x0 and noise")
        abar = self._abar(self._check_t(t, x0, "t"))
        return self._bcast(abar.sqrt(), x0) * noise - self._bcast((1 - abar).sqrt(), x0) * x0

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """Regression target of the network for ``prediction_type``: the noise, ``v`` or ``x0``.

        The DDPM training loss is ``mse(model(add_noise(x0, noise, t), t), training_target(x0, noise, t))``
        with ``t`` uniform in ``0..T-1`` (Ho et al. 2020, Algorithm 1 / eq. 14 for epsilon).
        """
        self._check_same_shape(x0, noise, "x0 and noise")
        self._check_t(t, x0, "t")
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        return self.velocity(x0, noise, t)

    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: Timestep) -> torch.Tensor:
        """Estimate of the clean sample from the network output (no clipping).

        - epsilon: ``x0 = (x_t - sqrt(1 - abar) * eps) / sqrt(abar)`` (Ho et al. 2020, eq. 15)
        - v_prediction: ``x0 = sqrt(abar) * x_t - sqrt(1 - abar) * v`` (Salimans & Ho 2022, appendix D)
        - sample: the output itself.

        Args:
            model_output: the network's prediction, shape of ``x_t``.
            x_t: noisy samples at ``t``.
            t: int or (N,) int64 tensor.

        Returns:
            Tensor of ``x_t``'s shape.
        """
        self._check_same_shape(model_output, x_t, "model_output and x_t")
        abar = self._abar(self._check_t(t, x_t, "t"))
        sa, s1a = self._bcast(abar.sqrt(), x_t), self._bcast((1 - abar).sqrt(), x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s1a * model_output) / sa
        if self.prediction_type == "v_prediction":
            return sa * x_t - s1a * model_output
        return model_output

    def predict_epsilon(self, model_output: torch.Tensor, x_t: torch.Tensor, t: Timestep) -> torch.Tensor:
        """Estimate of the noise from the network output.

        - epsilon: the output itself
        - v_prediction: ``eps = sqrt(1 - abar) * x_t + sqrt(abar) * v``
        - sample: ``eps = (x_t - sqrt(abar) * x0) / sqrt(1 - abar)`` (eq. 4 solved for the noise).

        Args and returns as in ``predict_x0``.
        """
        self._check_same_shape(model_output, x_t, "model_output and x_t")
        abar = self._abar(self._check_t(t, x_t, "t"))
        sa, s1a = self._bcast(abar.sqrt(), x_t), self._bcast((1 - abar).sqrt(), x_t)
        if self.prediction_type == "epsilon":
            return model_output
        if self.prediction_type == "v_prediction":
            return s1a * x_t + sa * model_output
        return (x_t - sa * model_output) / s1a

    def _x0_and_eps(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted x0 (clipped if enabled) and the noise consistent with it."""
        x0 = self.predict_x0(model_output, x_t, t)
        if not self.clip_sample:
            return x0, self.predict_epsilon(model_output, x_t, t)
        x0 = x0.clamp(-self.clip_range, self.clip_range)
        # Re-derive eps from the clipped x0 so that x_t = sqrt(abar) x0 + sqrt(1-abar) eps still holds.
        abar = self._abar(t)
        eps = (x_t - self._bcast(abar.sqrt(), x_t) * x0) / self._bcast((1 - abar).sqrt(), x_t)
        return x0, eps

    # --------------------------------------------------------------------------------------------------------
    # Reverse steps
    # --------------------------------------------------------------------------------------------------------

    def posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: Timestep
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_{t-1} | x_t, x0)`` (Ho et al. 2020, eq. 6-7).

        ``mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) * x_t``
        and ``var = (1 - abar_{t-1}) / (1 - abar_t) * beta_t``, with ``abar_{-1} = 1`` (so at ``t = 0`` the mean
        is ``x0`` and the variance 0).

        Returns:
            ``(mean, variance)``; the mean has ``x_t``'s shape, the variance broadcasts against it.
        """
        self._check_same_shape(x0, x_t, "x0 and x_t")
        tt = self._check_t(t, x_t, "t")
        abar_t, abar_prev = self._abar(tt), self._abar(tt - 1)
        beta_t = self.betas[tt]
        c0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
        ct = (1 - beta_t).sqrt() * (1 - abar_prev) / (1 - abar_t)
        var = (1 - abar_prev) / (1 - abar_t) * beta_t
        mean = self._bcast(c0, x_t) * x0 + self._bcast(ct, x_t) * x_t
        return mean, self._bcast(var, x_t)

    def ddpm_step(
        self,
        model_output: torch.Tensor,
        t: Timestep,
        x_t: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> SchedulerStepOutput:
        """One ancestral step ``x_t -> x_{t-1}`` (Ho et al. 2020, Algorithm 2, variance "fixed_small").

        1. ``x0_hat`` from the model output (clamped if ``clip_sample``).
        2. Posterior mean and variance of ``q(x_{t-1} | x_t, x0_hat)`` (eq. 6-7).
        3. ``x_{t-1} = mean + sqrt(var) * z`` with ``z = torch.randn(x_t.shape, generator=generator)`` drawn on
           the generator's device; no noise is added where ``t = 0`` (its variance is 0).

        Args:
            model_output: network output at ``(x_t, t)`` for ``prediction_type``.
            t: int or (N,) int64 tensor in ``0..T-1``.
            x_t: current samples.
            generator: for reproducible noise.

        Returns:
            ``SchedulerStepOutput(prev_sample, pred_x0)``.
        """
        self._check_same_shape(model_output, x_t, "model_output and x_t")
        tt = self._check_t(t, x_t, "t")
        x0, _ = self._x0_and_eps(model_output, x_t, tt)
        mean, var = self.posterior_mean_variance(x0, x_t, tt)
        if bool((tt > 0).any()):
            mean = mean + var.sqrt() * self._randn_like(x_t, generator)
        return SchedulerStepOutput(mean, x0)

    def ddim_step(
        self,
        model_output: torch.Tensor,
        t: Timestep,
        t_prev: Timestep,
        x_t: torch.Tensor,
        eta: float = 0.0,
        generator: Optional[torch.Generator] = None,
    ) -> SchedulerStepOutput:
        """One DDIM step ``x_t -> x_{t_prev}`` (Song et al. 2021, eq. 12).

        1. ``x0_hat`` and ``eps_hat`` from the model output (x0 clamped and eps re-derived if ``clip_sample``).
        2. ``sigma`` from eq. 16 (``eta = 0``: deterministic DDIM; ``eta = 1``: DDPM's posterior variance).
        3. ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z``, with ``z``
           drawn as in ``ddpm_step`` and only when ``eta > 0``.

        Works with any model trained by DDPM on the same schedule. ``t_prev = -1`` steps to the clean sample.

        Args:
            model_output: network output at ``(x_t, t)``.
            t: int or (N,) int64 tensor in ``0..T-1``.
            t_prev: int or (N,) tensor in ``-1..T-1``, smaller than ``t``.
            x_t: current samples.
            eta: stochasticity, >= 0.
            generator: for reproducible noise when ``eta > 0``.

        Returns:
            ``SchedulerStepOutput(prev_sample, pred_x0)``.

        Raises:
            ValueError: for timesteps out of range, ``t_prev >= t`` or ``eta < 0``.
        """
        self._check_same_shape(model_output, x_t, "model_output and x_t")
        if not eta >= 0:
            raise ValueError(f"DiffusionScheduler.ddim_step: eta={eta} must be >= 0.")
        tt = self._check_t(t, x_t, "t")
        tp = self._check_t(t_prev, x_t, "t_prev", allow_minus_one=True)
        if bool((tp >= tt).any()):
            raise ValueError(
                f"DiffusionScheduler.ddim_step: t_prev={tp.tolist()} must be smaller than t={tt.tolist()}."
            )
        x0, eps = self._x0_and_eps(model_output, x_t, tt)
        a_t, a_p = self._abar(tt), self._abar(tp)
        sigma = eta * ((1 - a_p) / (1 - a_t) * (1 - a_t / a_p)).clamp(min=0).sqrt()
        dir_coef = (1 - a_p - sigma**2).clamp(min=0).sqrt()
        prev = self._bcast(a_p.sqrt(), x_t) * x0 + self._bcast(dir_coef, x_t) * eps
        if eta > 0:
            prev = prev + self._bcast(sigma, x_t) * self._randn_like(x_t, generator)
        return SchedulerStepOutput(prev, x0)

    @staticmethod
    def classifier_free_guidance(
        eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: Union[float, torch.Tensor]
    ) -> torch.Tensor:
        """``(1 + w) * eps_cond - w * eps_uncond`` (Ho & Salimans 2021, eq. 6); see the module function."""
        return classifier_free_guidance(eps_cond, eps_uncond, w)
