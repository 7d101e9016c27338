"""Generative wrappers built from smp_like encoder/decoder pairs: AE, VAE, HAE, DDPM, DDIM, SDPM, SDIM, LDPM, LDIM.

Names are resolved on first access (PEP 562), so importing this package builds nothing.
"""

from importlib import import_module
from typing import Any, Dict

from smp_like.base.registry import BUILTIN_MODELS

# public name -> module that defines it: the model classes from the registry's one table, plus the helpers.
_LAZY: Dict[str, str] = {
    **{name: module for name, module in BUILTIN_MODELS.items() if module.startswith(__name__ + ".")},
    "DiffusionScheduler": f"{__name__}.diffusion",
    "SchedulerStepOutput": f"{__name__}.diffusion",
    "classifier_free_guidance": f"{__name__}.diffusion",
    "NoSkipDecoder": f"{__name__}.autoencoder",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
