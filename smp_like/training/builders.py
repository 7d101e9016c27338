"""The objects a config names: the model, the loss, the optimizer (with encoder/decoder groups), the scheduler."""

import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from smp_like import losses as L

__all__ = ["build_model", "build_loss", "build_optimizer", "build_scheduler", "SegmentationLoss", "optimizer_settings",
           "configure_optimization"]


def build_model(model_cfg: Any, num_classes: int, pretrained: bool = True) -> nn.Module:
    """Build ``model`` (a :class:`~smp_like.training.config.ModelConfig`): by architecture or ``from_pretrained``.

    Segmentation architectures and ClM take ``classes`` (filled with ``num_classes`` when not given); AE / VAE / HAE
    and the diffusion models are built by :func:`smp_like.training.wrappers.build_wrapper` (nested ``eps_model`` and
    ``autoencoder`` sections; see docs/configuration.md).

    Args:
        model_cfg: the ``model`` section.
        num_classes: classes of the data (segmentation / classification output channels; SDPM: mask channels).
        pretrained: load the named encoder weights (False: random weights everywhere, e.g. before loading a
            checkpoint or for a trial build).

    Raises:
        ValueError: for unknown or clashing arguments (naming them).
    """
    import smp_like
    from smp_like.training.wrappers import build_wrapper, is_wrapper

    if model_cfg.from_pretrained:
        model = smp_like.from_pretrained(model_cfg.from_pretrained)
    elif is_wrapper(model_cfg.arch):
        model = build_wrapper(model_cfg, num_classes, pretrained)
    else:
        kwargs = dict(model_cfg.kwargs)
        kwargs.setdefault("classes", num_classes)
        weights = model_cfg.encoder_weights if pretrained else None
        model = smp_like.create_model(
            model_cfg.arch, encoder_name=model_cfg.encoder_name, encoder_weights=weights,
            in_channels=model_cfg.in_channels, **kwargs,
        )
    if getattr(model_cfg, "gradient_checkpointing", False):
        # wrappers (AE, DDPM, ...) and ClM have no method of their own: the module-level function walks any model
        from smp_like.base.checkpointing import set_gradient_checkpointing

        # a diffusion wrapper keeps its denoising network in `.model`; checkpoint that one
        set_gradient_checkpointing(getattr(model, "model", None) if hasattr(model, "scheduler") else model, True)
    return model


class SegmentationLoss(nn.Module):
    """Weighted sum of loss terms on the mask, plus deep supervision and the aux-head loss.

    Args:
        terms: ``(loss module, weight)`` pairs called as ``loss(logits, target)``.
        deep_supervision: wrap the sum in :class:`~smp_like.losses.PyramidLoss` (side outputs of a hierarchical
            model or a Unet with ``deep_supervision=True``).
        side_weights: per-level weights for the side outputs (None: their mean).
        aux_weight: weight of ``BCEWithLogits(label_logits, labels)`` for the classification head.
    """

    def __init__(self, terms: Sequence[Any], deep_supervision: bool = False,
                 side_weights: Optional[Sequence[float]] = None, aux_weight: float = 0.0):
        super().__init__()
        self.terms = nn.ModuleList([t for t, _ in terms])
        self.weights = [float(w) for _, w in terms]
        self.pyramid = L.PyramidLoss(self._mask_loss, side_weights=side_weights) if deep_supervision else None
        self.aux_weight = float(aux_weight)

    def _mask_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * term(logits, target) for term, w in zip(self.terms, self.weights))

    def forward(self, mask_out: Any, target: torch.Tensor, label_logits: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        loss = self.pyramid(mask_out, target) if self.pyramid is not None else self._mask_loss(mask_out, target)
        if label_logits is not None and labels is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * nn.functional.binary_cross_entropy_with_logits(label_logits, labels)
        return loss


def build_loss(loss_cfg: Any, task: str, ignore_index: Optional[int] = None) -> SegmentationLoss:
    """Build the loss of a :class:`~smp_like.training.config.LossConfig` for ``task``.

    ``mode`` follows the task; cross-entropy becomes binary cross-entropy for binary / multilabel tasks;
    ``ignore_index`` goes to every term that takes it.
    """
    terms = []
    for term in loss_cfg.terms:
        cls = L.get_loss_class(term.name)
        if task != "multiclass" and cls is L.SoftCrossEntropyLoss:
            cls = L.SoftBCEWithLogitsLoss
        kwargs = dict(term.kwargs)
        params = inspect.signature(cls.__init__).parameters
        if "mode" in params:
            kwargs.setdefault("mode", task)
        if "ignore_index" in params and ignore_index is not None:
            kwargs.setdefault("ignore_index", ignore_index)
        try:
            terms.append((cls(**kwargs), term.weight))
        except (TypeError, ValueError) as err:
            raise ValueError(f"loss term {term.name!r}: {err}") from None
    return SegmentationLoss(terms, loss_cfg.deep_supervision, loss_cfg.side_weights, loss_cfg.aux_weight)


def _groups(model: nn.Module, lr: float, encoder_lr: Optional[float], decoder_lr: Optional[float]) -> List[Dict]:
    if encoder_lr is None and decoder_lr is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    encoder = getattr(model, "encoder", None)
    enc_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    enc = [p for p in model.parameters() if p.requires_grad and id(p) in enc_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
    groups = []
    if enc:
        groups.append({"params": enc, "lr": encoder_lr if encoder_lr is not None else lr, "name": "encoder"})
    if rest:
        groups.append({"params": rest, "lr": decoder_lr if decoder_lr is not None else lr, "name": "decoder"})
    return groups


def build_optimizer(model: nn.Module, name: str = "AdamW", lr: float = 1e-3, encoder_lr: Optional[float] = None,
                    decoder_lr: Optional[float] = None, **kwargs: Any) -> torch.optim.Optimizer:
    """Any ``torch.optim`` optimizer by name; ``encoder_lr`` / ``decoder_lr`` make two parameter groups
    (the encoder, and everything else: decoder and heads).

    Raises:
        ValueError: for an unknown name (listing the choices) or arguments it does not take.
    """
    cls = getattr(torch.optim, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        from smp_like.training.config import OPTIMIZERS

        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS()}")
    try:
        return cls(_groups(model, lr, encoder_lr, decoder_lr), lr=lr, **kwargs)
    except TypeError as err:
        raise ValueError(f"optimizer {name}: {err}") from None


def build_scheduler(optimizer: torch.optim.Optimizer, name: Optional[str], interval: str = "epoch",
                    warmup: int = 0, warmup_start_factor: float = 0.1, total: Optional[int] = None,
                    monitor: Optional[str] = None, **kwargs: Any) -> Optional[Dict[str, Any]]:
    """A Lightning ``lr_scheduler`` dict for any ``torch.optim.lr_scheduler`` by name, with a linear warmup.

    Args:
        optimizer: the optimizer.
        name: scheduler class name, or None (no scheduler; a warmup alone still runs).
        interval: ``"epoch"`` or ``"step"``: what one scheduler step is.
        warmup: number of intervals of linear warmup from ``warmup_start_factor * lr`` (0: none).
        total: number of intervals in the run: fills ``OneCycleLR.total_steps``, ``CosineAnnealingLR.T_max``,
            ``PolynomialLR.total_iters`` when they are not given (less the warmup).
        monitor: the metric ``ReduceLROnPlateau`` watches.
        **kwargs: the scheduler's arguments.

    Raises:
        ValueError: for an unknown name or arguments the scheduler does not take.
    """
    S = torch.optim.lr_scheduler
    main = None
    if name is not None:
        cls = getattr(S, name, None)
        if not inspect.isclass(cls):
            from smp_like.training.config import SCHEDULERS

            raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS()}")
        remaining = max(1, (total or 1) - warmup)
        auto = {"OneCycleLR": ("total_steps", remaining), "CosineAnnealingLR": ("T_max", remaining),
                "PolynomialLR": ("total_iters", remaining)}
        if name in auto and auto[name][0] not in kwargs:
            if name == "OneCycleLR":
                kwargs.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
            kwargs[auto[name][0]] = auto[name][1]
        try:
            main = cls(optimizer, **kwargs)
        except TypeError as err:
            raise ValueError(f"scheduler {name}: {err}") from None
        if name == "ReduceLROnPlateau":
            if warmup:
                raise ValueError("scheduler ReduceLROnPlateau: warmup is not supported with it")
            return {"scheduler": main, "interval": interval, "monitor": monitor}
    if warmup:
        ramp = S.LinearLR(optimizer, start_factor=warmup_start_factor, end_factor=1.0, total_iters=warmup)
        main = ramp if main is None else S.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
    if main is None:
        return None
    return {"scheduler": main, "interval": interval, "frequency": 1}


def optimizer_settings(cfg: Any) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """The ``optimizer`` and ``scheduler`` sections of a config as the tasks take them.

    Args:
        cfg: a :class:`~smp_like.training.config.TrainConfig`.

    Returns:
        ``(optimizer settings, scheduler settings or None)``; None when the config has neither a scheduler nor a
        warmup.
    """
    o = cfg.optimizer
    optimizer = {"name": o.name, "lr": o.lr, "encoder_lr": o.encoder_lr, "decoder_lr": o.decoder_lr, **o.kwargs}
    s = cfg.scheduler
    if not (s.name or s.warmup):
        return optimizer, None
    return optimizer, {"name": s.name, "interval": s.interval, "warmup": s.warmup,
                       "warmup_start_factor": s.warmup_start_factor, **s.kwargs}


def configure_optimization(model: nn.Module, optimizer_cfg: Dict[str, Any], scheduler_cfg: Optional[Dict[str, Any]],
                           trainer: Any, monitor: str) -> Any:
    """What a task's ``configure_optimizers`` returns: the optimizer, with its scheduler spec when one is set.

    A per-step scheduler spans ``trainer.estimated_stepping_batches``, a per-epoch one ``trainer.max_epochs``.

    Args:
        model: the model whose parameters are optimized.
        optimizer_cfg: optimizer settings (see :func:`optimizer_settings`).
        scheduler_cfg: scheduler settings or None.
        trainer: the Lightning trainer (for the schedule's length).
        monitor: the metric a ``ReduceLROnPlateau`` follows.

    Returns:
        The optimizer, or Lightning's ``{"optimizer", "lr_scheduler"}`` dict.
    """
    optimizer = build_optimizer(model, **optimizer_cfg)
    if not scheduler_cfg:
        return optimizer
    sched = dict(scheduler_cfg)
    total = int(trainer.estimated_stepping_batches) if sched.get("interval", "epoch") == "step" else \
        int(trainer.max_epochs or 1)
    spec = build_scheduler(optimizer, total=total, monitor=monitor, **sched)
    return optimizer if spec is None else {"optimizer": optimizer, "lr_scheduler": spec}
