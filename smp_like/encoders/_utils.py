"""Weight surgery shared by encoders: first-conv adaptation, dilation, 2D -> 3D kernel inflation."""

from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd


def _first_conv(model: nn.Module, in_channels: int) -> _ConvNd:
    for module in model.modules():
        if isinstance(module, _ConvNd) and module.in_channels == in_channels:
            return module
    raise ValueError(f"{type(model).__name__} has no convolution with {in_channels} input channels to adapt")


@torch.no_grad()
def patch_first_conv(model: nn.Module, old_in_channels: int, new_in_channels: int, pretrained: bool = True) -> None:
    """Change the first conv taking ``old_in_channels`` to take ``new_in_channels``, in place."""
    conv = _first_conv(model, old_in_channels)
    weight = conv.weight.detach()
    conv.in_channels = new_in_channels
    new_shape = (weight.shape[0], new_in_channels // conv.groups, *weight.shape[2:])
    if not pretrained:
        conv.weight = nn.Parameter(torch.empty(new_shape, dtype=weight.dtype, device=weight.device))
        conv.reset_parameters()
        return
    if new_in_channels == 1:
        new_weight = weight.sum(dim=1, keepdim=True)
    else:
        index = torch.arange(new_in_channels, device=weight.device) % old_in_channels
        new_weight = weight[:, index] * (old_in_channels / new_in_channels)
    conv.weight = nn.Parameter(new_weight.contiguous())


def replace_strides_with_dilation(stage: Union[nn.Module, Sequence[nn.Module]], rate: int) -> None:
    """Set stride 1 and dilation ``rate`` (with matching padding) on every conv of ``stage``."""
    modules: Iterable[nn.Module] = stage if isinstance(stage, (list, tuple)) else [stage]
    for top in modules:
        for module in top.modules():
            if isinstance(module, _ConvNd):
                dims = len(module.kernel_size)
                module.stride = (1,) * dims
                module.dilation = (rate,) * dims
                module.padding = tuple((k // 2) * rate for k in module.kernel_size)


def inflate_state_dict(state_dict: Dict[str, torch.Tensor], target: nn.Module) -> Dict[str, torch.Tensor]:
    """Inflate 2D kernels in ``state_dict`` to the 3D shapes of ``target``'s parameters.

    A 2D kernel ``w`` of size k×k becomes a k'×k×k kernel whose slices are ``w / k'`` (I3D inflation,
    Carreira & Zisserman 2017, sec. 2.3): a volume made of identical slices then gives the 2D response.
    """
    expected = target.state_dict()
    inflated = {}
    for key, value in state_dict.items():
        goal = expected.get(key)
        if goal is not None and value.dim() + 1 == goal.dim() and value.dim() >= 3:
            depth = goal.shape[2]
            value = value.unsqueeze(2).repeat_interleave(depth, dim=2) / depth
        inflated[key] = value
    return inflated


StageStrides = Tuple[Tuple[int, ...], ...]


def normalize_stage_strides(
    strides: Optional[Sequence[Union[int, Sequence[int]]]], spatial_dims: int, num_stages: int = 5
) -> StageStrides:
    """Per-stage, per-axis down-sampling factors of an encoder, validated.

    ``None`` means the usual factor 2 on every axis of every stage. Otherwise one entry per stage, each an int
    (same on all axes) or one int per spatial axis, e.g. ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice
    volumes whose depth axis should be down-sampled only three times.

    Raises:
        ValueError: for a wrong number of stages, a wrong number of axes or a factor other than 1 or 2.
    """
    if strides is None:
        return ((2,) * spatial_dims,) * num_stages
    if isinstance(strides, (str, bytes)) or not isinstance(strides, Sequence) or len(strides) != num_stages:
        raise ValueError(
            f"`strides` must be a sequence of {num_stages} per-stage strides (each an int or one int per spatial "
            f"axis), got {strides!r}"
        )
    result = []
    for stage, stride in enumerate(strides, start=1):
        axes = (stride,) * spatial_dims if isinstance(stride, int) else tuple(stride)
        if len(axes) != spatial_dims or any(isinstance(s, bool) or s not in (1, 2) for s in axes):
            raise ValueError(
                f"`strides` entry for stage {stage} must be 1, 2 or a tuple of {spatial_dims} values in (1, 2), "
                f"got {stride!r}"
            )
        result.append(axes)
    return tuple(result)


def as_conv_stride(stride: Tuple[int, ...]) -> Union[int, Tuple[int, ...]]:
    """An int when all axes agree (keeps module reprs and SMP equality), else the per-axis tuple."""
    return stride[0] if len(set(stride)) == 1 else stride
