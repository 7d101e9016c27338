"""Losses by name and weighted sums of losses, configured the Flemme way (``- name: Dice, weight: 1.0``)."""

import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn

from .boundary import BoundaryLoss
from .focal import FocalLoss
from .kl import KLDivergenceLoss
from .lovasz import LovaszLoss
from .mcc import MCCLoss
from .overlap import DiceLoss, JaccardLoss, TverskyLoss
from .regression import L1Loss, MSELoss
from .soft_bce import SoftBCEWithLogitsLoss
from .soft_ce import SoftCrossEntropyLoss
from .ssim import SSIMLoss

__all__ = ["LOSSES", "register_loss", "get_loss_class", "build_loss", "CombinedLoss"]

LOSSES: Dict[str, Type[nn.Module]] = {}
"""Name -> loss class. Keys match case-insensitively; SMP class names and Flemme's short names both work."""


def register_loss(name: str, cls: Type[nn.Module]) -> Type[nn.Module]:
    """Make ``cls`` buildable by ``name`` in :func:`build_loss` and :class:`CombinedLoss`.

    Args:
        name: the new name (case-insensitive).
        cls: an ``nn.Module`` subclass.

    Returns:
        ``cls`` (so it can be used as a decorator's body).

    Raises:
        ValueError: If ``name`` is already taken by a different class.
    """
    key = name.lower()
    if key in LOSSES and LOSSES[key] is not cls:
        raise ValueError(f"register_loss: name {name!r} is already registered for {LOSSES[key].__name__}.")
    LOSSES[key] = cls
    return cls


for _cls, _aliases in [
    (DiceLoss, ["Dice"]),
    (JaccardLoss, ["Jaccard", "IoU"]),
    (TverskyLoss, ["Tversky"]),
    (FocalLoss, ["Focal"]),
    (LovaszLoss, ["Lovasz"]),
    (SoftBCEWithLogitsLoss, ["BCEL", "BCEWithLogits"]),
    (SoftCrossEntropyLoss, ["CE", "CrossEntropy"]),
    (MCCLoss, ["MCC"]),
    (SSIMLoss, ["SSIM"]),
    (KLDivergenceLoss, ["KL", "KLLoss"]),
    (BoundaryLoss, ["Boundary", "SurfaceLoss"]),
    (MSELoss, ["MSE"]),
    (L1Loss, ["L1", "MAE"]),
]:
    register_loss(_cls.__name__, _cls)
    for _alias in _aliases:
        register_loss(_alias, _cls)


def get_loss_class(name: str) -> Type[nn.Module]:
    """Return the loss class registered as ``name`` (case-insensitive).

    Args:
        name: a key of :data:`LOSSES`.

    Returns:
        The loss class.

    Raises:
        ValueError: Unknown name; the message lists the registered names.
    """
    try:
        return LOSSES[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"Unknown loss name {name!r}; choose one of {sorted(LOSSES)}.") from None


def build_loss(config: Union[str, Mapping[str, Any], nn.Module], **kwargs: Any) -> nn.Module:
    """Build one loss from a name plus keyword arguments, or from a ``{"name": ..., **kwargs}`` mapping.

    A ``"weight"`` key in a mapping is not a constructor argument and must be handled by the caller (see
    :class:`CombinedLoss`). An ``nn.Module`` is returned unchanged.

    Args:
        config: a registered loss name, a mapping with a ``name`` key and constructor arguments, or a module.
        **kwargs: constructor arguments (with a name).

    Returns:
        The loss module.

    Raises:
        ValueError: Unknown name, missing ``name`` key, or constructor arguments the loss does not take.
    """
    if isinstance(config, nn.Module):
        return config
    if isinstance(config, str):
        name, params = config, dict(kwargs)
    elif isinstance(config, Mapping):
        params = dict(config)
        if "name" not in params:
            raise ValueError(f"build_loss: the config {dict(config)!r} has no 'name' key.")
        name = params.pop("name")
        params.update(kwargs)
    else:
        raise TypeError(
            f"build_loss: expected a name, a mapping or an nn.Module, got {type(config).__name__}."
        )
    cls = get_loss_class(name)
    try:
        return cls(**params)
    except TypeError as err:
        raise ValueError(f"build_loss: cannot build {cls.__name__} from {params!r}: {err}") from None


LossSpec = Union[str, Mapping[str, Any], nn.Module, Tuple[Union[str, nn.Module], float]]


class CombinedLoss(nn.Module):
    """Weighted sum ``sum_i w_i * loss_i(*args)`` of several losses, each given by name, config or module.

    Each item of ``losses`` may be

    * a mapping ``{"name": "Dice", "weight": 0.5, "mode": "binary"}`` (Flemme style; ``weight`` defaults
      to 1),
    * a pair ``("Dice", 0.5)`` or ``(DiceLoss("binary"), 0.5)``,
    * a name or an ``nn.Module`` (weight 1).

    ``common_kwargs`` are passed to every loss built by name that accepts them (e.g. ``mode="binary"``), so a
    config need not repeat them. All components are called with the same arguments.

    Args:
        losses: The components.
        common_kwargs: Constructor arguments shared by the components built by name.

    Raises:
        ValueError: Empty ``losses``, unknown names, negative or non-finite weights.

    Example:
        >>> loss = CombinedLoss([{"name": "Dice", "weight": 1.0}, {"name": "BCEL", "weight": 1.0}],
        ...                     common_kwargs={"mode": "binary"})
    """

    def __init__(self, losses: Sequence[LossSpec], common_kwargs: Optional[Mapping[str, Any]] = None):
        super().__init__()
        if isinstance(losses, (str, Mapping, nn.Module)) or len(losses) == 0:
            raise ValueError("CombinedLoss: losses must be a non-empty sequence of loss specifications.")
        common = dict(common_kwargs or {})
        modules: List[nn.Module] = []
        weights: List[float] = []
        names: List[str] = []
        for item in losses:
            spec, weight = item, 1.0
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise ValueError(f"CombinedLoss: a tuple spec must be (loss, weight), got {item!r}.")
                spec, weight = item
            elif isinstance(item, Mapping):
                spec = dict(item)
                weight = spec.pop("weight", 1.0)
            weight = float(weight)
            if not weight >= 0 or weight == float("inf"):
                raise ValueError(f"CombinedLoss: weight {weight!r} must be finite and non-negative.")
            if isinstance(spec, nn.Module):
                module = spec
            else:
                name = spec if isinstance(spec, str) else spec.get("name")
                cls = get_loss_class(name) if isinstance(name, str) else None
                shared = self._accepted(cls, common) if cls is not None else {}
                module = (
                    build_loss(spec, **shared) if isinstance(spec, str) else build_loss({**shared, **spec})
                )
            modules.append(module)
            weights.append(weight)
            base = type(module).__name__
            names.append(base if base not in names else f"{base}_{len(names)}")
        self.losses = nn.ModuleList(modules)
        self.weights = weights
        self.names = names

    @staticmethod
    def _accepted(loss_cls: Type[nn.Module], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
        params = inspect.signature(loss_cls.__init__).parameters
        return {k: v for k, v in kwargs.items() if k in params}

    def components(self, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:
        """Unweighted value of every component, keyed by class name (suffixed when repeated)."""
        return {name: loss(*args, **kwargs) for name, loss in zip(self.names, self.losses)}

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Weighted sum of the components, each called with ``(*args, **kwargs)``."""
        total = None
        for weight, loss in zip(self.weights, self.losses):
            value = weight * loss(*args, **kwargs)
            total = value if total is None else total + value
        return total

    def extra_repr(self) -> str:
        return "weights=" + repr(dict(zip(self.names, self.weights)))
