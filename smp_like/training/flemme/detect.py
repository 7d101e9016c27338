"""Is a parsed YAML file a Flemme configuration? (a ``model.name`` among Flemme's names plus a loader section)."""

from typing import Any

from smp_like.training.flemme.names import MODEL_NAMES

__all__ = ["is_flemme_config"]

_LOADERS = ("loader", "val_loader", "test_loader")


def is_flemme_config(values: Any) -> bool:
    """True for a Flemme train or test config: ``model.name`` is one of Flemme's model names (``SeM``, ``DDPM``,
    ``EDM``, ...) and the file has a ``loader`` (or ``val_loader`` / ``test_loader``) section.

    A native config never has either: its model is named by ``model.arch`` and its data live under ``data``.
    """
    if not isinstance(values, dict):
        return False
    model = values.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return False
    return model["name"] in MODEL_NAMES and any(isinstance(values.get(k), dict) for k in _LOADERS)
