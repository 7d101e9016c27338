"""Stride bookkeeping (after SLEAP's encoder-decoder): pad a batch to a multiple of a stride, crop outputs back."""

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

PAD_MODES = ("constant", "reflect", "replicate", "circular")


def padding_for_stride(spatial_shape: Sequence[int], stride: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    """Amount to add at the end of each spatial axis so every size becomes a multiple of ``stride``."""
    strides = (stride,) * len(spatial_shape) if isinstance(stride, int) else tuple(stride)
    if len(strides) != len(spatial_shape) or any(s < 1 for s in strides):
        raise ValueError(f"`stride` must be a positive int or one per spatial axis, got {stride!r}")
    return tuple((-size) % s for size, s in zip(spatial_shape, strides))


def pad_to_stride(
    x: torch.Tensor, stride: Union[int, Sequence[int]], mode: str = "constant", value: float = 0.0
) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """Pad the spatial axes of a channels-first batch at their end so each is a multiple of ``stride``.

    Args:
        x: tensor of shape (N, C, *spatial).
        stride: one int for all axes or one per spatial axis (e.g. ``model.output_stride``).
        mode: ``F.pad`` mode, one of :data:`PAD_MODES`.
        value: fill value for ``mode="constant"``.

    Returns:
        The padded tensor and the original spatial shape (pass it to :func:`crop_to_shape`).

    Raises:
        ValueError: for a tensor with fewer than 3 dims, a bad stride or an unknown mode.
    """
    if x.dim() < 3:
        raise ValueError(f"`x` must have shape (N, C, *spatial), got {tuple(x.shape)}")
    if mode not in PAD_MODES:
        raise ValueError(f"`mode` must be one of {PAD_MODES}, got {mode!r}")
    spatial = tuple(x.shape[2:])
    pads = padding_for_stride(spatial, stride)
    # Skip the copy when nothing is to pad, except while tracing, where sizes may be symbolic and a branch on
    # them would specialise the graph (F.pad with zero amounts is exact).
    if not torch.compiler.is_compiling() and not any(pads):
        return x, spatial
    # F.pad wants (last_lo, last_hi, second_last_lo, ...): pad only at the end so cropping is a plain slice.
    flat = []
    for p in reversed(pads):
        flat += [0, p]
    if mode == "constant":
        return F.pad(x, flat, mode=mode, value=value), spatial
    return F.pad(x, flat, mode=mode), spatial


def crop_to_shape(y: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing spatial axes of ``y`` back to ``spatial_shape`` (undoes :func:`pad_to_stride`)."""
    spatial_shape = tuple(spatial_shape)
    if y.dim() < len(spatial_shape) or any(a < b for a, b in zip(y.shape[-len(spatial_shape):], spatial_shape)):
        raise ValueError(f"cannot crop tensor of shape {tuple(y.shape)} to spatial shape {spatial_shape}")
    first = y.dim() - len(spatial_shape)
    tracing = torch.compiler.is_compiling()
    for axis, size in enumerate(spatial_shape):
        if tracing:
            # Slicing and narrow short-cut a full-size crop, which makes torch.export guard on "padded size ==
            # size" and so fixes dynamic sizes; a gather by index has no such branch.
            y = y.index_select(first + axis, torch.arange(size, device=y.device))
        else:
            y = y.narrow(first + axis, 0, size)
    return y
