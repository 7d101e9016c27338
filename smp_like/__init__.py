"""smp_like: segmentation (and generation) models for PyTorch, drop-in compatible with SMP.

Only light modules are imported here: timm, albumentations and matplotlib are imported where first used, so
``import smp_like`` costs little more than ``import torch``.
"""

import importlib
from typing import Any

from smp_like.base.registry import BUILTIN_MODELS

__version__ = "0.1.0"
"""The package version (as in ``setup.py``)."""

# Public names resolved on first access (PEP 562). Keeping them lazy means `import smp_like` does not build the
# model modules (and never imports timm) until a user asks for them.
_LAZY_ATTRS = {
    # Every saveable built-in class, from the one name -> module table of the model registry.
    **{name: (module, name) for name, module in BUILTIN_MODELS.items()},
    "DiffusionScheduler": ("smp_like.generative.diffusion.scheduler", "DiffusionScheduler"),
    "SegmentationModel": ("smp_like.base.model", "SegmentationModel"),
    "SegmentationHead": ("smp_like.base.heads", "SegmentationHead"),
    "ClassificationHead": ("smp_like.base.heads", "ClassificationHead"),
    "create_model": ("smp_like.factory", "create_model"),
    "from_pretrained": ("smp_like.factory", "from_pretrained"),
    "pad_to_stride": ("smp_like.base.strides", "pad_to_stride"),
    "crop_to_shape": ("smp_like.base.strides", "crop_to_shape"),
    "optimize_for_inference": ("smp_like.base.optimize", "optimize_for_inference"),
}
_LAZY_MODULES = {"encoders", "decoders", "base", "losses", "metrics", "datasets", "training", "generative"}

__all__ = sorted(list(_LAZY_ATTRS) + list(_LAZY_MODULES) + ["__version__", "MODEL_ARCHITECTURES_MAPPING"])


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        module_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module_name), attr)
    elif name == "MODEL_ARCHITECTURES_MAPPING":
        # SMP's {lower-case name: class} table. It is the live registry create_model reads (every architecture
        # registers itself on import), so adding an entry makes create_model know it, as in SMP.
        from smp_like.base.registry import load_builtin_models

        value = load_builtin_models()
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"smp_like.{name}")
    else:
        raise AttributeError(f"module 'smp_like' has no attribute {name!r}")
    globals()[name] = value  # cache: the next access is a plain attribute lookup
    return value


def __dir__() -> list:
    return __all__
