"""Boundary (surface-distance) loss of Kervadec et al., "Boundary loss for highly unbalanced segmentation"
(MIDL 2019; Medical Image Analysis 2021)."""

from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from ..metrics.distance import distance_transform, normalize_spacing
from ._functional import (
    check_choice,
    check_classes,
    check_loss_shapes,
    check_mode,
    one_hot_target,
    to_probabilities,
)
from .constants import BINARY_MODE, MULTICLASS_MODE

__all__ = ["BoundaryLoss", "signed_distance_map"]


def signed_distance_map(
    mask: torch.Tensor,
    spacing: Optional[Union[float, Sequence[float]]] = None,
    spatial_dims: Optional[int] = None,
) -> torch.Tensor:
    """Signed Euclidean distance to the boundary of ``mask``: positive outside, negative inside.

    ``phi(x) = d(x, G)`` for ``x`` outside the object ``G`` and ``-d(x, complement of G)`` inside, with voxel
    distances scaled by ``spacing`` (Kervadec et al., eq. 5, discretised on voxel centres). Entries of a batch
    element whose mask is empty or full have no boundary and get 0, so they add nothing to the loss.

    Args:
        mask: Boolean (or 0/1) tensor (*batch, *spatial).
        spacing: Voxel size per spatial axis.
        spatial_dims: Number of trailing spatial dimensions; ``None`` means all.

    Returns:
        float64 tensor shaped like ``mask``.
    """
    mask = mask.bool()
    ndim = mask.dim() if spatial_dims is None else spatial_dims
    outside = distance_transform(mask, spacing, spatial_dims=ndim)  # 0 inside, distance to G outside
    inside = distance_transform(~mask, spacing, spatial_dims=ndim)  # 0 outside, distance to background inside
    phi = outside - inside
    # inf appears only where G (or its complement) is empty: no boundary, no signal.
    return torch.where(torch.isfinite(phi), phi, torch.zeros_like(phi))


class BoundaryLoss(nn.Module):
    """Boundary loss ``mean_x phi_G(x) * s_theta(x)`` (Kervadec et al., eq. 5).

    ``phi_G`` is the signed distance map of the target (negative inside, positive outside, computed without
    gradient) and ``s_theta`` the predicted probability. The loss is minimal (negative, not zero) when the
    prediction covers exactly the target; Kervadec et al. combine it with a regional loss such as Dice,
    e.g. ``CombinedLoss([("Dice", 1.0), ("Boundary", 0.01)], ...)`` with a growing boundary weight.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        classes: Class indices to include (Kervadec et al. leave out the background); ``None`` for all.
        from_logits: Apply softmax (multiclass) or sigmoid (binary, multilabel) to ``y_pred``.
        spacing: Voxel size per spatial axis, so distances are physical.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the (N, C, *spatial) map ``phi * s``).

    Shape:
        - y_pred: (N, C, *spatial) with any number of spatial dimensions.
        - y_true: (N, 1, *spatial) / (N, *spatial) binary, (N, *spatial) multiclass indices,
          (N, C, *spatial) multilabel.
    """

    def __init__(
        self,
        mode: str,
        classes: Optional[List[int]] = None,
        from_logits: bool = True,
        spacing: Optional[Union[float, Sequence[float]]] = None,
        reduction: str = "mean",
    ):
        super().__init__()
        owner = type(self).__name__
        self.mode = check_mode(mode, owner)
        self.classes = check_classes(classes, mode, owner)
        self.from_logits = from_logits
        self.spacing = spacing
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum", "none"), owner)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss."""
        owner = type(self).__name__
        check_loss_shapes(self.mode, y_pred, y_true, owner)
        if y_pred.dim() < 3:
            raise ValueError(f"{owner}: y_pred must be (N, C, *spatial), got shape {tuple(y_pred.shape)}.")
        spatial = y_pred.dim() - 2
        normalize_spacing(self.spacing, spatial, owner)
        probs = to_probabilities(y_pred, self.mode, self.from_logits)
        with torch.no_grad():
            if self.mode == MULTICLASS_MODE:
                labels = y_true.reshape(y_true.shape[:1] + y_pred.shape[2:])
                target = one_hot_target(labels.reshape(labels.shape[0], -1), y_pred.shape[1], owner)
                target = target.reshape(y_pred.shape) > 0
            elif self.mode == BINARY_MODE:
                target = y_true.reshape(y_pred.shape) > 0.5
            else:
                target = y_true > 0.5
            phi = signed_distance_map(target, self.spacing, spatial_dims=spatial).to(probs.dtype)
        loss = phi * probs
        if self.classes is not None:
            if int(self.classes.max()) >= y_pred.shape[1]:
                raise ValueError(
                    f"{owner}: classes={self.classes.tolist()} index beyond the {y_pred.shape[1]} channels."
                )
            loss = loss[:, self.classes.to(loss.device)]
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
