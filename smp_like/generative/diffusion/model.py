"""DDPM and DDIM: a diffusion model = an eps-model (any segmentation architecture with a time embedding) + the
parameter-free :class:`~smp_like.generative.diffusion.scheduler.DiffusionScheduler`.

* **eps-model** — ``create_model(architecture, ..., time_embedding_dim=...)``: the architecture's own encoder and
  decoder, with the time embedding injected into every decoder block (and into the encoder's blocks when the
  encoder is time-aware, e.g. the Flemme families). It predicts ``prediction_type`` (epsilon, v or x0).
* **training** — :meth:`DDPM.loss`: ``t ~ U{0..T-1}``, ``x_t = add_noise(x0, eps, t)``, MSE to the scheduler's
  training target (Ho et al. 2020, Algorithm 1 / eq. 14; v and x0 targets as the scheduler defines them).
* **sampling** — :meth:`DDPM.sample`: ancestral DDPM steps over every timestep (Algorithm 2) or DDIM steps
  (Song et al. 2021, eq. 12) over ``num_inference_steps`` uniform or quadratic timesteps with ``eta``. Both use the
  same trained network: a DDPM checkpoint samples with DDIM (``sampler="ddim"``, or ``DDIM.from_pretrained``).
* **conditioning** —
  class labels (``num_classes``): a learned embedding (``class_embedding="embedding"``, with one extra "null"
  entry) or a linear map of the one-hot vector (``"one_hot"``, null = the zero vector), added to the time
  embedding; images (``condition_channels``): concatenated to ``x_t`` (``image_conditioning="concat"``) or
  encoded by any registered encoder, globally pooled and projected (``"encoder"``, null = a learned vector).
* **classifier-free guidance** (Ho & Salimans 2021) — training drops the condition of each sample with
  probability ``condition_dropout`` (replacing it by the null condition); sampling with ``guidance_scale`` w
  uses ``ε = (1 + w)·ε(x, t, c) − w·ε(x, t, ∅)`` (their eq. 6). A concatenated image has no null value, so
  guidance with ``image_conditioning="concat"`` is refused.

Data convention: images scaled to [-1, 1] (``clip_sample=True`` clamps predicted x0 to it while sampling).
"""
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.checks import argument_named, check_choice, check_image_batch, check_positive_int, check_real
from smp_like.base.hub import HubMixin
from smp_like.base.registry import classes_with, get_model_class
from smp_like.generative.diffusion.scheduler import TIMESTEP_SPACINGS, DiffusionScheduler

__all__ = ["DDPM", "DDIM", "SAMPLERS", "CLASS_EMBEDDINGS", "IMAGE_CONDITIONINGS", "progress_bar"]

SAMPLERS = ("ddpm", "ddim")
CLASS_EMBEDDINGS = ("embedding", "one_hot")
IMAGE_CONDITIONINGS = ("concat", "encoder")
Size = Union[int, Sequence[int]]


def progress_bar(iterable: Any, enabled: bool, desc: str, total: Optional[int] = None) -> Any:
    """``tqdm`` over ``iterable`` when ``enabled`` (tqdm ships with huggingface_hub), else the iterable itself."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


_DEFAULT_INFERENCE_STEPS = 50


class DDPM(nn.Module, HubMixin):
    """Denoising diffusion probabilistic model over any registered architecture and encoder, 2D or 3D.

    Args:
        architecture: the eps-model's architecture (``"unet"``, ``"fpn"``, ...; any name ``create_model`` knows whose
            class supports a time embedding).
        encoder_name: the eps-model's encoder (native, ``tu-<timm>``, Flemme family, user-registered).
        encoder_weights: pretrained tag for that encoder, or None.
        in_channels: channels of the generated images.
        time_embedding_dim: width of the time embedding (sinusoidal → MLP).
        time_injection: ``"gate_bias"``, ``"gate"``, ``"bias"`` or ``"cross_attention"``.
        num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type, clip_sample, clip_range: the
            :class:`DiffusionScheduler`'s settings (saved with the model).
        num_classes: number of class labels for class conditioning, or None.
        class_embedding: ``"embedding"`` (learned table) or ``"one_hot"`` (linear map of the one-hot vector).
        condition_channels: channels of a conditioning image, or None.
        image_conditioning: ``"concat"`` (concatenated to x_t; needs the condition at the sample's size) or
            ``"encoder"`` (a separate encoder, globally pooled to a vector).
        condition_encoder_name: encoder of ``"encoder"`` conditioning (default: ``encoder_name``).
        condition_dropout: probability of replacing a sample's condition by the null condition in training (CFG).
        guidance_scale: default CFG weight w for sampling (0: no guidance).
        sampler: default sampler, ``"ddpm"`` or ``"ddim"``.
        num_inference_steps: default number of DDIM steps (DDPM always visits all ``num_train_timesteps``).
        timestep_spacing: DDIM step list, ``"uniform"`` or ``"quadratic"``.
        eta: DDIM stochasticity (0: deterministic).
        spatial_dims: 2 for images, 3 for volumes.
        **model_kwargs: further arguments of the architecture (``encoder_depth``, ``decoder_channels``, Flemme
            encoder parameters, ...).

    Raises:
        ValueError: for an architecture that cannot take a time embedding, CFG with concatenated conditioning, or
            any other bad argument (naming it).
    """

    supports_anisotropic_strides: bool = False
    _default_sampler = "ddpm"

    def __init__(
        self,
        architecture: str = "unet",
        encoder_name: str = "resnet18",
        encoder_weights: Optional[str] = None,
        in_channels: int = 3,
        time_embedding_dim: int = 128,
        time_injection: str = "gate_bias",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_range: float = 1.0,
        num_classes: Optional[int] = None,
        class_embedding: str = "embedding",
        condition_channels: Optional[int] = None,
        image_conditioning: str = "concat",
        condition_encoder_name: Optional[str] = None,
        condition_dropout: float = 0.0,
        guidance_scale: float = 0.0,
        sampler: Optional[str] = None,
        num_inference_steps: int = 50,
        timestep_spacing: str = "uniform",
        eta: float = 0.0,
        spatial_dims: int = 2,
        **model_kwargs: Any,
    ):
        super().__init__()
        sampler = self._default_sampler if sampler is None else sampler
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("in_channels", in_channels)
        check_positive_int("time_embedding_dim", time_embedding_dim)
        check_positive_int("num_classes", num_classes, allow_none=True)
        check_positive_int("condition_channels", condition_channels, allow_none=True)
        check_positive_int("num_inference_steps", num_inference_steps)
        check_choice("class_embedding", class_embedding, CLASS_EMBEDDINGS)
        check_choice("image_conditioning", image_conditioning, IMAGE_CONDITIONINGS)
        check_choice("sampler", sampler, SAMPLERS)
        check_choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
        check_real("condition_dropout", condition_dropout, low=0.0, high=1.0, high_open=True)
        check_real("eta", eta, low=0.0)
        check_real("guidance_scale", guidance_scale)
        # The default of 50 DDIM steps is capped at a shorter training schedule; any other value beyond it
        # would only fail when sampling, so it is refused here.
        if (
            sampler == "ddim"
            and isinstance(num_train_timesteps, int)
            and num_inference_steps != _DEFAULT_INFERENCE_STEPS
            and num_inference_steps > num_train_timesteps
        ):
            raise ValueError(
                f"`num_inference_steps` must lie in [1, num_train_timesteps={num_train_timesteps}], got "
                f"{num_inference_steps!r}"
            )
        for forbidden in ("classes", "aux_params", "activation"):
            if forbidden in model_kwargs:
                raise ValueError(
                    f"`{forbidden}` is set by the diffusion model (its output is the prediction for `in_channels` "
                    "channels); do not pass it"
                )
        conditioned = num_classes is not None or condition_channels is not None
        if (condition_dropout > 0 or guidance_scale != 0) and not conditioned:
            raise ValueError(
                "classifier-free guidance (`condition_dropout`, `guidance_scale`) needs a condition: set "
                "`num_classes` or `condition_channels`"
            )
        self._check_guidance_defined(condition_channels, image_conditioning, num_classes, condition_dropout,
                                     guidance_scale)

        model_class = get_model_class(architecture)
        if not getattr(model_class, "accepts_time_embedding", False):
            capable = classes_with("accepts_time_embedding")
            raise ValueError(
                f"architecture {architecture!r} ({model_class.__name__}) cannot take a time embedding, so it cannot "
                f"be an eps-model; architectures that can: {capable}"
            )
        concat = condition_channels is not None and image_conditioning == "concat"
        self.scheduler = DiffusionScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            beta_start=beta_start,
            beta_end=beta_end,
            prediction_type=prediction_type,
            clip_sample=clip_sample,
            clip_range=clip_range,
        )
        self.model = model_class(
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=in_channels + (condition_channels if concat else 0),
            classes=in_channels,
            spatial_dims=spatial_dims,
            time_embedding_dim=time_embedding_dim,
            time_injection=time_injection,
            **model_kwargs,
        )
        self.class_embedding: Optional[nn.Module] = None
        if num_classes is not None:
            if class_embedding == "embedding":  # index num_classes = the null label
                self.class_embedding = nn.Embedding(num_classes + 1, time_embedding_dim)
            else:
                self.class_embedding = nn.Linear(num_classes, time_embedding_dim, bias=False)
        if condition_encoder_name is not None:
            if not isinstance(condition_encoder_name, str):
                raise TypeError(
                    f"`condition_encoder_name` must be an encoder name or None, got {condition_encoder_name!r}"
                )
            if condition_channels is None or image_conditioning != "encoder":
                raise ValueError(
                    f"`condition_encoder_name`={condition_encoder_name!r} is only used with "
                    "image_conditioning='encoder' and condition_channels set; remove it or set those"
                )
        self.condition_encoder: Optional[nn.Module] = None
        if condition_channels is not None and image_conditioning == "encoder":
            from smp_like.encoders import get_encoder

            with argument_named("condition_encoder_name" if condition_encoder_name else "encoder_name",
                                "encoder_name"):
                self.condition_encoder = get_encoder(
                    condition_encoder_name or encoder_name,
                    in_channels=condition_channels,
                    depth=model_kwargs.get("encoder_depth", 5),
                    weights=None,
                    spatial_dims=spatial_dims,
                )
            self.condition_projection = nn.Linear(self.condition_encoder.out_channels[-1], time_embedding_dim)
            self.null_condition = nn.Parameter(torch.zeros(time_embedding_dim))

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.class_embedding_type = class_embedding
        self.condition_channels = condition_channels
        self.image_conditioning = image_conditioning
        self.condition_dropout = float(condition_dropout)
        self.guidance_scale = float(guidance_scale)
        self.sampler = sampler
        if num_inference_steps == _DEFAULT_INFERENCE_STEPS and isinstance(num_train_timesteps, int):
            num_inference_steps = min(num_inference_steps, num_train_timesteps)
        self.num_inference_steps = num_inference_steps
        self.timestep_spacing = timestep_spacing
        self.eta = float(eta)
        self.name = f"{type(self).__name__.lower()}-{architecture}-{encoder_name}"

    # The DDPM/DDIM pair share weights: either class loads the other's checkpoints.
    _shares_checkpoints = True

    @staticmethod
    def _check_guidance_defined(
        condition_channels: Optional[int],
        image_conditioning: str,
        num_classes: Optional[int],
        condition_dropout: float,
        guidance_scale: float,
    ) -> None:
        if condition_channels is not None and image_conditioning == "concat" and (
            condition_dropout > 0 or guidance_scale != 0
        ):
            raise ValueError(
                "classifier-free guidance is undefined with image_conditioning='concat': a concatenated image has "
                "no 'null' value to drop it to. Use image_conditioning='encoder' (or class labels) for guidance, "
                "or set condition_dropout=0 and guidance_scale=0"
            )

    @property
    def spatial_dims(self) -> int:
        return self.model.spatial_dims

    # ----- conditioning --------------------------------------------------------------------------------------------
    def _check_condition_inputs(
        self, n: int, labels: Optional[torch.Tensor], condition: Optional[torch.Tensor], size: Sequence[int]
    ) -> None:
        if self.num_classes is None and labels is not None:
            raise ValueError("this model has no class conditioning (num_classes=None) but `labels` were given")
        if self.num_classes is not None and labels is None:
            raise ValueError(f"this model is class-conditioned (num_classes={self.num_classes}): pass `labels`")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
                raise ValueError(f"`labels` must be an int tensor of shape ({n},), got {labels!r:.80}")
            if bool(((labels < 0) | (labels >= self.num_classes)).any()):
                raise ValueError(f"`labels` must lie in 0..{self.num_classes - 1}, got {labels.tolist()}")
        if self.condition_channels is None and condition is not None:
            raise ValueError("this model has no image conditioning (condition_channels=None) but a `condition` was given")
        if self.condition_channels is not None:
            if condition is None:
                raise ValueError(
                    f"this model is image-conditioned (condition_channels={self.condition_channels}): pass `condition`"
                )
            check_image_batch(condition, self.spatial_dims, self.condition_channels)
            if condition.shape[0] != n:
                raise ValueError(f"`condition` must have {n} samples, got {condition.shape[0]}")
            if self.image_conditioning == "concat" and list(condition.shape[2:]) != list(size):
                raise ValueError(
                    f"a concatenated `condition` must have the sample's spatial size {tuple(size)}, got "
                    f"{tuple(condition.shape[2:])}"
                )

    def condition_embedding(
        self,
        n: int,
        labels: Optional[torch.Tensor],
        condition: Optional[torch.Tensor],
        drop: Optional[torch.Tensor] = None,
    ) -> Optional[torch.Tensor]:
        """The (N, time_embedding_dim) vector added to the time embedding (None without such conditioning).

        ``drop``: bool (N,) — samples whose condition is replaced by the null condition (CFG).
        """
        vector: Optional[torch.Tensor] = None
        if self.class_embedding is not None and labels is not None:
            if self.class_embedding_type == "embedding":
                index = labels if drop is None else torch.where(drop, torch.full_like(labels, self.num_classes), labels)
                vector = self.class_embedding(index)
            else:
                one_hot = F.one_hot(labels, self.num_classes).float()
                if drop is not None:
                    one_hot = one_hot * (~drop)[:, None].float()  # the null label is the zero vector
                vector = self.class_embedding(one_hot)
        if self.condition_encoder is not None and condition is not None:
            pooled = self.condition_encoder(condition)[-1].flatten(2).mean(-1)
            image_vector = self.condition_projection(pooled)
            if drop is not None:
                image_vector = torch.where(drop[:, None], self.null_condition.expand_as(image_vector), image_vector)
            vector = image_vector if vector is None else vector + image_vector
        return vector

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        condition: Optional[torch.Tensor] = None,
        drop_condition: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """:meth:`predict_noise`: the network's prediction for noisy samples ``x_t`` at ``timesteps``."""
        return self.predict_noise(x_t, timesteps, labels, condition, drop_condition)

    def predict_noise(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        condition: Optional[torch.Tensor] = None,
        drop_condition: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The network's prediction (``prediction_type``) for noisy samples ``x_t`` at ``timesteps``.

        Args:
            x_t: (N, in_channels, *spatial).
            timesteps: (N,) ints in ``0..num_train_timesteps-1`` (or one int for all).
            labels: (N,) class labels, for a class-conditioned model.
            condition: (N, condition_channels, *spatial) conditioning image, for an image-conditioned model.
            drop_condition: bool (N,): use the null condition for these samples (CFG).
        """
        check_image_batch(x_t, self.spatial_dims, self.in_channels)
        n = x_t.shape[0]
        self._check_condition_inputs(n, labels, condition, x_t.shape[2:])
        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.full((n,), int(timesteps), dtype=torch.long, device=x_t.device)
        steps = self.scheduler.num_train_timesteps
        if timesteps.numel() > 0 and (int(timesteps.min()) < 0 or int(timesteps.max()) >= steps):
            bad = int(timesteps.min()) if int(timesteps.min()) < 0 else int(timesteps.max())
            raise ValueError(f"`timesteps` must lie in [0, num_train_timesteps={steps}), got {bad}")
        inputs = x_t
        if self.condition_channels is not None and self.image_conditioning == "concat":
            inputs = torch.cat([x_t, condition.to(x_t.dtype)], dim=1)
        embedding = self.condition_embedding(n, labels, condition, drop_condition)
        return self.model(inputs, timesteps, embedding)

    # ----- training ------------------------------------------------------------------------------------------------
    def loss(
        self,
        x0: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        condition: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Mean squared error between the network output and the scheduler's training target (Ho et al. 2020,
        Algorithm 1): uniform ``t``, Gaussian noise, and — with ``condition_dropout`` — each sample's condition
        dropped to the null condition with that probability (Ho & Salimans 2021, Algorithm 1)."""
        check_image_batch(x0, self.spatial_dims, self.in_channels)
        n = x0.shape[0]
        device = x0.device
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.scheduler.num_train_timesteps, (n,), generator=generator, device=gen_device).to(device)
        noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype).to(device)
        drop = None
        if self.condition_dropout > 0:
            drop = (torch.rand(n, generator=generator, device=gen_device) < self.condition_dropout).to(device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        prediction = self.predict_noise(x_t, t, labels, condition, drop)
        return F.mse_loss(prediction, self.scheduler.training_target(x0, noise, t))

    # ----- sampling ------------------------------------------------------------------------------------------------
    def _guided_output(
        self,
        x: torch.Tensor,
        t: int,
        labels: Optional[torch.Tensor],
        condition: Optional[torch.Tensor],
        guidance_scale: float,
    ) -> torch.Tensor:
        n = x.shape[0]
        timesteps = torch.full((n,), t, dtype=torch.long, device=x.device)
        if guidance_scale == 0:
            return self.predict_noise(x, timesteps, labels, condition)
        # One batch of 2N: the conditional half, then the same samples with the null condition.
        drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(x.device)
        both = self.predict_noise(
            torch.cat([x, x]),
            torch.cat([timesteps, timesteps]),
            None if labels is None else torch.cat([labels, labels]),
            None if condition is None else torch.cat([condition, condition]),
            drop,
        )
        conditional, unconditional = both[:n], both[n:]
        return self.scheduler.classifier_free_guidance(conditional, unconditional, guidance_scale)

    def _spatial_size(self, size: Size) -> Tuple[int, ...]:
        return nd.spatial_size(size, self.spatial_dims)

    @torch.no_grad()
    def sample(
        self,
        num_samples: Optional[int] = None,
        size: Optional[Size] = None,
        labels: Optional[torch.Tensor] = None,
        condition: Optional[torch.Tensor] = None,
        sampler: Optional[str] = None,
        num_inference_steps: Optional[int] = None,
        timestep_spacing: Optional[str] = None,
        eta: Optional[float] = None,
        guidance_scale: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        progress: bool = True,
        noise: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Generate samples (in eval mode, without gradients).

        Args:
            num_samples: number of samples (default: from ``labels`` / ``condition`` / ``noise``).
            size: spatial size (default: the condition's, or the noise's).
            labels, condition: the conditioning, as in :meth:`forward`.
            sampler: ``"ddpm"`` (every timestep, Ho et al. Algorithm 2) or ``"ddim"`` (default: the model's).
            num_inference_steps, timestep_spacing, eta: DDIM settings (default: the model's).
            guidance_scale: CFG weight w (default: the model's).
            generator: a ``torch.Generator`` for reproducible samples.
            progress: show a progress bar.
            noise: the starting x_T (default: standard normal drawn from ``generator``).

        Returns:
            (num_samples, in_channels, *size) samples (in [-clip_range, clip_range] with ``clip_sample``).
        """
        sampler = self.sampler if sampler is None else sampler
        check_choice("sampler", sampler, SAMPLERS)
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        spacing = self.timestep_spacing if timestep_spacing is None else timestep_spacing
        eta = self.eta if eta is None else check_real("eta", eta, low=0.0)
        w = self.guidance_scale if guidance_scale is None else check_real("guidance_scale", guidance_scale)
        if sampler == "ddpm" and num_inference_steps is not None and num_inference_steps != self.scheduler.num_train_timesteps:
            raise ValueError(
                f"the DDPM sampler visits all {self.scheduler.num_train_timesteps} timesteps; for "
                f"num_inference_steps={num_inference_steps} use sampler='ddim' (eta=1 is DDPM-like)"
            )
        if w != 0:
            if self.num_classes is None and self.condition_channels is None:
                raise ValueError("`guidance_scale` needs a conditioned model (num_classes or condition_channels)")
            self._check_guidance_defined(self.condition_channels, self.image_conditioning, self.num_classes, 0.0, w)
        reference = next(t for t in (noise, condition, labels) if t is not None) if any(
            t is not None for t in (noise, condition, labels)) else None
        if num_samples is None:
            if reference is None:
                raise ValueError("`num_samples` is required when no `labels`, `condition` or `noise` give it")
            num_samples = reference.shape[0]
        check_positive_int("num_samples", num_samples)
        if size is None:
            if noise is not None:
                size = tuple(noise.shape[2:])
            elif condition is not None:
                size = tuple(condition.shape[2:])
            else:
                raise ValueError("`size` is required when no `condition` or `noise` give it")
        size = self._spatial_size(size)
        device = next(self.parameters()).device
        shape = (num_samples, self.in_channels, *size)
        if noise is None:
            gen_device = generator.device if generator is not None else device
            noise = torch.randn(shape, generator=generator, device=gen_device).to(device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"`noise` must have shape {shape}, got {tuple(noise.shape)}")
        self._check_condition_inputs(num_samples, labels, condition, size)
        was_training = self.training
        self.eval()
        try:
            x = noise.to(device)
            if sampler == "ddpm":
                schedule = list(range(self.scheduler.num_train_timesteps - 1, -1, -1))
                for t in progress_bar(schedule, progress, "DDPM sampling"):
                    output = self._guided_output(x, t, labels, condition, w)
                    x = self.scheduler.ddpm_step(output, t, x, generator=generator).prev_sample
            else:
                pairs = self.scheduler.timestep_pairs(steps, spacing)
                for t, t_prev in progress_bar(pairs, progress, "DDIM sampling"):
                    output = self._guided_output(x, t, labels, condition, w)
                    x = self.scheduler.ddim_step(output, t, t_prev, x, eta=eta, generator=generator).prev_sample
        finally:
            self.train(was_training)
        return x


class DDIM(DDPM):
    """:class:`DDPM` whose default sampler is DDIM (Song et al. 2021): ``num_inference_steps`` (default 50)
    uniform or quadratic timesteps, ``eta`` (default 0, deterministic). Same arguments and weights as DDPM:
    ``DDIM.from_pretrained`` loads a DDPM checkpoint (and the other way round) without retraining."""

    _default_sampler = "ddim"
