"""Shared model parts: n-d layer factories, blocks, heads, the SegmentationModel base and Hub I/O.

SMP's ``segmentation_models_pytorch.base`` names (``SegmentationModel``, ``SegmentationHead``,
``ClassificationHead``, ``Attention``, ``Conv2dReLU``) are resolved on first access (PEP 562): the registry
module must stay importable without pulling in the model code, which imports the encoders.
"""

import importlib
from typing import Any

_LAZY_ATTRS = {
    "SegmentationModel": ("smp_like.base.model", "SegmentationModel"),
    "SegmentationHead": ("smp_like.base.heads", "SegmentationHead"),
    "ClassificationHead": ("smp_like.base.heads", "ClassificationHead"),
    "Attention": ("smp_like.base.modules", "Attention"),
    "Conv2dReLU": ("smp_like.base.modules", "Conv2dReLU"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        module_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module_name), attr)
    elif name in ("hub_mixin", "utils", "heads", "model", "modules", "initialization", "hub"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
