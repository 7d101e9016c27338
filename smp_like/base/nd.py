"""N-dimensional layer factories: one place answers "a conv / norm / pool for this many spatial dims".

Every native block takes ``spatial_dims`` (2 or 3; 1 where it makes sense) and asks these helpers for its layers,
so a 3D network is the 2D one with a different argument rather than a second copy of the code.
"""

from typing import Sequence, Tuple, Type, Union

import torch.nn as nn

SUPPORTED_SPATIAL_DIMS = (1, 2, 3)

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCENORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_ADAPTIVE_AVGPOOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_ADAPTIVE_MAXPOOL = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}

# The interpolation modes users write for 2D images, and their counterparts for other dimensionalities.
_INTERPOLATION = {
    "nearest": {1: "nearest", 2: "nearest", 3: "nearest"},
    "nearest-exact": {1: "nearest-exact", 2: "nearest-exact", 3: "nearest-exact"},
    "linear": {1: "linear", 2: "bilinear", 3: "trilinear"},
    "bilinear": {1: "linear", 2: "bilinear", 3: "trilinear"},
    "trilinear": {1: "linear", 2: "bilinear", 3: "trilinear"},
    "bicubic": {2: "bicubic"},
    "area": {1: "area", 2: "area", 3: "area"},
}
INTERPOLATION_MODES = tuple(_INTERPOLATION)


def check_spatial_dims(spatial_dims: int, allowed: Sequence[int] = (2, 3), what: str = "spatial_dims") -> int:
    """Validate ``spatial_dims`` and return it.

    Raises:
        ValueError: if it is not one of ``allowed``.
    """
    if isinstance(spatial_dims, bool) or spatial_dims not in tuple(allowed):
        raise ValueError(f"`{what}` must be one of {tuple(allowed)}, got {spatial_dims!r}")
    return int(spatial_dims)


def _pick(table: dict, spatial_dims: int, what: str) -> Type[nn.Module]:
    check_spatial_dims(spatial_dims, tuple(table), "spatial_dims")
    return table[spatial_dims]


def conv_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_CONV, spatial_dims, "conv")


def conv_transpose_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_CONV_TRANSPOSE, spatial_dims, "conv_transpose")


def batchnorm_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_BATCHNORM, spatial_dims, "batchnorm")


def instancenorm_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_INSTANCENORM, spatial_dims, "instancenorm")


def maxpool_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_MAXPOOL, spatial_dims, "maxpool")


def avgpool_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_AVGPOOL, spatial_dims, "avgpool")


def adaptive_avgpool_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_ADAPTIVE_AVGPOOL, spatial_dims, "adaptive_avgpool")


def adaptive_maxpool_type(spatial_dims: int) -> Type[nn.Module]:
    return _pick(_ADAPTIVE_MAXPOOL, spatial_dims, "adaptive_maxpool")


def dropout_type(spatial_dims: int) -> Type[nn.Module]:
    """Channel-wise (spatial) dropout for ``spatial_dims``-d feature maps (1D, 2D or 3D)."""
    return {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}[check_spatial_dims(spatial_dims, (1, 2, 3))]


def interpolation_mode(mode: str, spatial_dims: int, argument: str = "decoder_interpolation") -> str:
    """Translate a user-facing interpolation mode to the one ``F.interpolate`` needs for ``spatial_dims``.

    ``"bilinear"`` becomes ``"trilinear"`` for volumes, so one config serves 2D and 3D models.

    Args:
        mode: the user-facing mode.
        spatial_dims: 1, 2 or 3.
        argument: the argument's name, for the message.

    Raises:
        ValueError: for an unknown mode, or a mode that has no version in this dimensionality.
    """
    if not isinstance(mode, str) or mode not in _INTERPOLATION:  # isinstance first: lists are unhashable
        raise ValueError(f"`{argument}` (interpolation mode) must be one of {INTERPOLATION_MODES}, got {mode!r}")
    per_dim = _INTERPOLATION[mode]
    if spatial_dims not in per_dim:
        raise ValueError(
            f"interpolation mode {mode!r} is not available for spatial_dims={spatial_dims}; "
            f"choose one of {tuple(m for m, d in _INTERPOLATION.items() if spatial_dims in d)}"
        )
    return per_dim[spatial_dims]


def as_tuple(value: Union[int, Sequence[int]], spatial_dims: int, what: str = "value") -> tuple:
    """Broadcast an int to a ``spatial_dims``-tuple, or check a sequence has that length."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise ValueError(f"`{what}` must be an int or have {spatial_dims} entries, got {value!r}")
    return value


def spatial_size(size: Union[int, Sequence[int]], spatial_dims: int, what: str = "size") -> Tuple[int, ...]:
    """A spatial size as ``spatial_dims`` positive ints (an int is broadcast to every axis).

    Raises:
        ValueError: naming ``what`` for a wrong length, a non-integer or a non-positive entry.
    """
    try:
        size = as_tuple(size, spatial_dims, what)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`{what}` must be an int or {spatial_dims} positive ints (spatial_dims={spatial_dims}), got {size!r}"
        ) from err
    if any(s < 1 for s in size):
        raise ValueError(f"`{what}` must be positive, got {size!r}")
    return size
