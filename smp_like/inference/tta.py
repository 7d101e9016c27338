"""Test-time augmentation: predict on flipped / rotated copies, map the outputs back, merge them.

All copies of a batch run through the model as one batch (split into chunks of ``max_batch``), not one model call
per transform as in ttach; outputs are mapped back by the exact inverse of each transform (flips and quarter turns
only permute pixels), passed through the activation, and merged in probability space. ``return_std=True`` also
returns the per-pixel standard deviation over the copies, an uncertainty map.

Transform sets (rotations turn the plane of the last two spatial axes, flips act on the listed spatial axes):

============== ==== ==========================================================================================
name           size  copies
============== ==== ==========================================================================================
``"flip"``      4    identity, flip of the last axis, of the one before, of both (2D and 3D: in-plane flips)
``"d4"``        8    the dihedral group: 4 quarter turns, each with and without a flip (square windows are
                     fastest: odd turns of a non-square input run as a second batch)
``"flip3d"``    8    the 8 combinations of flips of the three axes of a volume
``"flip3d_rot90"`` 16 ``flip3d`` with in-plane quarter turns: a flip of the first axis times ``"d4"``
============== ==== ==========================================================================================

:class:`TTA` wraps a model into a callable, so TTA composes with :func:`~smp_like.inference.sliding_window`: each
window batch then runs with all its augmented copies in one model call.
"""

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

__all__ = ["Transform", "TTA", "tta", "tta_transforms", "MERGE_MODES", "TRANSFORM_SETS", "get_activation"]

MERGE_MODES: Tuple[str, ...] = ("mean", "gmean", "max", "min", "tsharpen")
TRANSFORM_SETS: Tuple[str, ...] = ("flip", "d4", "flip3d", "flip3d_rot90")
ACTIVATIONS: Tuple[str, ...] = ("sigmoid", "softmax", "identity")


@dataclass(frozen=True)
class Transform:
    """A flip of some spatial axes followed by ``rot90`` quarter turns in the plane of the last two axes.

    Attributes:
        flips: spatial axes flipped (0 = first spatial axis).
        rot90: quarter turns, counter-clockwise as ``torch.rot90`` (0..3).
    """

    flips: Tuple[int, ...] = ()
    rot90: int = 0

    @property
    def name(self) -> str:
        parts = [f"flip{''.join(str(a) for a in self.flips)}"] if self.flips else []
        parts += [f"rot{90 * self.rot90}"] if self.rot90 % 4 else []
        return "+".join(parts) or "identity"

    def _check(self, x: torch.Tensor) -> None:
        spatial = x.ndim - 2
        if any(not 0 <= a < spatial for a in self.flips) or (self.rot90 % 4 and spatial < 2):
            raise ValueError(f"transform {self.name} does not fit an input with {spatial} spatial axes")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform a batch ``(N, C, *spatial)``."""
        self._check(x)
        if self.flips:
            x = torch.flip(x, [2 + a for a in self.flips])
        if self.rot90 % 4:
            x = torch.rot90(x, self.rot90 % 4, dims=(-2, -1))
        return x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """Map a batch of outputs back: the exact inverse of :meth:`apply` (a pixel permutation)."""
        self._check(y)
        if self.rot90 % 4:
            y = torch.rot90(y, -(self.rot90 % 4), dims=(-2, -1))
        if self.flips:
            y = torch.flip(y, [2 + a for a in self.flips])
        return y


def tta_transforms(name: Union[str, Sequence[Transform]], spatial_dims: int = 2) -> List[Transform]:
    """The transforms of a named set (see the module docstring), or a user list checked for type.

    Args:
        name: ``"flip"``, ``"d4"``, ``"flip3d"``, ``"flip3d_rot90"``, or a list of :class:`Transform`.
        spatial_dims: 2 or 3 (the 3D sets need 3).

    Returns:
        The transforms (the named sets start with the identity).

    Raises:
        ValueError: for an unknown name, a 3D set for 2D inputs, or an empty list.
        TypeError: for list entries that are not :class:`Transform`.
    """
    if not isinstance(name, str):
        transforms = list(name)
        if not transforms:
            raise ValueError("`transforms` must not be empty")
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"`transforms` entries must be smp_like.inference.Transform, got {type(t).__name__}")
        return transforms
    if name not in TRANSFORM_SETS:
        raise ValueError(f"`transforms` must be one of {TRANSFORM_SETS} or a list of Transform, got {name!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims!r}")
    last, before = spatial_dims - 1, spatial_dims - 2
    if name == "flip":
        return [Transform(), Transform((last,)), Transform((before,)), Transform((before, last))]
    d4 = [Transform(flips, k) for flips in ((), (last,)) for k in range(4)]
    if name == "d4":
        return d4
    if spatial_dims != 3:
        raise ValueError(f"`transforms={name!r}` needs 3D inputs (spatial_dims=3), got spatial_dims={spatial_dims}")
    if name == "flip3d":
        masks = itertools.product((0, 1), repeat=3)
        return [Transform(tuple(a for a, on in zip(range(3), mask) if on)) for mask in masks]
    return [Transform(first + t.flips, t.rot90) for first in ((), (0,)) for t in d4]


def get_activation(activation: Union[str, Callable, None]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``"sigmoid"``, ``"softmax"`` (over channels), ``None``/``"identity"`` or a callable.

    Args:
        activation: the name or callable.

    Returns:
        A function tensor -> tensor.

    Raises:
        ValueError: for an unknown name.
    """
    if activation is None or activation == "identity":
        return lambda t: t
    if callable(activation):
        return activation
    if activation == "sigmoid":
        return torch.sigmoid
    if activation == "softmax":
        return lambda t: torch.softmax(t, dim=1)
    raise ValueError(f"`activation` must be one of {ACTIVATIONS}, None or a callable, got {activation!r}")


def _merge(stack: torch.Tensor, merge: str) -> torch.Tensor:
    """Merge outputs stacked on dim 0 (one per transform)."""
    if merge in ("gmean", "tsharpen") and bool((stack < 0).any()):
        raise ValueError(
            f"merge={merge!r} needs non-negative outputs (probabilities): pass activation='sigmoid' or 'softmax'"
        )
    if merge == "mean":
        return stack.mean(0)
    if merge == "max":
        return stack.amax(0)
    if merge == "min":
        return stack.amin(0)
    if merge == "gmean":
        # exp(mean(log p)) = (prod p)^(1/T), without the product's underflow.
        return torch.exp(torch.log(stack.clamp_min(torch.finfo(stack.dtype).tiny)).mean(0))
    return stack.sqrt().mean(0)  # "tsharpen": temperature sharpening with t = 0.5 (ttach's definition)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the model must return a tensor or a tuple starting with one, got {type(output).__name__}")
    return output


def tta(
    model: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    transforms: Union[str, Sequence[Transform]] = "flip",
    merge: str = "mean",
    activation: Union[str, Callable, None] = None,
    max_batch: Optional[int] = None,
    return_std: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Predict ``x`` under several transforms and merge the outputs mapped back.

    Args:
        model: module or callable ``(N, C, *spatial) -> (N, K, *spatial')`` (or a tuple starting with that).
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        transforms: a set name (``"flip"``, ``"d4"``, ``"flip3d"``, ``"flip3d_rot90"``) or a list of
            :class:`Transform`.
        merge: ``"mean"``, ``"gmean"`` (geometric mean), ``"max"``, ``"min"`` or ``"tsharpen"`` (mean of square
            roots); ``gmean``/``tsharpen`` need non-negative (activated) outputs.
        activation: applied to every copy before merging: ``"sigmoid"``, ``"softmax"`` (channels), None or a
            callable.
        max_batch: largest batch per model call (default: all copies at once).
        return_std: also return the per-pixel standard deviation (population) over the copies.

    Returns:
        The merged output, or ``(merged, std)``.

    Raises:
        ValueError: for an unknown set, merge or activation, or a bad ``max_batch``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        raise ValueError(f"`x` must be a (N, C, H, W) or (N, C, D, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if merge not in MERGE_MODES:
        raise ValueError(f"`merge` must be one of {MERGE_MODES}, got {merge!r}")
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"`max_batch` must be a positive int or None, got {max_batch!r}")
    ts = tta_transforms(transforms, x.ndim - 2)
    act = get_activation(activation)
    n = x.shape[0]

    # Copies of equal shape run together (a quarter turn of a non-square input changes its shape).
    groups: Dict[Tuple[int, ...], List[int]] = {}
    copies = [t.apply(x) for t in ts]
    for i, c in enumerate(copies):
        groups.setdefault(tuple(c.shape), []).append(i)
    outputs: List[Optional[torch.Tensor]] = [None] * len(ts)
    for members in groups.values():
        batch = torch.cat([copies[i] for i in members])
        step = batch.shape[0] if max_batch is None else max_batch
        preds = torch.cat([_first_tensor(model(batch[s : s + step])) for s in range(0, batch.shape[0], step)])
        for j, i in enumerate(members):
            outputs[i] = act(ts[i].invert(preds[j * n : (j + 1) * n]))
    del copies
    stack = torch.stack(outputs)  # type: ignore[arg-type]
    merged = _merge(stack, merge)
    if return_std:
        return merged, stack.std(0, unbiased=False)
    return merged


class TTA:
    """A model wrapped with test-time augmentation: a callable for :func:`sliding_window` or plain use.

    Args:
        model: the model.
        transforms, merge, activation, max_batch: as in :func:`tta`.
        return_std: ``"channels"`` appends the per-pixel standard deviation as extra channels (so a sliding window
            blends both); False returns the merged output only.

    Example:
        >>> merged = sliding_window(TTA(model, "d4", activation="softmax"), image, roi_size=256)
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], Any],
        transforms: Union[str, Sequence[Transform]] = "flip",
        merge: str = "mean",
        activation: Union[str, Callable, None] = None,
        max_batch: Optional[int] = None,
        return_std: Union[bool, str] = False,
    ):
        if merge not in MERGE_MODES:
            raise ValueError(f"`merge` must be one of {MERGE_MODES}, got {merge!r}")
        if return_std not in (False, "channels"):
            raise ValueError(f"`return_std` must be False or 'channels', got {return_std!r}")
        get_activation(activation)
        self.model, self.transforms, self.merge = model, transforms, merge
        self.activation, self.max_batch, self.return_std = activation, max_batch, return_std

    def __len__(self) -> int:
        return len(tta_transforms(self.transforms, 3 if self.transforms in ("flip3d", "flip3d_rot90") else 2))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        result = tta(self.model, x, self.transforms, self.merge, self.activation, self.max_batch,
                     return_std=bool(self.return_std))
        if self.return_std:
            merged, std = result
            return torch.cat([merged, std], dim=1)
        return result  # type: ignore[return-value]
