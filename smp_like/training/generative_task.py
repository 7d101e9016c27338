"""``GenerativeTask``: the ``LightningModule`` of reconstruction and generation runs, and of supervised diffusion.

Three kinds of model, told apart by class:

* **auto-encoders** (AE, VAE, HAE): loss = weighted ``loss.terms`` between the reconstruction and the image (HAE:
  on every side output too, through :class:`~smp_like.losses.PyramidLoss` with area-resized targets), plus
  ``KLDivergenceLoss`` on the VAE's ``(mu, logvar)``. Metrics (``ssim``, ``psnr``, ``mse``) of the reconstruction,
  train and val, per epoch.
* **diffusion** (DDPM, DDIM, LDPM, LDIM): the wrapper's own loss (Ho et al. 2020, Algorithm 1: MSE to the
  scheduler's target at a uniform timestep) on images scaled to [-1, 1] (latent models: the auto-encoder's input
  range, [0, 1]). Validation uses a fixed generator, so ``val/loss`` is comparable between epochs; its image
  metrics compare the one-step estimate of x0 (``scheduler.predict_x0``; latent models: decoded) with the image.
* **supervised diffusion** (SDPM, SDIM): ``model.loss(images, masks)`` on the segmentation data, masks one-hot
  (multiclass) or 0/1 channels; ``val/loss`` with a fixed generator. Segmentation metrics of the ensemble mean come
  from ``smp-like test`` (:mod:`smp_like.training.generative_evaluate`).

:class:`SampleCallback` writes ``samples.png`` (generated images; SDPM: image | truth | sampled mask) and
``reconstructions.png`` (auto-encoders: image | reconstruction) into the run folder every
``generation.sample_every_n_epochs`` epochs, from a generator seeded with ``generation.seed`` (the same pictures for
the same weights), plus ``curves.png``.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("GenerativeTask needs lightning; install it with `pip install smp_like[train]`") from err

from smp_like import losses as L
from smp_like.training.builders import optimizer_settings
from smp_like.training.image_metrics import image_scores
from smp_like.training.plots import plot_curves, read_epoch_history, save_image_grid
from smp_like.training.task_hooks import SharedTaskHooks

__all__ = ["GenerativeTask", "SampleCallback", "model_kind", "reconstruct", "generate", "sampler_for",
           "build_generative_task"]

_KL_NAMES = ("KLDivergenceLoss", "KLLoss", "KL")


def model_kind(model: nn.Module) -> str:
    """``"autoencoder"``, ``"latent"`` (LDPM/LDIM), ``"supervised"`` (SDPM/SDIM) or ``"diffusion"``.

    Raises:
        TypeError: for another model.
    """
    from smp_like.generative.autoencoder import AE
    from smp_like.generative.diffusion.latent import LDPM
    from smp_like.generative.diffusion.model import DDPM
    from smp_like.generative.diffusion.supervised import SDPM

    if isinstance(model, AE):
        return "autoencoder"
    if isinstance(model, LDPM):
        return "latent"
    if isinstance(model, SDPM):
        return "supervised"
    if isinstance(model, DDPM):
        return "diffusion"
    raise TypeError(f"GenerativeTask trains AE/VAE/HAE and the DDPM family, got {type(model).__name__}")


def to_model_range(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the range the model generates in (pixel diffusion: [-1, 1])."""
    return x * 2 - 1 if model_kind(model) == "diffusion" else x


def from_model_range(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    return (y + 1) / 2 if model_kind(model) == "diffusion" else y


def reconstruct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An auto-encoder's reconstruction of ``x`` in eval mode (VAE: decoded from ``mu``)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was_training)
    return out[0] if isinstance(out, (tuple, list)) else out


def sampler_for(model: nn.Module, arch: Optional[str], num_inference_steps: Optional[int]) -> Dict[str, Any]:
    """Sampling arguments: DDIM with ``num_inference_steps`` when given or when the config's ``arch`` is a DDIM
    class (a DDPM checkpoint tested as DDIM); otherwise the model's own sampler."""
    ddim_arch = str(arch or "").lower() in ("ddim", "sdim", "ldim")
    if num_inference_steps is not None:
        return {"sampler": "ddim", "num_inference_steps": int(num_inference_steps)}
    if ddim_arch:
        return {"sampler": "ddim"}
    return {"sampler": getattr(model, "sampler", "ddpm")}


def generate(model: nn.Module, n: int, size: Sequence[int], generator: torch.Generator, sampling: Dict[str, Any],
             clip_range: Optional[Tuple[float, float]] = None, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``n`` samples of spatial ``size`` in [0, 1] (VAE: decoded prior draws; diffusion: ``model.sample``)."""
    from smp_like.generative.autoencoder import VAE

    if isinstance(model, VAE):
        was_training = model.training
        model.eval()
        try:
            out = model.sample(n, size, generator=generator)
        finally:
            model.train(was_training)
    else:
        out = model.sample(n, size, generator=generator, progress=False, noise=noise, **sampling)
    if clip_range is not None:
        out = out.clamp(float(clip_range[0]), float(clip_range[1]))
    return from_model_range(model, out).clamp(0, 1) if model_kind(model) == "diffusion" else out


class GenerativeTask(SharedTaskHooks, pl.LightningModule):
    """Trains and validates AE / VAE / HAE and the DDPM family (see the module docstring).

    Args:
        model: the wrapper.
        loss_terms: ``(name, weight, kwargs)`` of the auto-encoder loss (ignored by diffusion models).
        metrics: image metric names (``ssim``, ``psnr``, ``mse``).
        optimizer, scheduler: as for :class:`~smp_like.training.task.SegmentationTask`.
        seg_task: data task of supervised diffusion (``binary`` / ``multiclass`` / ``multilabel``).
        num_classes: mask channels of supervised diffusion.
        seed: seed of the fixed validation generator.
    """

    def __init__(self, model: nn.Module, loss_terms: Sequence[Tuple[str, float, Dict[str, Any]]] = (("MSELoss", 1.0, {}),),
                 metrics: Sequence[str] = ("psnr", "ssim", "mse"), optimizer: Optional[Dict[str, Any]] = None,
                 scheduler: Optional[Dict[str, Any]] = None, seg_task: str = "binary", num_classes: int = 1,
                 seed: int = 0, monitor: str = "val/loss"):
        super().__init__()
        self.model = model
        self.kind = model_kind(model)
        self.metric_names = list(metrics) if self.kind != "supervised" else []
        self.optimizer_cfg = dict(optimizer or {"name": "AdamW", "lr": 1e-3})
        self.scheduler_cfg = dict(scheduler) if scheduler else None
        self.seg_task = seg_task
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.monitor = monitor
        recon, kl = [], 0.0
        for name, weight, kwargs in loss_terms:
            if name in _KL_NAMES:
                kl += float(weight)
            else:
                recon.append((L.get_loss_class(name)(**kwargs), float(weight)))
        self.recon_terms = nn.ModuleList([t for t, _ in recon])
        self.recon_weights = [w for _, w in recon]
        self.kl_weight = kl

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    # ------------------------------------------------------------------------------------------------ losses

    def _recon_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * term(prediction, target) for term, w in zip(self.recon_terms, self.recon_weights))

    def _autoencoder_loss(self, out: Any, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        from smp_like.generative.autoencoder import VAE

        if isinstance(self.model, VAE):
            recon, mu, logvar = out
            loss = self._recon_loss(recon, x)
            if self.kl_weight:
                loss = loss + self.kl_weight * self.model.kl_divergence(mu, logvar)
            return loss, recon
        if isinstance(out, (tuple, list)):  # HAE in training mode: (reconstruction, sides)
            return L.PyramidLoss(self._recon_loss, target_resize="area")(out, x), out[0]
        return self._recon_loss(out, x), out

    def _seg_target(self, batch: Dict[str, Any]) -> torch.Tensor:
        mask = batch["mask"]
        if self.seg_task == "multiclass":
            return F.one_hot(mask.long().clamp_min(0), self.num_classes).movedim(-1, 1).float()
        return (mask.unsqueeze(1) if mask.dim() == batch["image"].dim() - 1 else mask).float()

    def _diffusion_terms(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(loss, x0 estimate in [0, 1])`` at one random timestep per image (Ho et al. 2020, Algorithm 1)."""
        model = self.model
        x0 = model.encode_latent(x) if self.kind == "latent" else to_model_range(model, x)
        n = x0.shape[0]
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(0, model.scheduler.num_train_timesteps, (n,), generator=generator,
                          device=gen_device).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype).to(x0.device)
        x_t = model.scheduler.add_noise(x0, noise, t)
        output = model.predict_noise(x_t, t)
        loss = F.mse_loss(output, model.scheduler.training_target(x0, noise, t))
        with torch.no_grad():
            x0_hat = model.scheduler.predict_x0(output.detach(), x_t, t)
            if self.kind == "latent":
                estimate = model.decode_latent(x0_hat, x.shape[2:])
            else:
                estimate = from_model_range(model, x0_hat.clamp(-1, 1))
        return loss, estimate

    def _step_loss(self, batch: Dict[str, Any], generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = batch["image"]
        if self.kind == "autoencoder":
            return self._autoencoder_loss(self.model(x), x)
        if self.kind == "supervised":
            return self.model.loss(x, self._seg_target(batch), generator=generator), None
        return self._diffusion_terms(x, generator)

    def _log_scores(self, prefix: str, estimate: Optional[torch.Tensor], x: torch.Tensor) -> None:
        if estimate is None or not self.metric_names:
            return
        scores = image_scores(estimate.detach().float().clamp(0, 1) if self.kind != "autoencoder"
                              else estimate.detach().float(), x.float(), self.metric_names)
        for name, values in scores.items():
            self.log(f"{prefix}/{name}", values.mean(), on_step=False, on_epoch=True, batch_size=len(x),
                     sync_dist=True)

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, estimate = self._step_loss(batch, None)
        if not torch.isfinite(loss.detach()).all():
            from smp_like.training.task import NonFiniteLossError

            raise NonFiniteLossError(self.global_step, float(loss.detach()))
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(batch["image"]), sync_dist=True)
        if self.kind == "autoencoder":
            self._log_scores("train", estimate, batch["image"])
        return loss

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> torch.Tensor:
        # A fixed generator per batch: the same timesteps and noise every epoch, so val/loss is comparable.
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + batch_idx)
        loss, estimate = self._step_loss(batch, generator)
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["image"]), sync_dist=True)
        self._log_scores("val", estimate, batch["image"])
        return loss



def build_generative_task(cfg: Any, model: Optional[nn.Module] = None) -> GenerativeTask:
    """The :class:`GenerativeTask` of a config (the model is built unless given)."""
    from smp_like.training.builders import build_model

    model = model if model is not None else build_model(cfg.model, len(cfg.data.classes))
    optimizer, scheduler = optimizer_settings(cfg)
    terms = [(t.name, t.weight, dict(t.kwargs)) for t in cfg.loss.terms]
    return GenerativeTask(model, terms, cfg.metrics.names if cfg.resolved_task != "segmentation" else (),
                          optimizer, scheduler, cfg.data.task, len(cfg.data.classes), cfg.seed or 0,
                          cfg.metrics.monitor)


def sample_size(dataset: Any) -> Tuple[int, ...]:
    """The spatial size of the first item (samples are drawn at the size of the data)."""
    return tuple(dataset[0]["image"].shape[1:])


def render_pictures(model: nn.Module, dataset: Any, gen_cfg: Any, arch: Optional[str],
                    seg_task: str = "binary", num_classes: int = 1) -> Dict[str, List[List[torch.Tensor]]]:
    """The rows of ``samples.png`` / ``reconstructions.png`` for the first ``num_samples`` items of ``dataset``,
    drawn from a generator seeded with ``gen_cfg.seed``."""
    kind = model_kind(model)
    device = next(model.parameters()).device
    n = min(gen_cfg.num_samples, len(dataset))
    items = [dataset[i] for i in range(n)]
    images = torch.stack([it["image"] for it in items]).to(device)
    generator = torch.Generator(device="cpu").manual_seed(int(gen_cfg.seed))
    sampling = sampler_for(model, arch, gen_cfg.num_inference_steps)
    pictures: Dict[str, List[List[torch.Tensor]]] = {}
    from smp_like.generative.autoencoder import VAE

    if kind == "autoencoder":
        recon = reconstruct(model, images).clamp(0, 1).cpu()
        pictures["reconstructions"] = [list(images.cpu()), list(recon)]
        if isinstance(model, VAE):
            pictures["samples"] = [list(generate(model, gen_cfg.num_samples, images.shape[2:], generator, {},
                                                 gen_cfg.clip_range).clamp(0, 1).cpu())]
    elif kind == "supervised":
        with torch.no_grad():
            probs = model(images, num_ensemble=gen_cfg.num_ensemble, generator=generator, **sampling).cpu()
        truths = []
        for it in items:
            mask = it["mask"]
            if seg_task == "multiclass":
                truths.append(mask.float()[None] / max(num_classes - 1, 1))
            else:
                truths.append(mask.float()[:1] if mask.dim() == images.dim() - 1 else mask.float()[None])
        shown = probs.argmax(1, keepdim=True).float() / max(num_classes - 1, 1) if seg_task == "multiclass" \
            else probs[:, :1]
        rescaled = images.cpu()
        low = rescaled.flatten(1).min(1)[0].view(-1, *[1] * (rescaled.dim() - 1))
        high = rescaled.flatten(1).max(1)[0].view(-1, *[1] * (rescaled.dim() - 1))
        rescaled = (rescaled - low) / (high - low).clamp_min(1e-8)
        pictures["samples"] = [list(rescaled), truths, list(shown)]
    else:
        samples = generate(model, gen_cfg.num_samples, images.shape[2:], generator, sampling, gen_cfg.clip_range)
        pictures["samples"] = [list(samples.cpu())]
    return pictures


class SampleCallback(pl.Callback):
    """``curves.png`` each epoch, ``samples.png`` / ``reconstructions.png`` every ``gen_cfg.sample_every_n_epochs``
    epochs and at the end of training (rank 0 only)."""

    def __init__(self, run_dir: Path, gen_cfg: Any, arch: Optional[str]):
        self.run_dir = Path(run_dir)
        self.gen_cfg = gen_cfg
        self.arch = arch
        self._written_at: Optional[int] = None

    def write_curves(self, trainer: "pl.Trainer") -> None:
        for logger in trainer.loggers:
            logger.save()
        plot_curves(read_epoch_history(self.run_dir / "metrics.csv"), self.run_dir / "curves.png",
                    title=f"{self.run_dir.name}: per-epoch loss and metrics")

    def write_pictures(self, trainer: "pl.Trainer", pl_module: GenerativeTask) -> List[Path]:
        datamodule = getattr(trainer, "datamodule", None)
        datasets = getattr(datamodule, "datasets", {}) if datamodule is not None else {}
        dataset = datasets.get("val") or datasets.get("train")
        if dataset is None or len(dataset) == 0:
            return []
        was_training = pl_module.training
        pl_module.eval()
        try:
            pictures = render_pictures(pl_module.model, dataset, self.gen_cfg, self.arch, pl_module.seg_task,
                                       pl_module.num_classes)
        finally:
            pl_module.train(was_training)
        return [save_image_grid(self.run_dir / f"{name}.png", [[t.numpy() for t in row] for row in rows])
                for name, rows in pictures.items()]

    @rank_zero_only
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.current_epoch > 0:
            self.write_curves(trainer)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if (trainer.current_epoch + 1) % self.gen_cfg.sample_every_n_epochs == 0:
            self.write_pictures(trainer, pl_module)
            self._written_at = trainer.global_step

    @rank_zero_only
    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.write_curves(trainer)
        if self._written_at != trainer.global_step:  # not yet drawn from the final weights
            self.write_pictures(trainer, pl_module)
