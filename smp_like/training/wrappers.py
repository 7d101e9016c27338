"""Building the wrappers of a ``model`` config section: AE / VAE / HAE, the DDPM family (nested ``eps_model``,
LDPM's ``autoencoder``). A leaf of the training package (it imports none of it), so the config's semantic checks
and :func:`smp_like.training.builders.build_model` both use it."""

from typing import Any, Dict, Optional

from torch import nn

__all__ = ["build_wrapper", "is_wrapper"]

#: Wrappers built from nested settings (lower case): auto-encoders and diffusion models.
_AUTOENCODERS = ("ae", "vae", "hae")
_DIFFUSION = ("ddpm", "ddim", "sdpm", "sdim", "ldpm", "ldim")


def is_wrapper(arch: Any) -> bool:
    """AE, VAE, HAE and the diffusion models (ClM is built like a segmentation model, with ``classes``)."""
    return str(arch).lower() in _AUTOENCODERS + _DIFFUSION


def build_wrapper(model_cfg: Any, num_classes: int, pretrained: bool = True) -> nn.Module:
    """Build an auto-encoder or diffusion model from a ``model`` section (see
    :func:`smp_like.training.builders.build_model`).

    Raises:
        ValueError: for unknown or clashing arguments (naming them).
    """
    import smp_like

    arch = str(model_cfg.arch)
    weights = model_cfg.encoder_weights if pretrained else None
    kwargs = dict(model_cfg.kwargs)
    if arch.lower() in _AUTOENCODERS:
        return smp_like.create_model(arch, encoder_name=model_cfg.encoder_name, encoder_weights=weights,
                                     in_channels=model_cfg.in_channels, **kwargs)
    if arch.lower() in _DIFFUSION:
        return _build_diffusion(arch, model_cfg, weights, kwargs, num_classes, pretrained)
    raise ValueError(f"{arch!r} is not an auto-encoder or diffusion model")


def _build_diffusion(arch: str, model_cfg: Any, weights: Optional[str], kwargs: Dict[str, Any], num_classes: int,
                     pretrained: bool) -> nn.Module:
    """A DDPM-family model: ``eps_model`` keys become ``architecture`` and the eps-model's arguments."""
    from smp_like.base.registry import get_model_class

    eps = kwargs.pop("eps_model", None) or {}
    if not isinstance(eps, dict):
        raise ValueError(f"model.eps_model must be a mapping (arch and the eps-model's arguments), got {eps!r}")
    eps = dict(eps)
    args: Dict[str, Any] = {"encoder_name": model_cfg.encoder_name, "encoder_weights": weights}
    if "arch" in eps:
        if "architecture" in kwargs:
            raise ValueError("model.architecture and model.eps_model.arch both name the eps-model; keep one")
        args["architecture"] = eps.pop("arch")
    if not pretrained:
        eps["encoder_weights"] = None
    clash = sorted(set(eps) & set(kwargs))
    if clash:
        raise ValueError(f"model.eps_model and model both set {clash}; keep each key in one place")
    args.update(kwargs)
    args.update(eps)
    lower = arch.lower()
    if lower in ("sdpm", "sdim"):
        args.setdefault("classes", num_classes)
        args["in_channels"] = model_cfg.in_channels
    elif lower in ("ldpm", "ldim"):
        args["autoencoder"] = _build_autoencoder(args.get("autoencoder"), pretrained)
    else:
        args["in_channels"] = model_cfg.in_channels
    return get_model_class(arch)(**args)


def _build_autoencoder(spec: Any, pretrained: bool) -> nn.Module:
    """The auto-encoder of a latent diffusion model: ``{from_pretrained: folder}`` or ``{arch: AE|VAE, ...}``."""
    import smp_like

    if not isinstance(spec, dict):
        raise ValueError("model.autoencoder must be {from_pretrained: <AE/VAE folder>} or {arch: AE|VAE, ...arguments}, "
                         f"got {spec!r}")
    spec = dict(spec)
    if spec.get("from_pretrained"):
        if len(spec) > 1:
            raise ValueError(f"model.autoencoder: from_pretrained takes no other keys, got {sorted(spec)}")
        return smp_like.from_pretrained(spec["from_pretrained"])
    arch = spec.pop("arch", None)
    if str(arch).lower() not in ("ae", "vae"):
        raise ValueError(f"model.autoencoder.arch must be 'AE' or 'VAE', got {arch!r}")
    if not pretrained:
        spec["encoder_weights"] = None
    spec.setdefault("encoder_weights", None)
    return smp_like.create_model(arch, **spec)
