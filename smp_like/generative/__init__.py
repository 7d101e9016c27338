"""Generative wrappers built from smp_like encoder/decoder pairs: AE, VAE, HAE, DDPM, DDIM, SDPM, SDIM, LDPM, LDIM.

Names are resolved on first access (PEP 562), so importing this package builds nothing.
"""

from importlib import import_module
from typing import Any

# public name -> submodule (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "DiffusionScheduler": ".diffusion",
    "SchedulerStepOutput": ".diffusion",
    "classifier_free_guidance": ".diffusion",
    "AE": ".autoencoder",
    "VAE": ".autoencoder",
    "NoSkipDecoder": ".autoencoder",
    "HAE": ".hierarchical_autoencoder",
    "DDPM": ".diffusion.model",
    "DDIM": ".diffusion.model",
    "SDPM": ".diffusion.supervised",
    "SDIM": ".diffusion.supervised",
    "LDPM": ".diffusion.latent",
    "LDIM": ".diffusion.latent",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
