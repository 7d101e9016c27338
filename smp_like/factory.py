"""``create_model`` and ``from_pretrained``: build or load any architecture by name (through the registry)."""

from pathlib import Path
from typing import Any, Optional, Union

import torch.nn as nn

from smp_like.base.hub import HubMixin
from smp_like.base.registry import get_model_class

__all__ = ["create_model", "from_pretrained", "get_model_class"]


class _Unset:
    """Marks an argument the caller did not give: the architecture's own default then applies."""

    def __repr__(self) -> str:
        return "<architecture default>"


_UNSET: Any = _Unset()


def create_model(
    arch: str,
    encoder_name: str = _UNSET,
    encoder_weights: Optional[str] = _UNSET,
    in_channels: int = _UNSET,
    classes: int = _UNSET,
    **kwargs: Any,
) -> nn.Module:
    """Build an architecture by name, e.g. ``create_model("unet", "resnet18", classes=3)``.

    Args:
        arch: architecture name, case-insensitive (``"Unet"``, ``"unet"``).
        encoder_name, encoder_weights, in_channels, classes, **kwargs: the architecture's arguments. Those not given
            keep the architecture's own defaults (for SMP's architectures: ``"resnet34"``, ``"imagenet"``, 3 and 1,
            as SMP's ``create_model``), so models without an encoder choice (MeshNet) or without ``classes``
            (DDPM) are built by name too.

    Returns:
        The model, in training mode.

    Raises:
        ValueError: for an unknown architecture.
    """
    cls = get_model_class(arch)
    given = dict(encoder_name=encoder_name, encoder_weights=encoder_weights, in_channels=in_channels, classes=classes)
    return cls(**{name: value for name, value in given.items() if value is not _UNSET}, **kwargs)


def from_pretrained(pretrained_model_name_or_path: Union[str, Path], **kwargs: Any) -> nn.Module:
    """Load any saved model (folder or Hub repository), dispatching on the class recorded in its config.

    Args:
        pretrained_model_name_or_path: a folder written by ``save_pretrained`` or a Hub repository id.
        **kwargs: those of ``HubMixin.from_pretrained`` (revision, token, strict, ...).

    Returns:
        The model, of the class recorded in ``config.json``, with the saved weights.
    """
    return HubMixin.from_pretrained(pretrained_model_name_or_path, **kwargs)
