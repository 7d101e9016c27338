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
"""

import contextlib
import contextvars
from typing import Any, Dict, Iterator, List, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_blocks", "checkpointed_modules", "set_gradient_checkpointing"]

_ATTRIBUTE = "_checkpointed_forward"


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def checkpoint_blocks(root: nn.Module) -> List[nn.Module]:
    """The blocks of ``root`` (an encoder or decoder) to checkpoint one by one, in definition order."""
    blocks: List[nn.Module] = []
    for child in root.children():
        for item in _callable_items(child):
            # A single layer (no children) saves nothing when checkpointed: its input is kept anyway.
            if _has_parameters(item) and next(item.children(), None) is not None:
                blocks.append(item)
    if len(blocks) == 1 and blocks[0] is not root and len(checkpoint_blocks(blocks[0])) > 1:
        # A lone wrapper (a timm FeatureListNet inside the encoder): its own stages are the blocks.
        return checkpoint_blocks(blocks[0])
    return blocks


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


class _CheckpointedForward:
    """Stands in for a block's ``forward`` (an instance attribute): checkpoint it when training with grad."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module = self.module
        original = type(module).forward.__get__(module)
        if not (module.training and torch.is_grad_enabled()):
            return original(*args, **kwargs)
        context = contextvars.copy_context()

        def run(*inner_args: Any, **inner_kwargs: Any) -> Any:
            return context.run(original, *inner_args, **inner_kwargs)

        def contexts() -> Tuple[Any, Any]:
            return contextlib.nullcontext(), _RecomputeGuard(module)

        return checkpoint(run, *args, use_reentrant=False, context_fn=contexts, **kwargs)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "_CheckpointedForward":
        import copy

        return _CheckpointedForward(copy.deepcopy(self.module, memo))


def checkpointed_modules(model: nn.Module) -> Iterator[nn.Module]:
    """The sub-modules of ``model`` whose forward is currently checkpointed."""
    return (m for m in model.modules() if isinstance(m.__dict__.get("forward"), _CheckpointedForward))


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
        del module.__dict__["forward"]
    if not enable:
        return []
    blocks: List[nn.Module] = []
    for name in ("encoder", "decoder"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            blocks += checkpoint_blocks(part)
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no encoder stages or decoder blocks to checkpoint (it needs `encoder` "
            "and/or `decoder` sub-modules with parameters)"
        )
    for block in blocks:
        # An instance attribute shadows the class's forward; nn.Module.__call__ (hooks included) calls it.
        block.__dict__["forward"] = _CheckpointedForward(block)
    return blocks
