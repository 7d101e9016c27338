"""Scan orders that turn an n-d feature map into 1-D sequences for a selective scan, and back.

A *direction* is an order of the spatial axes, slowest-varying first and fastest-varying last; its sequence is the
feature map permuted to that axis order and flattened (raster order of the permuted map). Modes:

* ``"single"``: raster order only (1 direction).
* ``"simplified"``: every spatial axis is the fastest-varying one exactly once, the other axes keeping their
  natural order (1D: 1, 2D: 2, 3D: 3 directions).
* ``"cross"``: every order of the spatial axes (1D: 1, 2D: 2, 3D: all 6 permutations), as in VMamba's cross-scan
  (Liu et al. 2024, "VMamba: Visual State Space Model", sec. 3.3) extended to 3D.

``flip=True`` adds the reversed sequence of every direction, doubling the number ``K`` of sequences; the flipped
sequences come after all forward ones.
"""

from itertools import permutations
from typing import List, Sequence, Tuple

import torch

SCAN_MODES = ("single", "simplified", "cross")

__all__ = ["SCAN_MODES", "scan_directions", "num_directions", "scan_sequences", "merge_sequences"]


def _check_mode(mode: str) -> str:
    if mode not in SCAN_MODES:
        raise ValueError(f"scan mode must be one of {SCAN_MODES}, got mode={mode!r}")
    return mode


def _check_spatial_dims(spatial_dims: int) -> int:
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) or spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be one of (1, 2, 3), got spatial_dims={spatial_dims!r}")
    return spatial_dims


def scan_directions(mode: str, spatial_dims: int, flip: bool = False) -> List[Tuple[Tuple[int, ...], bool]]:
    """The directions of a scan mode.

    Args:
        mode: one of ``SCAN_MODES``.
        spatial_dims: 1, 2 or 3.
        flip: add the reversed sequence of every direction.

    Returns:
        A list of ``(axis_order, reversed)``: ``axis_order`` is a permutation of ``range(spatial_dims)``, slowest
        axis first; ``reversed`` tells whether the flattened sequence is read backwards.

    Raises:
        ValueError: on an unknown mode or unsupported ``spatial_dims``.
    """
    _check_mode(mode)
    _check_spatial_dims(spatial_dims)
    axes = tuple(range(spatial_dims))
    if mode == "single":
        orders = [axes]
    elif mode == "simplified":
        # Axis j fastest, the others in natural order: (0, 1, 2), (0, 2, 1), (1, 2, 0) in 3D.
        orders = [tuple(a for a in axes if a != j) + (j,) for j in reversed(axes)]
    else:
        orders = list(permutations(axes))
    directions = [(order, False) for order in orders]
    if flip:
        directions += [(order, True) for order in orders]
    return directions


def num_directions(mode: str, spatial_dims: int, flip: bool = False) -> int:
    """Number ``K`` of sequences produced by :func:`scan_sequences` for this mode.

    Args:
        mode: one of ``SCAN_MODES``.
        spatial_dims: 1, 2 or 3.
        flip: whether reversed sequences are added.

    Returns:
        ``K``: single 1, simplified ``spatial_dims``, cross ``spatial_dims!`` (1D: 1 for all), doubled by flip.
    """
    return len(scan_directions(mode, spatial_dims, flip))


def _check_flip(flip: bool) -> bool:
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be a bool, got flip={flip!r}")
    return flip


def scan_sequences(x: torch.Tensor, mode: str = "cross", flip: bool = False) -> torch.Tensor:
    """Flatten a channels-first feature map into one sequence per scan direction.

    Args:
        x: tensor of shape ``(N, C, *spatial)`` with 1, 2 or 3 spatial axes.
        mode: one of ``SCAN_MODES``.
        flip: add the reversed sequence of every direction.

    Returns:
        Tensor of shape ``(N, K, C, L)`` with ``L = prod(spatial)`` and ``K = num_directions(mode, ndim, flip)``.

    Raises:
        TypeError: if ``x`` is not a tensor or ``flip`` not a bool.
        ValueError: on an unknown mode or a tensor that is not 3-, 4- or 5-dimensional.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4, 5):
        raise ValueError(
            f"x must have shape (N, C, *spatial) with 1, 2 or 3 spatial axes, got shape {tuple(x.shape)}"
        )
    _check_flip(flip)
    n, c = x.shape[:2]
    seqs = []
    for order, rev in scan_directions(mode, x.dim() - 2, flip):
        s = x.permute(0, 1, *(2 + a for a in order)).reshape(n, c, -1)
        seqs.append(s.flip(-1) if rev else s)
    return torch.stack(seqs, dim=1)


def merge_sequences(y: torch.Tensor, mode: str, flip: bool, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Map every direction's sequence back to raster positions and sum over directions.

    The exact inverse of :func:`scan_sequences` per direction: ``merge_sequences(scan_sequences(x, m, f), m, f,
    x.shape[2:]) == K * x``.

    Args:
        y: tensor of shape ``(N, K, C, L)``, as produced by :func:`scan_sequences` (or a sequence model on it).
        mode: the scan mode used to produce ``y``.
        flip: the ``flip`` used to produce ``y``.
        spatial_shape: the spatial shape of the feature map (1, 2 or 3 sizes, product ``L``).

    Returns:
        Tensor of shape ``(N, C, *spatial_shape)``: the sum over the ``K`` directions.

    Raises:
        ValueError: if ``y``'s shape does not match the mode, flip and spatial shape.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    _check_flip(flip)
    spatial_shape = tuple(int(s) for s in spatial_shape)
    directions = scan_directions(mode, len(spatial_shape), flip)
    length = 1
    for s in spatial_shape:
        length *= s
    if y.dim() != 4 or y.shape[1] != len(directions) or y.shape[3] != length:
        raise ValueError(
            f"y must have shape (N, K={len(directions)}, C, L={length}) for mode={mode!r}, flip={flip}, "
            f"spatial_shape={spatial_shape}, got shape {tuple(y.shape)}"
        )
    n, _, c, _ = y.shape
    out = None
    for k, (order, rev) in enumerate(directions):
        s = y[:, k]
        if rev:
            s = s.flip(-1)
        s = s.reshape(n, c, *(spatial_shape[a] for a in order))
        inverse = [0] * len(order)
        for pos, a in enumerate(order):
            inverse[a] = pos
        s = s.permute(0, 1, *(2 + p for p in inverse))
        out = s if out is None else out + s
    return out.contiguous()
