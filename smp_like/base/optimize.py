"""``optimize_for_inference``: a faster copy of a model for the same weights (BatchNorm folding, channels-last,
optional ``torch.compile``).

The copy is for inference only: its BatchNorms are folded into the preceding convolutions, so its weights are no
longer the model's weights. It therefore refuses ``save_pretrained`` / ``push_to_hub`` (save the original model).
"""

import copy
import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from smp_like.base.fusion import fold_batch_norms

__all__ = ["OPTIMIZED_FLAG", "channels_last_helps", "check_not_optimized", "optimize_for_inference"]

# Set on every copy optimize_for_inference returns.
OPTIMIZED_FLAG = "_optimized_for_inference"


def check_not_optimized(model: Any, action: str = "save_pretrained") -> None:
    """Refuse ``action`` on a copy made by :func:`optimize_for_inference`.

    Raises:
        RuntimeError: if ``model`` is such a copy.
    """
    info = getattr(model, OPTIMIZED_FLAG, None)
    if info:
        raise RuntimeError(
            f"{action} refused: this {type(model).__name__} was made by smp_like.optimize_for_inference "
            f"({info}); its weights are not the model's own weights (BatchNorms are folded into the convolutions), "
            "and saving them as the model would corrupt it. Save the original model you optimized instead."
        )


class _Refusal:
    """Instance-level ``save_pretrained`` / ``push_to_hub`` of an optimized copy: always refuses."""

    def __init__(self, model: nn.Module, action: str):
        self._model = model
        self._action = action

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        check_not_optimized(self._model, self._action)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "_Refusal":
        return _Refusal(copy.deepcopy(self._model, memo), self._action)


def channels_last_helps(device: torch.device, spatial_dims: int) -> bool:
    """Whether channels-last memory format speeds up convolutions on ``device``.

    CUDA (cuDNN) and CPU (oneDNN) have native NHWC convolution kernels for 4D tensors; for 5D (3D) tensors only
    cuDNN's are faster, on CPU the NDHWC path is not (measured in benchmarks/fast_path_results.md), so 3D models
    stay channels-first there.
    """
    if device.type == "cuda":
        return spatial_dims in (2, 3)
    if device.type == "cpu":
        return spatial_dims == 2 and torch.backends.mkldnn.is_available()
    return False


def _memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def _to_memory_format(module: nn.Module, inputs: Tuple[Any, ...], memory_format: torch.memory_format) -> Tuple:
    rank = 4 if memory_format == torch.channels_last else 5
    return tuple(
        x.contiguous(memory_format=memory_format) if isinstance(x, torch.Tensor) and x.dim() == rank else x
        for x in inputs
    )


def _contiguous_outputs(module: nn.Module, inputs: Any, output: Any) -> Any:
    """Return channels-first outputs, as the eager model does (callers may ``.view`` them)."""
    if isinstance(output, torch.Tensor):
        return output.contiguous()
    if isinstance(output, tuple):
        return tuple(_contiguous_outputs(module, inputs, o) for o in output)
    if isinstance(output, list):
        return [_contiguous_outputs(module, inputs, o) for o in output]
    return output


def _example_input(model: nn.Module, device: torch.device, dtype: torch.dtype) -> Tuple[Tuple, Dict]:
    """A small valid input for one tracing pass of a segmentation model (its own channels, dims and stride)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(model, "spatial_dims"):
        raise ValueError(
            f"optimize_for_inference cannot make an example input for {type(model).__name__}: pass "
            "`example_inputs=(tensor,)` (an input the model accepts)"
        )
    dims = model.spatial_dims
    stride = getattr(model, "input_stride", None) or getattr(encoder, "output_stride", None) or 32
    strides = (stride,) * dims if isinstance(stride, int) else tuple(stride)
    minimum = max(getattr(model, "min_input_size", 1), 1)
    # Two strides per axis: every stage sees more than one pixel, so the graph is the one real inputs take.
    size = [max(2 * s, minimum) if dims == 2 else max(s, minimum) for s in strides]
    x = torch.randn(1, encoder.in_channels, *size, device=device, dtype=dtype)
    kwargs: Dict[str, Any] = {}
    if getattr(model, "_modules", {}).get("time_embedding") is not None:
        kwargs["timesteps"] = torch.zeros(1, dtype=torch.long, device=device)
    return (x,), kwargs


def optimize_for_inference(
    model: nn.Module,
    channels_last: bool = True,
    fuse: bool = True,
    compile: bool = False,
    example_inputs: Optional[Sequence[Any]] = None,
    compile_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """An inference-only copy of ``model`` that computes the same outputs faster; ``model`` is left untouched.

    Args:
        model: a model of this package (any segmentation architecture, 2D or 3D) or any ``nn.Module`` given
            ``example_inputs``.
        channels_last: use channels-last memory format (weights and inputs) where it helps on the model's device
            (see :func:`channels_last_helps`); outputs are returned channels-first as before.
        fuse: fold every eval-mode BatchNorm into the convolution before it (1D/2D/3D, native, timm and Flemme
            encoders and every decoder; see :mod:`smp_like.base.fusion`).
        compile: wrap the copy with ``torch.compile`` (``compile_kwargs`` are passed on).
        example_inputs: positional arguments of one forward call used to find the conv/BN pairs (default: a small
            random input of the model's channels, dimensions and stride).
        compile_kwargs: keyword arguments for ``torch.compile``.

    Returns:
        The optimized copy, in eval mode (a ``torch.compile`` wrapper around it with ``compile=True``). Its
        ``save_pretrained`` and ``push_to_hub`` raise ``RuntimeError``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or a flag is not a bool.
        ValueError: if no example input can be made and none is given.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    for name, value in (("channels_last", channels_last), ("fuse", fuse), ("compile", compile)):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be True or False, got {value!r}")
    optimized = copy.deepcopy(model).eval()
    parameter = next(optimized.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    steps = []
    if fuse:
        if example_inputs is None:
            args, kwargs = _example_input(optimized, device, dtype)
        else:
            args, kwargs = tuple(example_inputs), {}
        pairs = fold_batch_norms(optimized, *args, **kwargs)
        steps.append(f"{len(pairs)} BatchNorm(s) folded")
    spatial_dims = getattr(optimized, "spatial_dims", 2)
    if channels_last and channels_last_helps(device, spatial_dims):
        memory_format = _memory_format(spatial_dims)
        optimized = optimized.to(memory_format=memory_format)
        optimized.register_forward_pre_hook(functools.partial(_to_memory_format, memory_format=memory_format))
        optimized.register_forward_hook(_contiguous_outputs)
        steps.append("channels-last")
    for param in optimized.parameters():
        param.requires_grad_(False)  # inference only: no autograd bookkeeping even outside no_grad
    object.__setattr__(optimized, OPTIMIZED_FLAG, ", ".join(steps) or "no change")
    for action in ("save_pretrained", "push_to_hub"):
        if hasattr(optimized, action):
            object.__setattr__(optimized, action, _Refusal(optimized, action))
    if compile:
        return torch.compile(optimized, **(compile_kwargs or {}))
    return optimized
