"""PyramidLoss: deep supervision of a hierarchical model (main output + one side output per decoder stage).

Deeply-supervised nets (Lee et al. 2015, eq. 3) add to the loss of the final output a weighted sum of companion
losses at the hidden stages:

    L = L_main(main, y) + sum_i w_i * L_side(side_i, resize(y, size(side_i)))

with ``w_i = 1 / L`` (the mean over the ``L`` levels) by default, or the per-level weights given. The target is
resized to each side output's exact size: ``"nearest"`` for integer masks (labels stay labels), ``"area"`` or
``"bilinear"`` for float targets.
"""

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd

TARGET_RESIZE_MODES = ("nearest", "nearest-exact", "area", "bilinear")


class PyramidLoss(nn.Module):
    """Main loss plus the mean (or per-level weighted) loss of each side output against the resized target.

    Args:
        main_loss: ``loss(prediction, target) -> scalar tensor`` for the main output.
        side_weights: None for the mean over levels (each weight ``1 / number of side outputs``), or one
            non-negative weight per side output, coarse to fine (used as given, not normalised).
        side_loss: loss for the side outputs; None = ``main_loss``.
        target_resize: how the target is resized to each side output's size: ``"nearest"`` (integer masks; a
            float copy is resized and cast back, exact for labels below 2**24), ``"nearest-exact"``, ``"area"`` or
            ``"bilinear"`` (float targets; ``"trilinear"`` in 3D).

    Call:
        ``loss(outputs, target)``, where ``outputs`` is ``(main, sides)`` as returned by a hierarchical model in
        training mode (e.g. :class:`~smp_like.decoders.hierarchical.model.HSeM`), or ``main`` alone (then only the
        main loss). ``target`` is (N, *spatial) (class indices) or (N, C, *spatial).

    Raises:
        TypeError: for a loss that is not callable.
        ValueError: for unknown ``target_resize``, negative weights, a number of weights that does not match the
            side outputs, or a target whose rank fits neither layout.
    """

    def __init__(
        self,
        main_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        side_weights: Optional[Sequence[float]] = None,
        side_loss: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
        target_resize: str = "nearest",
    ):
        super().__init__()
        if not callable(main_loss):
            raise TypeError(f"`main_loss` must be callable (prediction, target) -> loss, got {main_loss!r}")
        if side_loss is not None and not callable(side_loss):
            raise TypeError(f"`side_loss` must be None or callable (prediction, target) -> loss, got {side_loss!r}")
        if target_resize not in TARGET_RESIZE_MODES:
            raise ValueError(f"`target_resize` must be one of {TARGET_RESIZE_MODES}, got {target_resize!r}")
        if side_weights is not None:
            if isinstance(side_weights, (str, bytes)) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in side_weights
            ):
                raise ValueError(f"`side_weights` must be None or a sequence of numbers >= 0, got {side_weights!r}")
            side_weights = [float(w) for w in side_weights]
        self.main_loss = main_loss
        self.side_loss = side_loss if side_loss is not None else main_loss
        self.side_weights = side_weights
        self.target_resize = target_resize

    def resize_target(self, target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Resize ``target`` ((N, *spatial) or (N, C, *spatial)) to spatial ``size``, keeping its dtype and layout."""
        spatial_dims = len(size)
        if target.dim() == spatial_dims + 1:
            squeeze = True
            target_nc = target.unsqueeze(1)
        elif target.dim() == spatial_dims + 2:
            squeeze = False
            target_nc = target
        else:
            raise ValueError(
                f"target must have shape (N, *spatial) or (N, C, *spatial) with {spatial_dims} spatial dims, "
                f"got {tuple(target.shape)}"
            )
        if list(target_nc.shape[2:]) == list(size):
            return target
        mode = nd.interpolation_mode(self.target_resize, spatial_dims, argument="target_resize")
        as_float = target_nc if target_nc.is_floating_point() else target_nc.float()
        resized = F.interpolate(as_float, size=list(size), mode=mode)
        if not target_nc.is_floating_point():
            if mode not in ("nearest", "nearest-exact"):
                resized = resized.round()
            resized = resized.to(target.dtype)
        return resized.squeeze(1) if squeeze else resized

    def forward(
        self,
        outputs: Union[torch.Tensor, Tuple[torch.Tensor, Sequence[torch.Tensor]]],
        target: torch.Tensor,
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.main_loss(outputs, target)
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise TypeError(
                "`outputs` must be the main output tensor or a (main, side_outputs) pair, "
                f"got {type(outputs).__name__}"
            )
        main, sides = outputs
        sides = list(sides)
        if not sides:
            return self.main_loss(main, target)
        weights: List[float]
        if self.side_weights is None:
            weights = [1.0 / len(sides)] * len(sides)
        else:
            if len(self.side_weights) != len(sides):
                raise ValueError(
                    f"`side_weights` has {len(self.side_weights)} entries but the model gave {len(sides)} side "
                    "outputs; give one weight per side output (coarse to fine) or None for the mean"
                )
            weights = self.side_weights
        # Resize first, so a malformed target fails here with a clear message rather than inside a loss.
        side_targets = [self.resize_target(target, side.shape[2:]) for side in sides]
        total = self.main_loss(main, target)
        for weight, side, side_target in zip(weights, sides, side_targets):
            total = total + weight * self.side_loss(side, side_target)
        return total
