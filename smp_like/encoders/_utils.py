"""Weight surgery shared by encoders: first-conv adaptation, dilation, 2D -> 3D kernel inflation."""

from typing import Dict, Iterable, Sequence, Union

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
