"""Gradient (activation) checkpointing for encoder stages and decoder blocks.

A checkpointed block keeps only its inputs during the forward pass and runs its forward again during backward
to rebuild the activations that the gradient needs (Chen et al. 2016, "Training Deep Nets with Sublinear Memory
Cost"), trading about one extra forward pass for the memory of every activation inside the block. Blocks run
through :func:`torch.utils.checkpoint.checkpoint` with ``use_reentrant=False`` (keyword arguments, outputs of any
structure, and inputs that do not require grad all work), only in training mode with autograd on.

Two details keep a checkpointed model identical to the plain one:

- the recomputation does not update BatchNorm running statistics a second time (its momentum is set to 0 and the
  batch counter restored while the block reruns), so running statistics match a model without checkpointing;
- the recomputation runs in a copy of the caller's :mod:`contextvars` context, so a diffusion model's time vector
  (held in a context variable, see ``base/time_conditioning.py``) is seen by the blocks during backward too.

Which modules are "blocks" is found from the module tree, the same way for every encoder and decoder: the
direct sub-modules that hold parameters and are not single layers, with the items of a ``ModuleList`` /
``ModuleDict`` taken one by one, descending through a lone wrapper (e.g. a timm feature extractor).

A module may instead name its own segments in a ``checkpoint_segments`` class attribute: sub-modules (their
forward is checkpointed) or methods (checkpointed as such), in the order its forward runs them. The segments are
where the memory is decided. Two examples:

- A Unet decoder block: at full resolution its largest tensor is the up-sampled input (2x the block's output
  channels), so the block recomputes in two halves: resize + merge + first conv, then the second conv. With the
  whole block as one segment, its recomputation would hold the up-sampled input and the second conv's
  activations at once.
- A ResNet encoder: its stem (conv, BN, ReLU) and the max-pool before layer1 are segments too. Otherwise the
  stem's conv output and the pool's indices, at half and quarter resolution, stay alive until backward.

With them, the peak of a 3D Unet-resnet18 training step at 96^3 is 40 % lower than without checkpointing
(``benchmarks/performance.py``).
"""

import contextlib
import contextvars
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_blocks", "checkpoint_segments", "checkpointed_modules", "set_gradient_checkpointing"]


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


Segment = Tuple[nn.Module, str]  # (owner, "forward" or the name of one of its methods)


def checkpoint_segments(root: nn.Module) -> List[Segment]:
    """What to checkpoint one by one in ``root`` (an encoder or decoder): ``(module, method name)`` pairs.

    Args:
        root: an encoder or decoder.

    Returns:
        The segments in definition order; ``"forward"`` names a whole block.
    """
    declared = _declared_segments(root)
    if declared is not None:
        return declared
    segments: List[Segment] = []
    for child in root.children():
        for item in _callable_items(child):
            declared = _declared_segments(item)
            if declared is not None:
                segments += declared
            # A single layer (no children) saves nothing when checkpointed: its input is kept anyway.
            elif _has_parameters(item) and next(item.children(), None) is not None:
                segments.append((item, "forward"))
    if len(segments) == 1 and segments[0][0] is not root and segments[0][1] == "forward":
        inner = checkpoint_segments(segments[0][0])
        if len(inner) > 1:  # a lone wrapper (a timm FeatureListNet inside the encoder): its stages are the segments
            return inner
    return segments


def checkpoint_blocks(root: nn.Module) -> List[nn.Module]:
    """The modules of ``root`` (an encoder or decoder) whose forward or methods are checkpointed, in order.

    Args:
        root: an encoder or decoder.

    Returns:
        Each module once (a module with several segments appears once).
    """
    return _owners(checkpoint_segments(root))


def _owners(segments: List[Segment]) -> List[nn.Module]:
    """The modules the segments belong to, each once, in order (modules compare by identity)."""
    owners: List[nn.Module] = []
    for module, _ in segments:
        if not any(module is o for o in owners):
            owners.append(module)
    return owners


def _declared_segments(module: nn.Module) -> Optional[List[Segment]]:
    names = getattr(type(module), "checkpoint_segments", None)
    if names is None:
        return None
    segments: List[Segment] = []
    for name in names:
        target = getattr(module, name)
        if isinstance(target, nn.Module):
            segments += _declared_segments(target) or [(target, "forward")]
        else:
            segments.append((module, name))
    return segments


def _callable_items(module: nn.Module) -> List[nn.Module]:
    """``module`` itself, or the items of a (nested) ``ModuleList`` / ``ModuleDict``, which are never called."""
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
        return [item for child in module.children() for item in _callable_items(child)]
    return [module]


class _RecomputeGuard:
    """While a block reruns in backward: BatchNorm running statistics stay as the first pass left them."""

    def __init__(self, module: nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.saved: List[Tuple[Any, Any]] = []

    def __enter__(self) -> None:
        self.saved = []
        for norm in self.norms:
            counter = norm.num_batches_tracked.clone() if norm.num_batches_tracked is not None else None
            self.saved.append((norm.momentum, counter))
            norm.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
        return None

    def __exit__(self, *exc: Any) -> None:
        for norm, (momentum, counter) in zip(self.norms, self.saved):
            norm.momentum = momentum
            if counter is not None:
                norm.num_batches_tracked.copy_(counter)


class _CheckpointedMethod:
    """Stands in for a block's ``forward`` or segment method (an instance attribute): checkpoint it when training
    with grad."""

    def __init__(self, module: nn.Module, name: str = "forward"):
        self.module = module
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self.module
        original = getattr(type(module), self.name).__get__(module)
        if not (module.training and torch.is_grad_enabled()):
            return original(*args, **kwargs)
        context = contextvars.copy_context()

        def run(*inner_args: Any, **inner_kwargs: Any) -> Any:
            return context.run(original, *inner_args, **inner_kwargs)

        def contexts() -> Tuple[Any, Any]:
            return contextlib.nullcontext(), _RecomputeGuard(module)

        return checkpoint(run, *args, use_reentrant=False, context_fn=contexts, **kwargs)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "_CheckpointedMethod":
        import copy

        return _CheckpointedMethod(copy.deepcopy(self.module, memo), self.name)


def _checkpointed_names(module: nn.Module) -> List[str]:
    return [name for name, value in module.__dict__.items() if isinstance(value, _CheckpointedMethod)]


def checkpointed_modules(model: nn.Module) -> Iterator[nn.Module]:
    """The sub-modules of ``model`` whose forward (or one of whose segment methods) is currently checkpointed."""
    return (m for m in model.modules() if _checkpointed_names(m))


def set_gradient_checkpointing(model: nn.Module, enable: bool = True) -> List[nn.Module]:
    """Checkpoint (or stop checkpointing) the encoder stages and decoder blocks of ``model``.

    Args:
        model: a model with ``encoder`` and/or ``decoder`` sub-modules (any architecture of this package).
        enable: True to checkpoint, False to restore plain forwards.

    Returns:
        The modules now checkpointed (empty when disabled).

    Raises:
        TypeError: if ``enable`` is not a bool.
        ValueError: if ``model`` has neither an encoder nor a decoder with blocks.
    """
    if not isinstance(enable, bool):
        raise TypeError(f"`enable` must be True or False, got {enable!r}")
    for module in list(checkpointed_modules(model)):
        for name in _checkpointed_names(module):
            del module.__dict__[name]
    if not enable:
        return []
    segments: List[Segment] = []
    for name in ("encoder", "decoder"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            found = checkpoint_segments(part)
            if name == "decoder" and len(found) > 1:
                # The decoder's last segment runs last, so its backward runs first: recomputing it would rebuild at
                # once the activations it had freed: no memory saved, one more forward of it spent (3D Unet-resnet18,
                # 96^3: 1.33x -> 1.27x the plain step's time at the same peak, benchmarks/performance.py).
                found = found[:-1]
            segments += found
    if not segments:
        raise ValueError(
            f"{type(model).__name__} has no encoder stages or decoder blocks to checkpoint (it needs `encoder` "
            "and/or `decoder` sub-modules with parameters)"
        )
    for module, method in segments:
        # An instance attribute shadows the class's method; nn.Module.__call__ (hooks included) calls forward.
        module.__dict__[method] = _CheckpointedMethod(module, method)
    return _owners(segments)
