"""Normalisation and activation layers chosen by name, for channels-first maps of any dimensionality (1D/2D/3D).

:func:`make_norm_layer` answers "a norm of this kind for ``channels`` channels":

``"batch"``     ``nn.BatchNorm{1,2,3}d`` (Ioffe & Szegedy 2015).
``"group"``     ``nn.GroupNorm`` (Wu & He 2018) with the largest divisor of ``channels`` that is ``<= num_norm_groups``
                groups, so one setting serves every width of a network; an ``int`` asks for exactly that many
                groups and must divide ``channels``.
``"instance"``  instance norm (Ulyanov et al. 2016) with a per-channel affine (:class:`InstanceNormNd`): the
                statistics of ``nn.InstanceNorm{1,2,3}d(affine=True)`` but, unlike it, no error on a map with a
                single spatial element in training (the output is then the bias); no running statistics, so it
                behaves the same in training and eval.
``"layer"``     LayerNorm over the channel axis at every position (ConvNeXt's ``LayerNorm2d``), any spatial size.
``"rms"``       RMSNorm (Zhang & Sennrich 2019, eq. 4) over the channel axis at every position.

SMP's names (``decoder_use_norm``) are aliases of the same vocabulary (:data:`NORM_ALIASES`): ``"batchnorm"``,
``"instancenorm"``, ``"layernorm"`` and ``"identity"`` (no norm).

:func:`make_activation` accepts any ``torch.nn`` activation class name or the name of its ``torch.nn.functional`` function
(``leaky_relu`` -> ``LeakyReLU``), case-insensitively, with or without underscores (``"relu"``, ``"GELU"``, ``"silu"``, ``"LeakyReLU"``,
``"leaky_relu"``).
"""

import inspect

import torch
from torch import nn

from smp_like.base import nd

__all__ = [
    "NORMALIZATIONS",
    "NORM_ALIASES",
    "canonical_norm",
    "ChannelLayerNorm",
    "ChannelRMSNorm",
    "InstanceNormNd",
    "make_activation",
    "make_norm_layer",
]

NORMALIZATIONS = ("batch", "group", "instance", "layer", "rms")
# SMP's norm names -> this vocabulary (None: no norm).
NORM_ALIASES = {"batchnorm": "batch", "identity": None, "layernorm": "layer", "instancenorm": "instance"}


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a channels-first tensor of any dimensionality.

    Same parameters (``weight``, ``bias``) as ``nn.LayerNorm(channels)``, so state dicts match SMP's; unlike a
    plain ``nn.LayerNorm`` it normalises channels rather than the last spatial axis.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.movedim(x, 1, -1)
        # Norm statistics stay float32: CUDA autocast runs layer_norm in float32; the CPU bf16 kernel accumulates
        # its mean and variance in float32 (opmath) and returns bf16.
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return torch.movedim(x, -1, 1)


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channel axis of a channels-first map: ``x / sqrt(mean_c(x²) + eps) · g``.

    Zhang & Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4 (no re-centring, a learned gain ``g``).

    Args:
        channels: number of channels ``C``.
        eps: added to the mean square for stability.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Norm statistics in float32: a mean of squares accumulated in bf16/fp16 (autocast) loses the precision
        # (and fp16 the range) the normalisation needs; the result returns in the input's dtype.
        xf = x.float()
        rms = torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + self.eps)
        shape = [1, self.channels] + [1] * (x.dim() - 2)
        return (xf * rms * self.weight.float().reshape(shape)).to(x.dtype)


class InstanceNormNd(nn.Module):
    """Instance normalisation (Ulyanov et al. 2016, eq. 4) with a per-channel affine, for any dimensionality.

    ``y = (x - μ_nc) / sqrt(σ²_nc + eps) · w_c + b_c`` with the mean and biased variance over the spatial axes of
    each sample and channel. Same maths as ``nn.InstanceNorm{1,2,3}d(channels, affine=True)`` in training mode, but
    no running statistics (training and eval agree) and no error on a single spatial element, where PyTorch's
    instance norm (and ``GroupNorm(C, C)``) raise in training: there ``σ² = 0`` and the output is ``b_c``.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(2, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        variance = (x - mean).pow(2).mean(dim=axes, keepdim=True)
        shape = [1, self.channels] + [1] * (x.dim() - 2)
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight.reshape(shape) + self.bias.reshape(
            shape
        )


def _check_channels(channels: object) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"`channels` must be a positive int, got {channels!r}")
    return channels


def canonical_norm(norm: str | int | None) -> str | int | None:
    """An SMP norm name (:data:`NORM_ALIASES`) as this vocabulary names it (``"identity"`` -> None); anything
    else unchanged."""
    if isinstance(norm, str) and norm.lower() in NORM_ALIASES:
        return NORM_ALIASES[norm.lower()]
    return norm


def _largest_divisor_at_most(value: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(limit, value)) + 1) if value % d == 0)


def make_norm_layer(
    norm: str | int | None, channels: int, spatial_dims: int = 2, num_norm_groups: int = 8
) -> nn.Module:
    """Build a normalisation layer for ``channels`` channels of a ``spatial_dims``-d channels-first map.

    Args:
        norm: one of :data:`NORMALIZATIONS`, an ``int`` (GroupNorm with that many groups), or None (identity).
        channels: channels it normalises.
        spatial_dims: 1, 2 or 3.
        num_norm_groups: the most groups ``"group"`` uses (the largest divisor of ``channels`` not above it).

    Returns:
        An ``nn.Module`` mapping (N, C, *spatial) to the same shape.

    Raises:
        TypeError: for a bool.
        ValueError: for an unknown name, a non-positive group count, or an ``int`` that does not divide ``channels``.
    """
    _check_channels(channels)
    nd.check_spatial_dims(spatial_dims, (1, 2, 3))
    norm = canonical_norm(norm)
    if norm is None:
        return nn.Identity()
    if isinstance(norm, bool):
        raise TypeError(f"`normalization` must be None, an int or one of {NORMALIZATIONS}, got {norm!r}")
    if isinstance(norm, int):
        if norm < 1 or channels % norm:
            raise ValueError(
                f"`normalization`={norm} (GroupNorm groups) must be a positive divisor of the {channels} channels"
            )
        return nn.GroupNorm(norm, channels)
    if not isinstance(norm, str) or norm.lower() not in NORMALIZATIONS:
        raise ValueError(f"`normalization` must be None, an int or one of {NORMALIZATIONS}, got {norm!r}")
    norm = norm.lower()
    if norm == "batch":
        return nd.batchnorm_type(spatial_dims)(channels)
    if norm == "group":
        if isinstance(num_norm_groups, bool) or not isinstance(num_norm_groups, int) or num_norm_groups < 1:
            raise ValueError(f"`num_norm_groups` must be a positive int, got {num_norm_groups!r}")
        return nn.GroupNorm(_largest_divisor_at_most(channels, num_norm_groups), channels)
    if norm == "instance":
        return InstanceNormNd(channels)
    if norm == "layer":
        return ChannelLayerNorm(channels)
    return ChannelRMSNorm(channels)


def _activation_classes() -> dict[str, type[nn.Module]]:
    table = {}
    for name, cls in vars(nn.modules.activation).items():
        # GLU halves the channels, so it is no drop-in activation.
        if (
            inspect.isclass(cls)
            and issubclass(cls, nn.Module)
            and cls.__module__ == nn.modules.activation.__name__
            and name not in ("MultiheadAttention", "Module", "GLU")
        ):
            table[name.lower()] = cls
    return table


_ACTIVATION_CLASSES = _activation_classes()
# Classes that need a ``dim``: for channels-first maps, the channel axis.
_NEEDS_CHANNEL_DIM = ("softmax", "logsoftmax", "softmin")


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def make_activation(activation: str | type[nn.Module] | None, channel_dim: int = 1) -> nn.Module:
    """Build an activation from a ``torch.nn`` class name or ``torch.nn.functional`` function name.

    Args:
        activation: e.g. ``"relu"``, ``"GELU"``, ``"silu"``, ``"LeakyReLU"``, ``"leaky_relu"``, ``"identity"``;
            an ``nn.Module`` subclass (instantiated without arguments); or None (identity).
        channel_dim: the channel axis, for the activations that normalise over one (softmax and kin): 1 for
            channels-first maps, -1 for channels-last tokens.

    Returns:
        An ``nn.Module``.

    Raises:
        TypeError: for something that is neither a string, None nor an ``nn.Module`` class.
        ValueError: for an unknown name, or a class that needs constructor arguments.
    """
    if activation is None:
        return nn.Identity()
    if inspect.isclass(activation) and issubclass(activation, nn.Module):
        try:
            return activation()
        except TypeError as err:
            raise ValueError(f"`activation` class {activation.__name__} needs arguments: {err}") from None
    if not isinstance(activation, str):
        raise TypeError(
            f"`activation` must be None, an activation name or an nn.Module class, got {activation!r}"
        )
    key = _key(activation)
    if key == "identity":
        return nn.Identity()
    if key in _ACTIVATION_CLASSES:
        cls = _ACTIVATION_CLASSES[key]
        if key in _NEEDS_CHANNEL_DIM:
            return cls(dim=channel_dim)
        try:
            return cls()
        except TypeError as err:
            raise ValueError(f"`activation`={activation!r} ({cls.__name__}) needs arguments: {err}") from None
    raise ValueError(
        f"`activation` must be a torch.nn activation class name or its torch.nn.functional name "
        f"(case-insensitive, underscores ignored), "
        f"got {activation!r}; e.g. {sorted(_ACTIVATION_CLASSES)}"
    )
