"""Surface-distance metrics: Hausdorff distance, its 95th percentile (HD95) and the average symmetric surface
distance (ASSD), for masks with any number of spatial dimensions and anisotropic voxel spacing.

Definitions (as in MONAI and the Medical Segmentation Decathlon evaluation):

* The surface of a mask is the set of its voxels with a face-neighbour outside it (outside the array counts
  as background), see :func:`smp_like.metrics.distance.surface_mask`.
* ``d(a, S)`` is the Euclidean distance, in physical units given by ``spacing``, from voxel centre ``a``
  to the nearest voxel centre of surface ``S``.
* With surfaces ``P`` (prediction) and ``G`` (ground truth), the directed distances are
  ``D_PG = {d(p, G) : p in P}`` and ``D_GP = {d(g, P) : g in G}``.
* HD = ``max(max D_PG, max D_GP)``; HD95 = ``max(q95(D_PG), q95(D_GP))`` with linear interpolation between
  order statistics (NumPy's default percentile); ASSD = ``(sum D_PG + sum D_GP) / (|P| + |G|)``.

Empty masks get defined values, never NaN: both empty -> 0 (nothing to miss); exactly one empty ->
``empty_value``, by default the largest distance possible inside the image (its diagonal in physical units).

Distances come from an exact Euclidean distance transform written in PyTorch
(:func:`smp_like.metrics.distance.distance_transform`); SciPy is not needed at run time.
"""

from typing import Callable, List, Optional, Sequence, Union

import torch

from .distance import distance_transform, normalize_spacing, surface_mask

__all__ = [
    "hausdorff_distance",
    "hausdorff_distance_95",
    "average_symmetric_surface_distance",
    "surface_distances",
    "to_masks",
]

_MODES = ("binary", "multiclass", "multilabel")


def to_masks(
    output: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    threshold: Optional[Union[float, Sequence[float]]] = None,
    num_classes: Optional[int] = None,
    owner: str = "to_masks",
):
    """Turn predictions and targets into boolean (N, C, *spatial) masks.

    binary / multilabel: ``output`` (N, C, *spatial) masks, or scores binarised with ``output >= threshold``;
    ``target`` is read as ``target > 0`` (or ``>= threshold`` when given, as in :func:`get_stats`).
    multiclass: ``output`` and ``target`` are (N, *spatial) class indices, one-hot encoded over
    ``num_classes`` (labels outside ``[0, num_classes)`` belong to no class).

    Raises:
        ValueError: Unknown ``mode``, shape mismatch, float ``output`` without ``threshold``, missing
            ``num_classes`` or no spatial dimension.
    """
    if mode not in _MODES:
        raise ValueError(f"{owner}: mode={mode!r} is not supported; choose one of {list(_MODES)}.")
    if output.shape != target.shape:
        raise ValueError(
            f"{owner}: output shape {tuple(output.shape)} and target shape {tuple(target.shape)} must be "
            "equal."
        )
    if mode == "multiclass":
        if threshold is not None:
            raise ValueError(
                f"{owner}: threshold is not supported for mode='multiclass'; pass class indices."
            )
        if num_classes is None:
            raise ValueError(f"{owner}: num_classes is required for mode='multiclass'.")
        if output.dim() < 2:
            raise ValueError(f"{owner}: multiclass inputs must be (N, *spatial), got {tuple(output.shape)}.")
        classes = torch.arange(num_classes, device=output.device).reshape(
            (1, num_classes) + (1,) * (output.dim() - 1)
        )
        return output.unsqueeze(1) == classes, target.unsqueeze(1) == classes
    if output.dim() < 3:
        raise ValueError(
            f"{owner}: mode={mode!r} needs (N, C, *spatial) masks with at least one spatial dimension, got "
            f"{tuple(output.shape)}."
        )
    if threshold is not None:
        thr = torch.as_tensor(threshold, dtype=torch.float64, device=output.device)
        if thr.dim() > 0:
            if thr.numel() != output.shape[1]:
                raise ValueError(
                    f"{owner}: threshold has {thr.numel()} entries but the inputs have {output.shape[1]} "
                    "channels."
                )
            thr = thr.reshape((1, -1) + (1,) * (output.dim() - 2))
        return output >= thr, target >= thr
    if torch.is_floating_point(output):
        raise ValueError(
            f"{owner}: output has floating dtype {output.dtype}; pass threshold=... or integer/boolean masks."
        )
    return output != 0, target != 0


def surface_distances(
    output: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    threshold: Optional[Union[float, Sequence[float]]] = None,
    num_classes: Optional[int] = None,
    spacing: Optional[Union[float, Sequence[float]]] = None,
) -> List[List[tuple]]:
    """Directed surface distances for every image and class.

    Args:
        output: Predictions: (N, C, *spatial) masks/scores (binary, multilabel) or (N, *spatial) class
            indices (multiclass).
        target: Targets shaped like ``output``.
        mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        threshold: Binarisation threshold for score outputs (binary, multilabel).
        num_classes: Number of classes (multiclass).
        spacing: Voxel size along each spatial axis (scalar or one value per axis); distances are in its
            units.

    Returns:
        A nested list ``[n][c] -> (d_pred_to_gt, d_gt_to_pred)`` of 1-D float64 tensors (empty when the
        corresponding surface is empty). See :func:`to_masks` for the input conventions.
    """
    pred, gt = to_masks(output, target, mode, threshold, num_classes, owner="surface_distances")
    n, c = pred.shape[:2]
    spatial = pred.dim() - 2
    steps = normalize_spacing(spacing, spatial, owner="surface_distances")
    surf_pred = surface_mask(pred, spatial_dims=spatial)
    surf_gt = surface_mask(gt, spatial_dims=spatial)
    # One transform for both directions: distance to the nearest gt-surface voxel and to the nearest
    # prediction-surface voxel.
    dist = distance_transform(torch.stack([surf_gt, surf_pred]), steps, spatial_dims=spatial)
    to_gt, to_pred = dist[0], dist[1]
    result = []
    for i in range(n):
        row = []
        for j in range(c):
            row.append((to_gt[i, j][surf_pred[i, j]], to_pred[i, j][surf_gt[i, j]]))
        result.append(row)
    return result


def _diagonal(shape: Sequence[int], steps: Sequence[float]) -> float:
    return float(sum(((size - 1) * s) ** 2 for size, s in zip(shape, steps)) ** 0.5)


def _surface_metric(
    reducer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    name: str,
    output: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    threshold,
    num_classes: Optional[int],
    spacing,
    empty_value: Optional[float],
    reduction: Optional[str],
) -> torch.Tensor:
    if reduction not in (None, "none", "mean"):
        raise ValueError(
            f"{name}: reduction={reduction!r} is not supported; choose one of [None, 'none', 'mean']."
        )
    pred, gt = to_masks(output, target, mode, threshold, num_classes, owner=name)
    spatial_shape = pred.shape[2:]
    steps = normalize_spacing(spacing, len(spatial_shape), owner=name)
    fill = _diagonal(spatial_shape, steps) if empty_value is None else float(empty_value)
    pairs = surface_distances(pred, gt, "multilabel", None, None, steps)
    n, c = pred.shape[:2]
    values = torch.zeros(n, c, dtype=torch.float64)
    for i in range(n):
        for j in range(c):
            d_pg, d_gp = pairs[i][j]
            if d_pg.numel() == 0 and d_gp.numel() == 0:
                values[i, j] = 0.0
            elif d_pg.numel() == 0 or d_gp.numel() == 0:
                values[i, j] = fill
            else:
                values[i, j] = reducer(d_pg, d_gp)
    values = values.to(device=output.device, dtype=torch.get_default_dtype())
    return values.mean() if reduction == "mean" else values


def hausdorff_distance(
    output: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    threshold: Optional[Union[float, Sequence[float]]] = None,
    num_classes: Optional[int] = None,
    spacing: Optional[Union[float, Sequence[float]]] = None,
    percentile: Optional[float] = None,
    empty_value: Optional[float] = None,
    reduction: Optional[str] = None,
) -> torch.Tensor:
    """Symmetric Hausdorff distance between predicted and true surfaces, per image and class.

    Args:
        output: Predictions: (N, C, *spatial) masks/scores (binary, multilabel) or (N, *spatial) class
            indices (multiclass).
        target: Targets shaped like ``output``.
        mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        threshold: Binarisation threshold for score outputs (binary, multilabel).
        num_classes: Number of classes (multiclass).
        spacing: Voxel size along each spatial axis (scalar or one value per axis); distances are in its
            units.
        percentile: ``None`` for the maximum (classic HD); e.g. 95 for the robust HD95.
        empty_value: Value when exactly one of the two masks is empty; default: the image diagonal.
        reduction: ``None``/``"none"`` for the (N, C) values, ``"mean"`` for their mean.

    Returns:
        (N, C) tensor (or a scalar with ``reduction="mean"``) in the default float dtype.

    Raises:
        ValueError: Bad ``mode``, shapes, ``spacing``, ``percentile`` or ``reduction``.
    """
    if percentile is not None and not 0.0 <= percentile <= 100.0:
        raise ValueError(f"hausdorff_distance: percentile={percentile!r} must lie in [0, 100] or be None.")

    def reducer(d_pg: torch.Tensor, d_gp: torch.Tensor) -> torch.Tensor:
        if percentile is None:
            return torch.maximum(d_pg.max(), d_gp.max())
        q = percentile / 100.0
        return torch.maximum(torch.quantile(d_pg, q), torch.quantile(d_gp, q))

    return _surface_metric(
        reducer,
        "hausdorff_distance",
        output,
        target,
        mode,
        threshold,
        num_classes,
        spacing,
        empty_value,
        reduction,
    )


def hausdorff_distance_95(
    output: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    threshold: Optional[Union[float, Sequence[float]]] = None,
    num_classes: Optional[int] = None,
    spacing: Optional[Union[float, Sequence[float]]] = None,
    empty_value: Optional[float] = None,
    reduction: Optional[str] = None,
) -> torch.Tensor:
    """HD95: the larger of the two directed 95th-percentile surface distances.

    Same as :func:`hausdorff_distance` with ``percentile=95``.

    Args:
        output: Predictions: (N, C, *spatial) masks/scores (binary, multilabel) or (N, *spatial) class
            indices (multiclass).
        target: Targets shaped like ``output``.
        mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        threshold: Binarisation threshold for score outputs (binary, multilabel).
        num_classes: Number of classes (multiclass).
        spacing: Voxel size along each spatial axis (scalar or one value per axis); distances are in its
            units.
        empty_value: Value when exactly one of the two masks is empty; default: the image diagonal.
        reduction: ``None``/``"none"`` for the (N, C) values, ``"mean"`` for their mean.

    Returns:
        (N, C) tensor (or a scalar with ``reduction="mean"``) in the default float dtype.
    """
    return hausdorff_distance(
        output,
        target,
        mode,
        threshold,
        num_classes,
        spacing,
        percentile=95.0,
        empty_value=empty_value,
        reduction=reduction,
    )


def average_symmetric_surface_distance(
    output: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    threshold: Optional[Union[float, Sequence[float]]] = None,
    num_classes: Optional[int] = None,
    spacing: Optional[Union[float, Sequence[float]]] = None,
    empty_value: Optional[float] = None,
    reduction: Optional[str] = None,
) -> torch.Tensor:
    """ASSD: mean of all surface-to-surface distances in both directions, per image and class.

    ``(sum_{p in P} d(p, G) + sum_{g in G} d(g, P)) / (|P| + |G|)``.

    Args:
        output: Predictions: (N, C, *spatial) masks/scores (binary, multilabel) or (N, *spatial) class
            indices (multiclass).
        target: Targets shaped like ``output``.
        mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        threshold: Binarisation threshold for score outputs (binary, multilabel).
        num_classes: Number of classes (multiclass).
        spacing: Voxel size along each spatial axis (scalar or one value per axis); distances are in its
            units.
        empty_value: Value when exactly one of the two masks is empty; default: the image diagonal.
        reduction: ``None``/``"none"`` for the (N, C) values, ``"mean"`` for their mean.

    Returns:
        (N, C) tensor (or a scalar with ``reduction="mean"``) in the default float dtype.
    """

    def reducer(d_pg: torch.Tensor, d_gp: torch.Tensor) -> torch.Tensor:
        return (d_pg.sum() + d_gp.sum()) / (d_pg.numel() + d_gp.numel())

    return _surface_metric(
        reducer,
        "average_symmetric_surface_distance",
        output,
        target,
        mode,
        threshold,
        num_classes,
        spacing,
        empty_value,
        reduction,
    )
