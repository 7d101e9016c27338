"""Small building blocks shared by decoders and heads (n-d, with SMP-compatible module layouts)."""

from typing import Any, Callable, Dict, Optional, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.attention import ATTENTIONS, SCSEModule, make_attention
from smp_like.base.norms import ChannelLayerNorm, make_activation

NORM_TYPES = ("batchnorm", "identity", "layernorm", "instancenorm", "inplace")
# One vocabulary with the block toolkit: SMP's None / "scse" plus every name of base.attention.ATTENTIONS.
ATTENTION_TYPES = (None,) + ATTENTIONS
# SMP's names; any other torch.nn activation name ("relu", "gelu", "silu", ...) is built by norms.make_activation.
ACTIVATIONS = ("sigmoid", "softmax", "softmax2d", "logsoftmax", "tanh", "argmax", "argmax2d", "clamp", "identity")


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample while training.

    Kept samples are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged; identity in eval mode.
    No parameters, so it never changes a state dict.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def parse_norm(use_norm: Union[bool, str, Dict[str, Any]]) -> Dict[str, Any]:
    """Normalise the forms ``decoder_use_norm`` accepts to ``{"type": name, **params}``.

    Accepts ``True`` (batchnorm), ``False`` (identity), one of :data:`NORM_TYPES`, or a dict with a ``"type"`` key
    and keyword arguments for the norm layer, exactly as SMP does.

    Raises:
        ValueError: for any other value.
    """
    if isinstance(use_norm, bool):
        return {"type": "batchnorm" if use_norm else "identity"}
    if isinstance(use_norm, str):
        if use_norm not in NORM_TYPES:
            raise ValueError(f"`decoder_use_norm` must be one of {NORM_TYPES}, a bool or a dict, got {use_norm!r}")
        return {"type": use_norm}
    if isinstance(use_norm, dict):
        if use_norm.get("type") not in NORM_TYPES:
            raise ValueError(
                f"`decoder_use_norm` dict needs a 'type' key with one of {NORM_TYPES}, got {use_norm!r}"
            )
        return dict(use_norm)
    raise ValueError(
        f"`decoder_use_norm` must be a bool, one of {NORM_TYPES}, or a dict like "
        f"{{'type': 'batchnorm', **kwargs}}; got {use_norm!r}"
    )


def make_norm(use_norm: Union[bool, str, Dict[str, Any]], channels: int, spatial_dims: int = 2) -> nn.Module:
    spec = parse_norm(use_norm)
    kind = spec.pop("type")
    if kind == "batchnorm":
        return nd.batchnorm_type(spatial_dims)(channels, **spec)
    if kind == "identity":
        return nn.Identity()
    if kind == "layernorm":
        return ChannelLayerNorm(channels, **spec)
    if kind == "instancenorm":
        return nd.instancenorm_type(spatial_dims)(channels, **spec)
    # "inplace": InplaceABN fuses BN and activation; it is an optional CUDA extension.
    try:
        from inplace_abn import InPlaceABN  # type: ignore[import-not-found]
    except ImportError as err:
        raise ImportError(
            "`decoder_use_norm='inplace'` needs the optional package inplace_abn: pip install inplace_abn"
        ) from err
    if spatial_dims != 2:
        raise ValueError("`decoder_use_norm='inplace'` supports spatial_dims=2 only")
    return InPlaceABN(channels, activation="leaky_relu", activation_param=0.0, **spec)


class ConvNormReLU(nn.Sequential):
    """conv -> norm -> ReLU as a ``Sequential`` (children 0, 1, 2), matching SMP's ``Conv2dReLU`` keys.

    The conv has a bias only when the norm does not provide one (identity norm).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 0,
        stride: int = 1,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        kind = parse_norm(use_norm)["type"]
        conv = nd.conv_type(spatial_dims)(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=kind == "identity"
        )
        norm = make_norm(use_norm, out_channels, spatial_dims)
        # InplaceABN applies the activation itself.
        activation = nn.Identity() if kind == "inplace" else nn.ReLU(inplace=True)
        super().__init__(conv, norm, activation)


class Conv2dReLU(ConvNormReLU):
    """SMP's public 2D conv -> norm -> ReLU block, for users writing their own decoders.

    Same arguments, children (0: conv, 1: norm, 2: ReLU) and ``state_dict`` keys as
    ``segmentation_models_pytorch.base.modules.Conv2dReLU``; the n-d version is :class:`ConvNormReLU`.

    Args:
        in_channels, out_channels, kernel_size, padding, stride: as for ``nn.Conv2d``.
        use_norm: True (batchnorm), False (identity, the conv then has a bias), one of :data:`NORM_TYPES`, or a
            dict ``{"type": name, **norm_kwargs}``.

    Raises:
        ValueError: for an unknown ``use_norm``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        stride: int = 1,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding, stride, use_norm, spatial_dims=2)


def get_norm_layer(use_norm: Union[bool, str, Dict[str, Any]], out_channels: int) -> nn.Module:
    """SMP's helper: the 2D norm layer ``use_norm`` names, for ``out_channels`` channels.

    Raises:
        ValueError: for an unknown ``use_norm`` (see :func:`parse_norm`).
        ImportError: for ``"inplace"`` without the optional inplace_abn package.
    """
    return make_norm(use_norm, out_channels, spatial_dims=2)


def __getattr__(name: str) -> Any:
    # SMP exposes ``InPlaceABN`` (the class, or None when the optional inplace_abn package is absent); resolved
    # lazily so that importing this module never imports the CUDA extension.
    if name == "InPlaceABN":
        try:
            from inplace_abn import InPlaceABN  # type: ignore[import-not-found]
        except ImportError:
            return None
        return InPlaceABN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Attention(nn.Module):
    """Named attention (SMP's wrapper): ``None`` -> identity, ``"scse"`` -> :class:`SCSEModule` (SMP's keys), and
    the block toolkit's ``"se"``, ``"cbam"``, ``"self"`` (:func:`~smp_like.base.attention.make_attention`)."""

    def __init__(self, name: Optional[str], **params: Any):
        super().__init__()
        if name is None:
            self.attention = nn.Identity()
        elif name == "scse":
            self.attention = SCSEModule(**params)
        elif name in ATTENTION_TYPES:
            channels = params.pop("in_channels")
            self.attention = make_attention(name, channels, **params)
        else:
            raise ValueError(f"`decoder_attention_type` must be one of {ATTENTION_TYPES}, got {name!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class ArgMax(nn.Module):
    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.argmax(x, dim=self.dim)


class Clamp(nn.Module):
    def __init__(self, min: float = 0.0, max: float = 1.0):
        super().__init__()
        self.min, self.max = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.min, self.max)


class Activation(nn.Module):
    """Activation chosen by name (see :data:`ACTIVATIONS`), ``None``, or any callable returning a module."""

    def __init__(self, name: Union[str, Callable, None], **params: Any):
        super().__init__()
        if name is None or name == "identity":
            self.activation = nn.Identity(**params)
        elif name == "sigmoid":
            self.activation = nn.Sigmoid()
        elif name in ("softmax", "softmax2d"):
            self.activation = nn.Softmax(dim=1, **params)
        elif name == "logsoftmax":
            self.activation = nn.LogSoftmax(dim=1, **params)
        elif name == "tanh":
            self.activation = nn.Tanh()
        elif name == "argmax":
            self.activation = ArgMax(**params)
        elif name == "argmax2d":
            self.activation = ArgMax(dim=1, **params)
        elif name == "clamp":
            self.activation = Clamp(**params)
        elif callable(name):
            self.activation = name(**params)
        elif isinstance(name, str) and not params:
            # One vocabulary with the block toolkit: any torch.nn activation by name (raises, listing them).
            self.activation = make_activation(name)
        else:
            raise ValueError(f"`activation` must be None, a callable, one of {ACTIVATIONS} or a torch.nn "
                             f"activation name, got {name!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)
