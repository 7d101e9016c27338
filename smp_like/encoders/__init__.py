"""Encoder registry: native families, any timm model (``tu-`` prefix) and user-registered encoders.

``encoders`` is a plain dict ``{name: {"encoder": cls, "params": {...}, "pretrained_settings": {tag: {...}}}}``;
adding an entry by assignment (the SMP way) or with :func:`register_encoder` makes the name usable everywhere
(``smp_like.Unet(encoder_name=name)``). An entry may also say which ``spatial_dims`` it supports (default (2,)).
"""

import difflib
import functools
import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch.nn as nn

from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import inflate_state_dict
from smp_like.encoders._weights import WeightsDownloadError, fetch_weights_file, read_state_dict
from smp_like.encoders.deprecated import is_deprecated_name, resolve_encoder_name
from smp_like.encoders.densenet import densenet_encoders
from smp_like.encoders.dpn import dpn_encoders
from smp_like.encoders.efficientnet import efficientnet_encoders
from smp_like.encoders.flemme_cnn import flemme_cnn_encoders
from smp_like.encoders.flemme_swin import flemme_swin_encoders
from smp_like.encoders.flemme_vit import flemme_vit_encoders
from smp_like.encoders.flemme_vmamba import flemme_vmamba_encoders
from smp_like.encoders.inceptionresnetv2 import inceptionresnetv2_encoders
from smp_like.encoders.inceptionv4 import inceptionv4_encoders
from smp_like.encoders.mix_transformer import mix_transformer_encoders
from smp_like.encoders.mobilenet import mobilenet_encoders
from smp_like.encoders.mobileone import mobileone_encoders
from smp_like.encoders.resnet import resnet_encoders
from smp_like.encoders.senet import senet_encoders
from smp_like.encoders.timm_efficientnet import timm_efficientnet_encoders
from smp_like.encoders.timm_sknet import timm_sknet_encoders
from smp_like.encoders.timm_vit import TimmViTPyramidEncoder  # noqa: F401  (serves plain-ViT `tu-` names)
from smp_like.encoders.vgg import vgg_encoders
from smp_like.encoders.xception import xception_encoders

__all__ = [
    "EncoderMixin",
    "WeightsDownloadError",
    "encoders",
    "register_encoder",
    "get_encoder",
    "get_encoder_names",
    "get_preprocessing_params",
    "get_preprocessing_fn",
    "download_weights",
    "UnknownEncoderError",
    "TimmUniversalEncoder",
    "TimmViTEncoder",
    "preprocess_input",
    "efficient_net_encoders",
    "is_equivalent_to_timm_universal",
]

TIMM_PREFIX = "tu-"

encoders: Dict[str, Dict[str, Any]] = {}
"""The encoder registry: name -> ``{"encoder": cls, "params": {...}, "pretrained_settings": {tag: {...}}}``.

A plain dict, as in SMP: add an entry by assignment or with :func:`register_encoder`.
"""
# SMP's order of families, so listings read the same.
for _family in (
    resnet_encoders,
    dpn_encoders,
    vgg_encoders,
    senet_encoders,
    densenet_encoders,
    inceptionresnetv2_encoders,
    inceptionv4_encoders,
    efficientnet_encoders,
    mobilenet_encoders,
    xception_encoders,
    timm_efficientnet_encoders,
    timm_sknet_encoders,
    mix_transformer_encoders,
    mobileone_encoders,
    # The Flemme families (issue 5): random initialisation only, 2D and 3D, any input size, time-aware.
    flemme_cnn_encoders,
    flemme_vit_encoders,
    flemme_swin_encoders,
    flemme_vmamba_encoders,
):
    encoders.update(_family)


class UnknownEncoderError(ValueError, KeyError):
    """An encoder name that is not registered (a ValueError, and a KeyError as SMP raises)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def get_encoder_names() -> List[str]:
    """Names of all registered encoders (``tu-<timm name>`` works too but is not listed).

    Returns:
        The registered names, in registration order.
    """
    return list(encoders.keys())


def register_encoder(
    name: str,
    encoder: Optional[type] = None,
    *,
    params: Optional[Dict[str, Any]] = None,
    pretrained_settings: Optional[Dict[str, Dict[str, Any]]] = None,
    spatial_dims: Sequence[int] = (2,),
    overwrite: bool = False,
) -> Any:
    """Register an encoder class under ``name``; usable directly or as a class decorator.

    Args:
        name: the new encoder name (not starting with ``tu-``).
        encoder: the class (an ``nn.Module`` with :class:`EncoderMixin`); omit it to use the decorator form.
        params: constructor arguments given to the class for this name.
        pretrained_settings: tag -> where the weights live (``repo_id`` + ``revision``, ``url`` or ``file``)
            and their normalisation (``mean``, ``std``, ...).
        spatial_dims: the spatial dimensions the class supports.
        overwrite: replace an existing entry of that name.

    Returns:
        The class (directly), or a decorator that registers and returns the class.

    Example:
        >>> @register_encoder("tiny", params={"width": 8})
        ... class Tiny(torch.nn.Module, EncoderMixin): ...

    Raises:
        TypeError: if ``name`` is not a string or ``encoder`` is not an ``nn.Module`` subclass.
        ValueError: if the name is taken (and ``overwrite`` is False) or uses the reserved ``tu-`` prefix.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"encoder `name` must be a non-empty string, got {name!r}")
    if name.startswith(TIMM_PREFIX):
        raise ValueError(f"encoder names starting with {TIMM_PREFIX!r} are reserved for timm models, got {name!r}")

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"`encoder` must be an nn.Module subclass (with EncoderMixin), got {cls!r}")
        if name in encoders and not overwrite:
            raise ValueError(f"encoder {name!r} is already registered; pass overwrite=True to replace it")
        encoders[name] = {
            "encoder": cls,
            "params": dict(params or {}),
            "pretrained_settings": dict(pretrained_settings or {}),
            "spatial_dims": tuple(spatial_dims),
        }
        return cls

    return decorator if encoder is None else decorator(encoder)


def _entry(name: str) -> Dict[str, Any]:
    if not isinstance(name, str):
        raise TypeError(f"`encoder_name` must be a string, got {name!r}")
    try:
        return encoders[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(encoders), n=3, cutoff=0.6)
        hint = f" Did you mean {close}?" if close else ""
        raise UnknownEncoderError(
            f"Unknown `encoder_name` {name!r}.{hint} Valid names: {sorted(encoders)}, "
            f"or '{TIMM_PREFIX}<timm model name>' for any timm model."
        ) from None


def _pretrained_settings(name: str, weights: str) -> Dict[str, Any]:
    settings = _entry(name).get("pretrained_settings", {})
    if weights not in settings:
        raise ValueError(
            f"Unknown `encoder_weights` {weights!r} for encoder {name!r}; available tags: {sorted(settings)} "
            "(or None for random initialisation)"
        )
    return settings[weights]


def _encoders_supporting(spatial_dims: int) -> List[str]:
    # list(...) snapshots the table in one step: register_encoder in another thread cannot break the iteration.
    return sorted(n for n, e in list(encoders.items()) if spatial_dims in tuple(e.get("spatial_dims", (2,))))


_NO_VALUE: Any = object()


def _weights_alias(weights: Any, kwargs: Dict[str, Any]) -> Any:
    """``weights``, or SMP's model-level spelling ``encoder_weights`` (popped from ``kwargs``).

    Raises:
        ValueError: if both are given with different values.
    """
    alias = kwargs.pop("encoder_weights", _NO_VALUE)
    if alias is _NO_VALUE:
        return weights
    if weights is not None and weights != alias:
        raise ValueError(
            f"get_encoder got `weights`={weights!r} and its alias `encoder_weights`={alias!r}; give only one of them"
        )
    return alias


def _refuse_unknown_arguments(name: str, encoder_class: type, kwargs: Dict[str, Any]) -> None:
    """Refuse keyword arguments the encoder class does not take (SMP drops them silently; we name them).

    Raises:
        TypeError: naming the unknown arguments and the accepted ones.
    """
    if not kwargs:
        return
    try:
        parameters = inspect.signature(encoder_class.__init__).parameters
    except (TypeError, ValueError):  # a builtin-like __init__: let the class itself decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = sorted(
        n for n, p in parameters.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL
    )
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"get_encoder({name!r}) got unexpected keyword argument(s) {unknown}; {encoder_class.__name__} accepts "
            f"{accepted} (plus get_encoder's own: in_channels, depth, weights/encoder_weights, output_stride, "
            "spatial_dims)"
        )


def get_encoder(
    name: str,
    in_channels: int = 3,
    depth: int = 5,
    weights: Optional[str] = None,
    output_stride: int = 32,
    spatial_dims: int = 2,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered encoder (or ``tu-<timm name>``), load pretrained weights and adapt it.

    Args:
        name: registry name or ``tu-<timm model name>[.<pretrained tag>]``.
        in_channels: input channels; pretrained first convs are adapted (see ``EncoderMixin.set_in_channels``).
        depth: number of down-sampling stages.
        weights: pretrained tag (e.g. ``"imagenet"``) or None for random weights.
        output_stride: 32, or 16 / 8 to replace the last strides by dilation.
        spatial_dims: 2 for images, 3 for volumes (2D weights are inflated to 3D).
        **kwargs: extra constructor arguments for the encoder class (for ``tu-`` encoders: for
            ``timm.create_model``). ``encoder_weights`` is accepted as an alias of ``weights`` (SMP's model-level
            spelling); any other argument the encoder class does not take is refused.

    Returns:
        An ``nn.Module`` with :class:`EncoderMixin`.

    Raises:
        ValueError: unknown name or weights tag, unsupported spatial_dims or output_stride, or ``weights`` and
            ``encoder_weights`` given with different values.
        TypeError: an argument the encoder class does not accept (named, with the valid ones).
        WeightsDownloadError: when pretrained weights cannot be fetched.
    """
    weights = _weights_alias(weights, kwargs)
    if weights is not None and not isinstance(weights, (str, bool)):
        # A list or dict would fail later as an unhashable key; say what is expected instead.
        raise TypeError(
            f"`encoder_weights` must be a weights tag (a str such as 'imagenet') or None, got {weights!r} "
            f"({type(weights).__name__})"
        )
    if output_stride not in (8, 16, 32):
        raise ValueError(f"`output_stride` must be one of (8, 16, 32), got {output_stride!r}")
    name = resolve_encoder_name(name, encoders)  # SMP's deprecated timm-* names -> tu-*
    if isinstance(name, str) and name.startswith(TIMM_PREFIX):
        from smp_like.encoders.timm_universal import TimmUniversalEncoder, warn_tag_for_timm_encoder

        warn_tag_for_timm_encoder(name, weights)
        return TimmUniversalEncoder(
            name[len(TIMM_PREFIX) :],
            pretrained=weights,
            in_channels=in_channels,
            depth=depth,
            output_stride=output_stride,
            spatial_dims=spatial_dims,
            **kwargs,
        )

    entry = _entry(name)
    supported = tuple(entry.get("spatial_dims", (2,)))
    if spatial_dims not in supported:
        raise ValueError(
            f"encoder {name!r} supports spatial_dims {supported}, got spatial_dims={spatial_dims!r}; "
            f"encoders that support spatial_dims={spatial_dims}: {_encoders_supporting(spatial_dims)}"
        )
    settings = _pretrained_settings(name, weights) if weights is not None else None

    params = dict(entry.get("params", {}))
    params.update(depth=depth)
    if spatial_dims != 2:
        params.update(spatial_dims=spatial_dims)
    _refuse_unknown_arguments(name, entry["encoder"], kwargs)
    params.update(kwargs)
    encoder = entry["encoder"](**params)

    if settings is not None:
        state_dict = read_state_dict(fetch_weights_file(name, weights, settings))
        ignored = tuple(getattr(encoder, "_ignored_pretrained_prefixes", ()))
        state_dict = {k: v for k, v in state_dict.items() if not (ignored and k.startswith(ignored))}
        if getattr(encoder, "spatial_dims", 2) == 3:
            state_dict = inflate_state_dict(state_dict, encoder)
        try:
            encoder.load_state_dict(state_dict)
        except RuntimeError as err:
            raise ValueError(f"weights '{weights}' do not fit encoder {name!r}: {err}") from err

    encoder.set_in_channels(in_channels, pretrained=weights is not None)
    if output_stride != 32:
        encoder.make_dilated(output_stride)
    return encoder


def download_weights(name: str, weights: str = "imagenet") -> str:
    """Fetch the weights of ``name`` / ``weights`` into the cache ahead of time and return the local path.

    Args:
        name: a registered encoder name.
        weights: one of its pretrained tags.

    Returns:
        The path of the cached weights file.
    """
    name = resolve_encoder_name(name, encoders)
    if name.startswith(TIMM_PREFIX):
        from smp_like.encoders.timm_universal import download_timm_weights

        return download_timm_weights(name[len(TIMM_PREFIX) :], weights)
    return str(fetch_weights_file(name, weights, _pretrained_settings(name, weights)))


def get_preprocessing_params(encoder_name: str, pretrained: str = "imagenet") -> Dict[str, Any]:
    """Input normalisation the weights were trained with: ``input_space``, ``input_range``, ``mean``, ``std``.

    Args:
        encoder_name: a registered encoder name (or ``tu-<timm name>``).
        pretrained: the pretrained tag.

    Returns:
        A dict with the keys ``input_space``, ``input_range``, ``mean`` and ``std``.
    """
    encoder_name = resolve_encoder_name(encoder_name, encoders)
    if encoder_name.startswith(TIMM_PREFIX):
        from smp_like.encoders.timm_universal import timm_preprocessing_params

        return timm_preprocessing_params(encoder_name[len(TIMM_PREFIX) :])
    settings = _pretrained_settings(encoder_name, pretrained)
    missing = [k for k in ("mean", "std") if k not in settings]
    if missing:
        raise ValueError(f"pretrained setting {pretrained!r} of {encoder_name!r} does not give {missing}")
    return {
        "input_space": settings.get("input_space", "RGB"),
        "input_range": list(settings.get("input_range", [0, 1])),
        "mean": list(settings["mean"]),
        "std": list(settings["std"]),
    }


def preprocess_input(
    x: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    input_space: str = "RGB",
    input_range: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """Normalise a channels-last image array the way the encoder's weights expect.

    Args:
        x: an image array, channels last.
        mean: per-channel mean subtracted after scaling (None: skipped).
        std: per-channel standard deviation divided by (None: skipped).
        input_space: ``"RGB"``, or ``"BGR"`` to reverse the channels first.
        input_range: the value range the weights expect; ``[0, 1]`` divides inputs above 1 by 255.

    Returns:
        The normalised array.
    """
    x = np.asarray(x)
    if input_space == "BGR":
        x = x[..., ::-1].copy()
    if input_range is not None and max(input_range) == 1 and x.max() > 1:
        x = x / 255.0
    if mean is not None:
        x = x - np.array(mean)
    if std is not None:
        x = x / np.array(std)
    return x


def get_preprocessing_fn(encoder_name: str, pretrained: str = "imagenet") -> Callable[[np.ndarray], np.ndarray]:
    """A function that normalises channels-last images for ``encoder_name`` / ``pretrained``.

    Args:
        encoder_name: a registered encoder name (or ``tu-<timm name>``).
        pretrained: the pretrained tag.

    Returns:
        ``f(x)`` applying :func:`preprocess_input` with that encoder's parameters.
    """
    return functools.partial(preprocess_input, **get_preprocessing_params(encoder_name, pretrained))


# --- SMP 0.6 names kept for code written against segmentation_models_pytorch.encoders ---------------------------

efficient_net_encoders = efficientnet_encoders  # SMP's spelling of the same table
"""The registry entries of the EfficientNet family (``efficientnet-b0`` ... ``b7``), under SMP's name."""


def is_equivalent_to_timm_universal(name: str) -> bool:
    """SMP's test: whether ``name`` is a deprecated ``timm-*`` encoder served by a ``tu-`` timm model.

    Args:
        name: an encoder name.

    Returns:
        True for a deprecated name that builds the equivalent ``tu-`` encoder.
    """
    return is_deprecated_name(name)


# The timm-backed classes are resolved on first access (PEP 562), as SMP exposes them here; their modules import
# timm only when an encoder is built, but loading them lazily keeps `import smp_like.encoders` minimal.
_LAZY_ATTRS = {
    "TimmUniversalEncoder": ("smp_like.encoders.timm_universal", "TimmUniversalEncoder"),
    "TimmViTEncoder": ("smp_like.encoders.timm_vit", "TimmViTEncoder"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY_ATTRS:
        module_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module_name), attr)
    elif name in ("timm_universal", "timm_vit"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
