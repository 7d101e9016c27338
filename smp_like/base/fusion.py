"""Fold eval-mode BatchNorm layers into the convolution that feeds them.

For a convolution ``y = W * x + b`` followed by an eval-mode BatchNorm with running statistics ``(mu, var)``,
affine ``(gamma, beta)`` and ``eps`` (Ioffe & Szegedy 2015, Alg. 2, inference form)::

    BN(y) = gamma * (y - mu) / sqrt(var + eps) + beta = W' * x + b'
    with  s = gamma / sqrt(var + eps),  W' = s[o] * W[o],  b' = s * (b - mu) + beta

so the pair becomes one convolution with the same output. Which pairs may be folded is found from what the
network actually does, not from module names: one forward pass records every convolution whose output tensor is
passed, unchanged, straight into a BatchNorm, and the autograd graph of that pass confirms that this output has no
other consumer (a residual or a hook that also reads the pre-norm value would make folding wrong). This covers
``nn.Sequential(conv, bn, act)`` blocks, ResNet-style ``conv1``/``bn1`` attribute pairs, timm's ``ConvNormAct`` and
``BatchNormAct2d`` (whose dropout + activation are kept), the Flemme encoders, in 1D, 2D and 3D, without a table of
known layer names.
"""

from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["find_conv_bn_pairs", "fold_batch_norms", "fuse_conv_bn_weights"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _is_foldable_norm(module: nn.Module) -> bool:
    """An eval-mode BatchNorm that normalises with stored running statistics (so it is an affine map)."""
    return (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not module.training
        and module.running_mean is not None
        and module.running_var is not None
    )


def _is_foldable_conv(module: nn.Module) -> bool:
    if not isinstance(module, _CONVS):
        return False
    # A transposed conv stores weights as (in, out / groups, ...): only groups=1 keeps output channels on axis 1.
    return not (isinstance(module, nn.modules.conv._ConvTransposeNd) and module.groups != 1)


@torch.no_grad()
def fuse_conv_bn_weights(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` into ``conv`` in place (``conv`` gains a bias if it had none).

    The arithmetic runs in float64 and is cast back, so the folded layer matches conv + BN to rounding.

    Raises:
        ValueError: if the channel counts differ or the norm is not a foldable eval-mode BatchNorm.
    """
    if not _is_foldable_norm(bn):
        raise ValueError(f"`bn` must be an eval-mode BatchNorm with running statistics, got {bn!r}")
    transposed = isinstance(conv, nn.modules.conv._ConvTransposeNd)
    out_axis = 1 if transposed else 0
    weight = conv.weight
    if weight.shape[out_axis] != bn.num_features:
        raise ValueError(
            f"conv has {weight.shape[out_axis]} output channels but the BatchNorm normalises {bn.num_features}"
        )
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    shape = [1] * weight.dim()
    shape[out_axis] = -1
    conv.weight.copy_((weight.double() * scale.view(shape)).to(weight.dtype))
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=weight.requires_grad)
    else:
        conv.bias.copy_(bias.to(conv.bias.dtype))


def _grad_consumers(roots: Sequence[torch.Tensor]) -> Dict[Any, int]:
    """How many edges of the autograd graph below ``roots`` point at each node."""
    counts: Dict[Any, int] = {}
    seen = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                counts[child] = counts.get(child, 0) + 1
                stack.append(child)
    return counts


def _flatten_tensors(value: Any) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flatten_tensors(item)]
    return []


def find_conv_bn_pairs(model: nn.Module, *args: Any, **kwargs: Any) -> List[Tuple[str, str]]:
    """The ``(conv name, BatchNorm name)`` pairs of ``model`` that can be folded, found by running
    ``model(*args, **kwargs)`` once (the model must be in eval mode).

    A pair qualifies when the conv runs exactly once, its output tensor is the BatchNorm's input (no hook or op in
    between), the BatchNorm runs exactly once, and the autograd graph shows no other use of the conv's output.
    """
    names = {module: name for name, module in model.named_modules()}
    calls: Dict[nn.Module, int] = {}
    conv_out: Dict[int, Tuple[nn.Module, torch.Tensor]] = {}
    norm_in: Dict[nn.Module, torch.Tensor] = {}
    handles = []

    def on_conv(module: nn.Module, inputs: Any, output: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        if isinstance(output, torch.Tensor):
            conv_out[id(output)] = (module, output)  # keep the tensor alive so its id stays unique

    def on_norm(module: nn.Module, inputs: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        if inputs and isinstance(inputs[0], torch.Tensor):
            norm_in[module] = inputs[0]

    for module in model.modules():
        # A conv whose output another hook rewrites (e.g. a time injection) must not be folded: skip hooked ones.
        if _is_foldable_conv(module) and not module._forward_hooks:
            handles.append(module.register_forward_hook(on_conv))
        elif _is_foldable_norm(module) and not module._forward_pre_hooks:
            handles.append(module.register_forward_pre_hook(on_norm))
    try:
        with torch.enable_grad():
            args = tuple(a.detach().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a
                         for a in args)
            outputs = model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    consumers = _grad_consumers(_flatten_tensors(outputs))
    pairs = []
    for norm, tensor in norm_in.items():
        found = conv_out.get(id(tensor))
        if found is None or found[1] is not tensor:
            continue
        conv = found[0]
        if calls.get(conv) != 1 or calls.get(norm) != 1 or tensor.grad_fn is None:
            continue
        if consumers.get(tensor.grad_fn, 0) != 1:  # something besides the norm reads the pre-norm value
            continue
        out_axis = 1 if isinstance(conv, nn.modules.conv._ConvTransposeNd) else 0
        if conv.weight.shape[out_axis] != norm.num_features:
            continue
        pairs.append((names[conv], names[norm]))
    return pairs


def _replacement(norm: nn.Module) -> nn.Module:
    """What stays of a folded norm: nothing, or timm's ``BatchNormAct`` dropout + activation that follow it."""
    act = getattr(norm, "act", None)
    drop = getattr(norm, "drop", None)
    kept = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    if not kept:
        return nn.Identity()
    return kept[0] if len(kept) == 1 else nn.Sequential(*kept)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_batch_norms(model: nn.Module, *args: Any, **kwargs: Any) -> List[Tuple[str, str]]:
    """Fold every foldable eval-mode BatchNorm of ``model`` into its conv, in place; returns the folded pairs.

    ``args``/``kwargs`` are an example input for one forward pass (see :func:`find_conv_bn_pairs`).

    Raises:
        ValueError: if ``model`` is in training mode (batch statistics cannot be folded).
    """
    if model.training:
        raise ValueError("fold_batch_norms needs the model in eval mode (call model.eval()): a training-mode "
                         "BatchNorm normalises with batch statistics, which cannot be folded into weights")
    pairs = find_conv_bn_pairs(model, *args, **kwargs)
    for conv_name, norm_name in pairs:
        norm = model.get_submodule(norm_name)
        fuse_conv_bn_weights(model.get_submodule(conv_name), norm)
        _set_submodule(model, norm_name, _replacement(norm))
    return pairs
