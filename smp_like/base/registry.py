"""The model registry: every saveable class by name, and the one table of where the built-in classes live.

A leaf: this module imports nothing of the package, so every layer may use it. Classes enter the registry by
being defined (``HubMixin.__init_subclass__`` calls :func:`register_model`); a built-in class not imported yet is
found through :data:`BUILTIN_MODELS` and imported on first use by name (a string, so the registry never imports
the layers above it). ``smp_like/__init__``, ``smp_like.generative`` and ``create_model`` all read that one table.
"""

import importlib
from typing import Dict, List

__all__ = [
    "BUILTIN_MODELS",
    "MODEL_REGISTRY",
    "classes_with",
    "get_model_class",
    "load_builtin_models",
    "register_model",
]

# Registered model classes by lower-cased name. User classes (any subclass of a saveable class) land here too.
MODEL_REGISTRY: Dict[str, type] = {}
"""Lower-case class name -> saveable model class; every class registers itself when defined.

Exported as ``smp_like.MODEL_ARCHITECTURES_MAPPING`` (SMP's name), where it holds every built-in architecture.
"""

# Built-in saveable class name -> the module that defines it (imported on first use).
BUILTIN_MODELS: Dict[str, str] = {
    "Unet": "smp_like.decoders.unet.model",
    "UnetPlusPlus": "smp_like.decoders.unetplusplus.model",
    "MAnet": "smp_like.decoders.manet.model",
    "Linknet": "smp_like.decoders.linknet.model",
    "FPN": "smp_like.decoders.fpn.model",
    "PSPNet": "smp_like.decoders.pspnet.model",
    "DeepLabV3": "smp_like.decoders.deeplabv3.model",
    "DeepLabV3Plus": "smp_like.decoders.deeplabv3.model",
    "PAN": "smp_like.decoders.pan.model",
    "UPerNet": "smp_like.decoders.upernet.model",
    "Segformer": "smp_like.decoders.segformer.model",
    "DPT": "smp_like.decoders.dpt.model",
    "HSeM": "smp_like.decoders.hierarchical.model",
    "ClM": "smp_like.decoders.classification.model",
    "StackedHourglass": "smp_like.decoders.hourglass.model",
    "MeshNet": "smp_like.decoders.meshnet.model",
    "ATrousNet": "smp_like.decoders.atrousnet.model",
    "AE": "smp_like.generative.autoencoder",
    "VAE": "smp_like.generative.autoencoder",
    "HAE": "smp_like.generative.hierarchical_autoencoder",
    "DDPM": "smp_like.generative.diffusion.model",
    "DDIM": "smp_like.generative.diffusion.model",
    "SDPM": "smp_like.generative.diffusion.supervised",
    "SDIM": "smp_like.generative.diffusion.supervised",
    "LDPM": "smp_like.generative.diffusion.latent",
    "LDIM": "smp_like.generative.diffusion.latent",
}
_BUILTIN_BY_LOWER = {name.lower(): name for name in BUILTIN_MODELS}


def register_model(cls: type) -> type:
    """Enter ``cls`` in the registry under its lower-cased class name (usable as a decorator).

    A later class of the same name replaces the earlier one, as a re-defined class should.
    """
    MODEL_REGISTRY[cls.__name__.lower()] = cls
    return cls


def load_builtin_models() -> Dict[str, type]:
    """Import every built-in model module (which registers its classes) and return the registry."""
    for module in sorted(set(BUILTIN_MODELS.values())):
        importlib.import_module(module)
    return MODEL_REGISTRY


def get_model_class(name: str) -> type:
    """The saveable class called ``name`` (case-insensitive): built-in or any registered subclass.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if isinstance(name, str):
        key = name.lower()
        if key in _BUILTIN_BY_LOWER:
            # Import the defining module first, so a built-in name resolves to the built-in class.
            importlib.import_module(BUILTIN_MODELS[_BUILTIN_BY_LOWER[key]])
        if key in MODEL_REGISTRY:
            return MODEL_REGISTRY[key]
    # list(...) snapshots the registry in one step, so a class registered by another thread meanwhile cannot
    # break the iteration ("dictionary changed size during iteration").
    names = sorted({cls.__name__ for cls in list(load_builtin_models().values())})
    raise ValueError(f"Unknown architecture {name!r}; valid names (case-insensitive): {names}")


def classes_with(capability: str) -> List[str]:
    """Names of the built-in and registered classes whose class attribute ``capability`` is true, sorted.

    Used by error messages such as "architectures that accept a time embedding: [...]".
    """
    classes = list(load_builtin_models().values())  # a snapshot: see get_model_class
    return sorted({cls.__name__ for cls in classes if getattr(cls, capability, False)})
