"""Output heads: a per-pixel segmentation head and a global classification head (SMP layouts)."""

from typing import Any, Callable, Optional, Union

import torch.nn as nn

from smp_like.base import nd
from smp_like.base.modules import Activation

POOLINGS = ("avg", "max")


class SegmentationHead(nn.Sequential):
    """conv (kernel ``kernel_size``) -> optional upsampling -> activation; children 0, 1, 2 as in SMP.

    Args:
        in_channels: channels of the decoder output.
        out_channels: mask channels (classes).
        kernel_size: size of the convolution kernel.
        activation: applied last: a name (``"sigmoid"``, ``"softmax"``, any torch activation), a callable or None.
        upsampling: scale factor of the final bilinear (trilinear in 3D) upsampling; 1 for none.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        activation: Union[str, Callable, None] = None,
        upsampling: int = 1,
        spatial_dims: int = 2,
    ):
        conv = nd.conv_type(spatial_dims)(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        if upsampling > 1:
            mode = nd.interpolation_mode("bilinear", spatial_dims)
            upsample = nn.Upsample(scale_factor=upsampling, mode=mode, align_corners=True)
        else:
            upsample = nn.Identity()
        super().__init__(conv, upsample, Activation(activation))


class ClassificationHead(nn.Sequential):
    """global pooling -> flatten -> dropout -> linear -> activation; children 0..4 as in SMP.

    Args:
        in_channels: channels of the deepest encoder feature.
        classes: number of output labels.
        pooling: ``"avg"`` or ``"max"``.
        dropout: dropout probability (SMP's default 0.2), or None / 0 for no dropout.
        activation: activation name or callable (see :class:`~smp_like.base.modules.Activation`).
        spatial_dims: 2 or 3.

    Raises:
        ValueError: for an unknown pooling, or a dropout outside [0, 1).
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        pooling: str = "avg",
        dropout: Optional[float] = 0.2,
        activation: Union[str, Callable, None] = None,
        spatial_dims: int = 2,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"aux_params `pooling` must be one of {POOLINGS}, got {pooling!r}")
        if dropout is not None and not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"aux_params `dropout` must be None or in [0, 1), got {dropout!r}")
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
            raise ValueError(f"aux_params `classes` must be a positive int, got {classes!r}")
        pool_type = nd.adaptive_avgpool_type if pooling == "avg" else nd.adaptive_maxpool_type
        pool = pool_type(spatial_dims)(1)
        drop = nn.Dropout(p=dropout, inplace=True) if dropout else nn.Identity()
        linear = nn.Linear(in_channels, classes, bias=True)
        super().__init__(pool, nn.Flatten(), drop, linear, Activation(activation))


AUX_PARAMS_KEYS = ("classes", "pooling", "dropout", "activation")


def build_classification_head(
    aux_params: Optional[dict], in_channels: int, spatial_dims: int = 2
) -> Optional[ClassificationHead]:
    """Build the optional aux head from ``aux_params``, naming any unknown key.

    Raises:
        TypeError: if ``aux_params`` is not a dict or has keys other than :data:`AUX_PARAMS_KEYS`.
    """
    if aux_params is None:
        return None
    if not isinstance(aux_params, dict):
        raise TypeError(f"`aux_params` must be a dict with keys {AUX_PARAMS_KEYS} or None, got {aux_params!r}")
    unknown = sorted(set(aux_params) - set(AUX_PARAMS_KEYS))
    if unknown:
        raise TypeError(f"`aux_params` has unknown key(s) {unknown}; valid keys are {AUX_PARAMS_KEYS}")
    if "classes" not in aux_params:
        raise TypeError(f"`aux_params` must give 'classes' (the number of labels), got {aux_params!r}")
    return ClassificationHead(in_channels=in_channels, spatial_dims=spatial_dims, **aux_params)


def check_upsampling(upsampling: Any) -> None:
    """Validate the head's ``upsampling`` factor.

    Raises:
        ValueError: unless it is a number >= 1 (SMP silently treats values below 1 as no up-sampling).
    """
    if (
        isinstance(upsampling, bool)
        or not isinstance(upsampling, (int, float))
        or not 1 <= upsampling < float("inf")  # NaN fails both comparisons; inf has no mask size
    ):
        raise ValueError(f"`upsampling` must be a finite number >= 1 (1 = no up-sampling), got {upsampling!r}")
