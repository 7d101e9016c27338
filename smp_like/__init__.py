"""smp_like: segmentation (and generation) models for PyTorch, drop-in compatible with SMP.

Only light modules are imported here: timm, albumentations and matplotlib are imported where first used, so
``import smp_like`` costs little more than ``import torch``.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names resolved on first access (PEP 562). Keeping them lazy means `import smp_like` does not build the
# model modules (and never imports timm) until a user asks for them.
_LAZY_ATTRS = {
    "Unet": ("smp_like.decoders.unet.model", "Unet"),
    "UnetPlusPlus": ("smp_like.decoders.unetplusplus.model", "UnetPlusPlus"),
    "MAnet": ("smp_like.decoders.manet.model", "MAnet"),
    "Linknet": ("smp_like.decoders.linknet.model", "Linknet"),
    "FPN": ("smp_like.decoders.fpn.model", "FPN"),
    "PSPNet": ("smp_like.decoders.pspnet.model", "PSPNet"),
    "DeepLabV3": ("smp_like.decoders.deeplabv3.model", "DeepLabV3"),
    "DeepLabV3Plus": ("smp_like.decoders.deeplabv3.model", "DeepLabV3Plus"),
    "PAN": ("smp_like.decoders.pan.model", "PAN"),
    "UPerNet": ("smp_like.decoders.upernet.model", "UPerNet"),
    "Segformer": ("smp_like.decoders.segformer.model", "Segformer"),
    "HSeM": ("smp_like.decoders.hierarchical.model", "HSeM"),
    "ClM": ("smp_like.decoders.classification.model", "ClM"),
    "StackedHourglass": ("smp_like.decoders.hourglass.model", "StackedHourglass"),
    "MeshNet": ("smp_like.decoders.meshnet.model", "MeshNet"),
    "ATrousNet": ("smp_like.decoders.atrousnet.model", "ATrousNet"),
    "DiffusionScheduler": ("smp_like.generative.diffusion.scheduler", "DiffusionScheduler"),
    "AE": ("smp_like.generative.autoencoder", "AE"),
    "VAE": ("smp_like.generative.autoencoder", "VAE"),
    "HAE": ("smp_like.generative.hierarchical_autoencoder", "HAE"),
    "DDPM": ("smp_like.generative.diffusion.model", "DDPM"),
    "DDIM": ("smp_like.generative.diffusion.model", "DDIM"),
    "SDPM": ("smp_like.generative.diffusion.supervised", "SDPM"),
    "SDIM": ("smp_like.generative.diffusion.supervised", "SDIM"),
    "LDPM": ("smp_like.generative.diffusion.latent", "LDPM"),
    "LDIM": ("smp_like.generative.diffusion.latent", "LDIM"),
    "DPT": ("smp_like.decoders.dpt.model", "DPT"),
    "SegmentationModel": ("smp_like.base.model", "SegmentationModel"),
    "SegmentationHead": ("smp_like.base.heads", "SegmentationHead"),
    "ClassificationHead": ("smp_like.base.heads", "ClassificationHead"),
    "create_model": ("smp_like.factory", "create_model"),
    "from_pretrained": ("smp_like.factory", "from_pretrained"),
    "pad_to_stride": ("smp_like.base.strides", "pad_to_stride"),
    "crop_to_shape": ("smp_like.base.strides", "crop_to_shape"),
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
        from smp_like.factory import _registry

        value = _registry()
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"smp_like.{name}")
    else:
        raise AttributeError(f"module 'smp_like' has no attribute {name!r}")
    globals()[name] = value  # cache: the next access is a plain attribute lookup
    return value


def __dir__() -> list:
    return __all__
