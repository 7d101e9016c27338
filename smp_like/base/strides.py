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


def padded_size(spatial_shape: Sequence[int], stride: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    """Each size rounded up to a multiple of ``stride`` (one int, or one per spatial axis)."""
    return tuple(size + pad for size, pad in zip(spatial_shape, padding_for_stride(spatial_shape, stride)))


def pad_to_size(x: torch.Tensor, target: Sequence[int], mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of a channels-first batch at their end up to ``target`` sizes.

    Raises:
        ValueError: for an unknown mode, a target smaller than the input, or an input too small for
            ``reflect``/``circular`` padding (F.pad would fail deep inside with an unhelpful message).
    """
    if mode not in PAD_MODES:
        raise ValueError(f"`mode` must be one of {PAD_MODES}, got {mode!r}")
    spatial = tuple(x.shape[2:])
    pads = [t - s for s, t in zip(spatial, target)]
    tracing = torch.compiler.is_compiling()
    if not tracing:
        if any(p < 0 for p in pads):
            raise ValueError(f"cannot pad spatial size {spatial} to the smaller {tuple(target)}")
        if mode in ("reflect", "circular") and any(p >= s for p, s in zip(pads, spatial) if p > 0):
            raise ValueError(
                f"input of spatial size {spatial} is too small to pad to {tuple(target)} with mode {mode!r}; "
                "use 'constant' or 'replicate', or pad the input yourself"
            )
        # Skip the copy when nothing is to pad, except while tracing, where sizes may be symbolic and a branch
        # on them would specialise the graph (padding by zero is exact).
        if not any(pads):
            return x
    # F.pad wants (last_lo, last_hi, second_last_lo, ...): pad only at the end so cropping is a plain slice.
    flat = []
    for pad in reversed(pads):
        flat += [0, pad]
    if mode == "constant":
        return F.pad(x, flat, mode=mode, value=value)
    return F.pad(x, flat, mode=mode)


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
        ValueError: for a tensor with fewer than 3 dims, a bad stride, an unknown mode or an input too small
            for the mode.
    """
    if x.dim() < 3:
        raise ValueError(f"`x` must have shape (N, C, *spatial), got {tuple(x.shape)}")
    if mode not in PAD_MODES:
        raise ValueError(f"`mode` must be one of {PAD_MODES}, got {mode!r}")
    spatial = tuple(x.shape[2:])
    return pad_to_size(x, padded_size(spatial, stride), mode=mode, value=value), spatial


def crop_to_shape(y: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing spatial axes of ``y`` back to ``spatial_shape`` (undoes :func:`pad_to_stride`).

    Args:
        y: a tensor ``(N, C, *spatial)`` at least ``spatial_shape`` large.
        spatial_shape: the spatial size to keep (from the start of each axis).

    Returns:
        A view of ``y`` with spatial size ``spatial_shape``.
    """
    spatial_shape = tuple(spatial_shape)
    tracing = torch.compiler.is_compiling()
    if y.dim() < len(spatial_shape):
        raise ValueError(f"cannot crop tensor of shape {tuple(y.shape)} to spatial shape {spatial_shape}")
    # While tracing, sizes are symbolic and a Python comparison would become a guard that the shape solver
    # cannot always prove (e.g. 8*ceil(H/8) >= H through a head that upsamples by 8); index_select still fails
    # at run time if the tensor were too small.
    if not tracing and any(a < b for a, b in zip(y.shape[-len(spatial_shape):], spatial_shape)):
        raise ValueError(f"cannot crop tensor of shape {tuple(y.shape)} to spatial shape {spatial_shape}")
    first = y.dim() - len(spatial_shape)
    for axis, size in enumerate(spatial_shape):
        if tracing:
            # Slicing and narrow short-cut a full-size crop, which makes torch.export guard on "padded size ==
            # size" and so fixes dynamic sizes; a gather by index has no such branch.
            y = y.index_select(first + axis, torch.arange(size, device=y.device))
        else:
            y = y.narrow(first + axis, 0, size)
    return y
