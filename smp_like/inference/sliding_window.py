"""Sliding-window inference over 2D images and 3D volumes of any size.

The input is covered by a regular grid of windows of ``roi_size`` that overlap by ``overlap`` (a fraction of the
window); windows run through the model in batches of ``sw_batch_size`` and their outputs are blended into one
output with per-pixel weights (constant, or a Gaussian that trusts window centres more than borders), then divided
by the summed weights.

The names, defaults and results follow MONAI's ``monai.inferers.sliding_window_inference`` (a test checks equality
to 1e-5), so MONAI users can switch by renaming the call:

=====================================  ==========================================
MONAI ``sliding_window_inference``      ``smp_like.inference.sliding_window``
=====================================  ==========================================
``inputs``                             ``inputs`` (second argument)
``predictor``                          ``model`` (first argument)
``roi_size``, ``sw_batch_size``        same
``overlap``, ``mode``, ``sigma_scale``  same (same defaults)
``padding_mode``, ``cval``              same
``sw_device``, ``device``, ``progress``  same (``progress`` may also be a tqdm bar)
=====================================  ==========================================

Differences: window positions are generated lazily and the weight sum is accumulated in place, so memory for an
image is the output plus one weight map and one window batch, whatever the number of windows; ``model`` may return
a tuple (e.g. ``(mask, label)`` with ``aux_params``), of which the first element is blended.
"""

import itertools
import math
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ["sliding_window", "importance_map", "window_starts", "count_windows"]

BLEND_MODES: Tuple[str, ...] = ("constant", "gaussian")
PADDING_MODES: Tuple[str, ...] = ("constant", "reflect", "replicate", "circular")

# MONAI clamps Gaussian weights from below at max(min weight, 1e-3): border pixels of a window still count a little,
# so pixels covered only by window borders (image corners) are not divided by ~0.
_MIN_WEIGHT = 1e-3


def _per_axis(value: Any, n: int, name: str) -> Tuple[Any, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value,) * n
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a number or a sequence of {n} numbers, got {value!r}") from None
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"`{name}` must have one value per spatial axis ({n}), got {value!r}")
    return values


def importance_map(
    roi_size: Sequence[int],
    mode: str = "constant",
    sigma_scale: Union[float, Sequence[float]] = 0.125,
    device: Union[str, torch.device, None] = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Blending weight of each pixel of a window.

    ``"constant"``: all ones. ``"gaussian"``: the separable product over axes of
    ``exp(-(i - (n - 1) / 2)^2 / (2 (sigma_scale * n)^2))`` for ``i = 0 .. n-1``, clamped from below at
    ``max(min weight, 1e-3)`` (MONAI's ``compute_importance_map``).

    Args:
        roi_size: window size per spatial axis.
        mode: ``"constant"`` or ``"gaussian"``.
        sigma_scale: Gaussian standard deviation as a fraction of the window size (one value or one per axis).
        device: where to build the map.
        dtype: its dtype.

    Returns:
        A tensor of shape ``roi_size``.

    Raises:
        ValueError: for an unknown mode or a non-positive ``sigma_scale``.
    """
    roi = tuple(int(r) for r in roi_size)
    if mode not in BLEND_MODES:
        raise ValueError(f"`mode` must be one of {BLEND_MODES}, got {mode!r}")
    if mode == "constant":
        return torch.ones(roi, device=device, dtype=dtype)
    sigmas = _per_axis(sigma_scale, len(roi), "sigma_scale")
    if any(float(s) <= 0 for s in sigmas):
        raise ValueError(f"`sigma_scale` must be > 0, got {sigma_scale!r}")
    weights = torch.ones((), device=device, dtype=torch.float32)
    for axis, (size, scale) in enumerate(zip(roi, sigmas)):
        offsets = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2.0
        profile = torch.exp(-(offsets**2) / (2.0 * (float(scale) * size) ** 2))
        weights = weights.unsqueeze(-1) * profile.view((1,) * axis + (size,))
    floor = max(float(weights.min()), _MIN_WEIGHT)
    return weights.clamp_(min=floor).to(dtype)


def window_starts(size: int, roi: int, overlap: float) -> List[int]:
    """Start offsets of the windows along one axis of length ``size`` (already padded to at least ``roi``).

    Windows step by ``int(roi * (1 - overlap))`` (at least 1) and the last one is shifted back to end at the border,
    so every pixel is covered and no window leaves the image.

    Args:
        size: length of the axis.
        roi: window length along it.
        overlap: fraction of the window shared by neighbours, in [0, 1).

    Returns:
        The start offsets, increasing.
    """
    if roi >= size:
        return [0]
    step = max(int(roi * (1.0 - overlap)), 1)
    count = -(-(size - roi) // step) + 1
    return [min(i * step, size - roi) for i in range(count)]


def _grid(
    spatial: Sequence[int], roi_size: Any, overlap: Any
) -> Tuple[Tuple[int, ...], Tuple[int, ...], List[List[int]]]:
    """Window size (``roi_size`` with non-positive entries replaced by the image size), the padded size and the
    per-axis window starts."""
    n = len(spatial)
    roi_raw = _per_axis(roi_size, n, "roi_size")
    roi: List[int] = []
    for value, size in zip(roi_raw, spatial):
        if value is None or (not isinstance(value, bool) and isinstance(value, int) and value <= 0):
            roi.append(int(size))  # MONAI: a non-positive entry means "the whole axis"
        elif isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`roi_size` entries must be ints, got {roi_size!r}")
        else:
            roi.append(value)
    overlaps = _per_axis(overlap, n, "overlap")
    for value in overlaps:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise ValueError(f"`overlap` must be in [0, 1), got {overlap!r}")
    padded = tuple(max(s, r) for s, r in zip(spatial, roi))
    starts = [window_starts(p, r, float(o)) for p, r, o in zip(padded, roi, overlaps)]
    return tuple(roi), padded, starts


def count_windows(spatial_size: Sequence[int], roi_size: Any, overlap: Any = 0.25) -> int:
    """How many windows :func:`sliding_window` runs for one image of ``spatial_size`` (for progress bars).

    Args:
        spatial_size: the image's spatial size.
        roi_size: window size (an int for every axis, or one per axis), as in :func:`sliding_window`.
        overlap: overlap (one value, or one per axis).

    Returns:
        The number of windows.
    """
    _, _, starts = _grid(tuple(int(s) for s in spatial_size), roi_size, overlap)
    return math.prod(len(s) for s in starts)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"the model must return a tensor or a tuple whose first element is one, got {type(output).__name__}"
        )
    return output


def _scaled(index: int, scale: float) -> int:
    return int(index * scale)


def sliding_window(
    model: Callable[[torch.Tensor], Any],
    inputs: torch.Tensor,
    roi_size: Union[int, Sequence[int]],
    overlap: Union[float, Sequence[float]] = 0.25,
    sw_batch_size: int = 4,
    mode: str = "constant",
    sigma_scale: Union[float, Sequence[float]] = 0.125,
    padding_mode: str = "constant",
    cval: float = 0.0,
    sw_device: Union[str, torch.device, None] = None,
    device: Union[str, torch.device, None] = None,
    progress: Any = False,
) -> torch.Tensor:
    """Run ``model`` over overlapping windows of ``inputs`` and blend the outputs.

    Inputs smaller than the window along an axis are padded symmetrically (``padding_mode``, ``cval``) and the
    output is cropped back. Outputs may have any number of channels and another resolution than the window (a
    model whose mask is 1/4 or 4x its input): the scale is read from the first window batch, as MONAI does, and the
    output has ``int(size * scale)`` pixels per axis.

    The model runs under the caller's grad mode and train/eval state: wrap the call in ``torch.inference_mode()``
    and call ``model.eval()`` for prediction (validation loops usually do both already).

    Args:
        model: a module or callable taking ``(B, C, *roi_size)`` and returning ``(B, K, *roi_size * scale)``, or a
            tuple whose first element is that (e.g. ``(mask, label)``).
        inputs: ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        roi_size: window size, one int or one per spatial axis; non-positive entries take the whole axis.
        overlap: fraction of the window shared by neighbours, in [0, 1) (one value or one per axis).
        sw_batch_size: windows per model call.
        mode: ``"constant"`` (plain average) or ``"gaussian"`` (window centres weigh more; see
            :func:`importance_map`).
        sigma_scale: Gaussian standard deviation as a fraction of the window size.
        padding_mode: ``"constant"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` for inputs smaller than
            the window.
        cval: fill value for ``padding_mode="constant"``.
        sw_device: where windows run (default: the input's device), e.g. ``"cuda"`` for a volume kept on the CPU.
        device: where the output is accumulated (default: the input's device).
        progress: True for a tqdm bar over windows, or an object with ``update(n)`` (a shared bar).

    Returns:
        ``(N, K, *spatial * scale)`` in float32 (float64 if the model returns float64), on ``device``.

    Raises:
        TypeError: for a non-tensor input or model output.
        ValueError: for a wrong rank, bad ``roi_size``/``overlap``/``sw_batch_size``/``mode``/``padding_mode``, or
            window outputs whose size changes from batch to batch.
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"`inputs` must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.ndim not in (3, 4, 5):
        raise ValueError(f"`inputs` must be (N, C, *spatial) with 1 to 3 spatial axes, got shape {tuple(inputs.shape)}")
    if isinstance(sw_batch_size, bool) or not isinstance(sw_batch_size, int) or sw_batch_size < 1:
        raise ValueError(f"`sw_batch_size` must be a positive int, got {sw_batch_size!r}")
    if mode not in BLEND_MODES:
        raise ValueError(f"`mode` must be one of {BLEND_MODES}, got {mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"`padding_mode` must be one of {PADDING_MODES}, got {padding_mode!r}")

    spatial = tuple(int(s) for s in inputs.shape[2:])
    roi, padded, starts = _grid(spatial, roi_size, overlap)
    n_dims = len(spatial)
    # Symmetric padding, the smaller half first (MONAI's split). Only axes where the window exceeds the image are
    # padded; there a window spans the whole axis, so padding each window cut equals padding the image.
    pad_before = tuple((p - s) // 2 for p, s in zip(padded, spatial))
    sw_device = torch.device(sw_device) if sw_device is not None else inputs.device
    device = torch.device(device) if device is not None else inputs.device
    batch = inputs.shape[0]
    num_windows = math.prod(len(s) for s in starts)

    bar, owns_bar = None, False
    if progress is True:
        from tqdm.auto import tqdm

        bar, owns_bar = tqdm(total=batch * num_windows, desc="windows", unit="win"), True
    elif progress is not False and progress is not None:
        bar = progress

    def windows() -> Iterator[Tuple[int, Tuple[int, ...]]]:
        # Lazily: a list of every window would grow with the image.
        for n in range(batch):
            for origin in itertools.product(*starts):
                yield n, origin

    def cut(n: int, origin: Tuple[int, ...]) -> torch.Tensor:
        region = [slice(n, n + 1), slice(None)]
        pads: List[int] = []
        for o, r, before, size in zip(origin, roi, pad_before, spatial):
            lo, hi = o - before, o - before + r
            region.append(slice(max(lo, 0), min(hi, size)))
            pads.append((max(-lo, 0), max(hi - size, 0)))
        window = inputs[tuple(region)]
        flat = [v for pair in reversed(pads) for v in pair]  # F.pad lists the last axis first
        if any(flat):
            window = F.pad(window, flat, mode=padding_mode, value=cval) if padding_mode == "constant" else F.pad(
                window, flat, mode=padding_mode
            )
        return window

    output: Optional[torch.Tensor] = None
    weights: Optional[torch.Tensor] = None
    scale: Tuple[float, ...] = (1.0,) * n_dims
    out_window: Tuple[int, ...] = ()
    try:
        source = windows()
        while True:
            chunk = list(itertools.islice(source, sw_batch_size))
            if not chunk:
                break
            window_batch = torch.cat([cut(n, origin) for n, origin in chunk]).to(sw_device)
            pred = _first_tensor(model(window_batch))
            if pred.ndim != inputs.ndim or pred.shape[0] != len(chunk):
                raise ValueError(
                    f"the model returned shape {tuple(pred.shape)} for windows of shape {tuple(window_batch.shape)}; "
                    "expected (batch, channels, *spatial) with the same batch and number of spatial axes"
                )
            if output is None:
                out_window = tuple(int(s) for s in pred.shape[2:])
                scale = tuple(o / r for o, r in zip(out_window, roi))
                dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
                out_size = tuple(_scaled(p, z) for p, z in zip(padded, scale))
                output = torch.zeros((batch, pred.shape[1]) + out_size, dtype=dtype, device=device)
                weights = importance_map(roi, mode, sigma_scale, device=sw_device, dtype=dtype)[None, None]
                if out_window != roi:
                    weights = F.interpolate(weights, size=out_window, mode="nearest-exact")
                weights = weights.to(device)
            elif tuple(pred.shape[2:]) != out_window:
                raise ValueError(
                    f"window outputs changed size from {out_window} to {tuple(pred.shape[2:])}; the model must map "
                    "every window to the same size"
                )
            pred = pred.to(device=device, dtype=output.dtype)
            for k, (n, origin) in enumerate(chunk):
                target = output[(slice(n, n + 1), slice(None)) + _out_region(origin, roi, scale)]
                target.addcmul_(pred[k : k + 1], weights)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if owns_bar:
            bar.close()
    assert output is not None and weights is not None
    _divide_by_weight_sum(output, weights, starts, roi, scale)
    if any(p != s for p, s in zip(padded, spatial)):
        crop = tuple(
            slice(int(round(before * z)), int(round((before + s) * z)))
            for before, s, z in zip(pad_before, spatial, scale)
        )
        output = output[(slice(None), slice(None)) + crop]
    return output


def _divide_by_weight_sum(
    output: torch.Tensor, weights: torch.Tensor, starts: List[List[int]], roi: Sequence[int], scale: Sequence[float]
) -> None:
    """Divide ``output`` in place by the sum of the window weights covering each pixel.

    The sum is built one stripe (one window height along the first axis) at a time, never for the whole image: it
    is the same for every image of the batch, and a full map would cost as much memory as one output channel.
    Windows are added in grid order, so each pixel's sum is the same float sum as a full map would hold.
    """
    out_size = tuple(output.shape[2:])
    rows = [(_scaled(s, scale[0]), _scaled(s + roi[0], scale[0])) for s in starts[0]]
    height = max(hi - lo for lo, hi in rows)
    for top in range(0, out_size[0], height):
        bottom = min(top + height, out_size[0])
        stripe = torch.zeros((1, 1, bottom - top) + out_size[1:], dtype=output.dtype, device=output.device)
        for start, (lo, hi) in zip(starts[0], rows):
            a, b = max(lo, top), min(hi, bottom)
            if a >= b:
                continue
            part = weights[:, :, a - lo : b - lo]
            for rest in itertools.product(*starts[1:]):
                region = _out_region(rest, roi[1:], scale[1:])
                stripe[(slice(None), slice(None), slice(a - top, b - top)) + region] += part
        output[:, :, top:bottom] /= stripe


def _out_region(origin: Sequence[int], roi: Sequence[int], scale: Sequence[float]) -> Tuple[slice, ...]:
    return tuple(slice(_scaled(o, z), _scaled(o + r, z)) for o, r, z in zip(origin, roi, scale))
