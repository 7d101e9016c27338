"""Deep supervision shared by HSeM, Unet, UnetPlusPlus and FPN: side heads, side-output sizes, train/eval switch.

Deeply-supervised nets (Lee et al. 2015, "Deeply-Supervised Nets") attach a companion classifier to hidden stages and
add their losses to the main one (:class:`~smp_like.losses.pyramid.PyramidLoss`, eq. 3 there). Here a companion is a
1x1 conv (+ the model's activation) on each decoder stage; its output has exactly the stage's stride, i.e. spatial
size ``ceil(input_size / stride)`` per axis.

:class:`DeepSupervisionMixin` goes before :class:`~smp_like.base.model.SegmentationModel` in a model's bases. A model
whose decoder has ``forward_stages(features) -> (output, stages)`` (stages coarse to fine) gets, with side heads
built:

* training mode: ``forward(x)`` returns ``(main, sides)``, ``main`` being exactly what eval mode returns;
* eval mode (and ``predict``): ``main`` alone, through the unchanged :class:`SegmentationModel` path.

The mixin adds no forward of its own: SegmentationModel's forward asks :meth:`_returns_side_outputs` and, when
true, decodes with ``decoder.forward_stages`` and appends :meth:`side_outputs`.

Without side heads (``deep_supervision=False``, the default of the SMP-compatible models) nothing changes: no
parameter, no state-dict key, the same outputs and the same TorchScript / export paths.
"""

from typing import Any, Callable, List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.initialization import initialize_head
from smp_like.base.model import SegmentationModel
from smp_like.base.modules import Activation



class DeepSupervisionMixin:
    """Side heads on the decoder stages of a :class:`~smp_like.base.model.SegmentationModel` (see module docstring).

    A model calls :meth:`init_side_heads` after building its encoder and decoder, and overrides
    :meth:`stage_reductions` when its stages are not one per encoder stage down to stride 1 (FPN: its four pyramid
    levels).
    """

    # TorchScript compiles every property of a module unless it is listed here (stage_strides is Python-side only).
    __jit_unused_properties__ = list(SegmentationModel.__jit_unused_properties__) + [
        "stage_strides", "deep_supervision"
    ]

    # No class-level annotations here: TorchScript reads the model class's ``__annotations__``, which would then be
    # this mixin's instead of SegmentationModel's (its ``_scripted_*`` types).

    def init_side_heads(
        self,
        enabled: bool,
        stage_channels: Sequence[int],
        classes: int,
        activation: Union[str, Callable, None],
        interpolation: str = "nearest",
        spatial_dims: int = 2,
        name: str = "deep_supervision",
    ) -> None:
        """Build ``self.side_heads`` (one 1x1 conv + activation per stage, coarse to fine), or set it to None.

        Args:
            enabled: build the heads; False leaves the model's parameters and state dict untouched.
            stage_channels: channels of each decoder stage, coarse to fine.
            classes: output channels of every side head.
            activation: the model's activation, applied to the side outputs as to the main output.
            interpolation: mode used when a side output must be resized to its exact size (``"nearest"``, ...).
            spatial_dims: 2 or 3.
            name: the constructor argument behind ``enabled``, for the error message.

        Raises:
            TypeError: if ``enabled`` is not a bool.
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"`{name}` must be True or False, got {enabled!r}")
        self._side_interpolation = nd.interpolation_mode(interpolation, spatial_dims)
        if not enabled:
            self.side_heads = None
            return
        conv = nd.conv_type(spatial_dims)
        heads = nn.ModuleList(nn.Sequential(conv(c, classes, 1), Activation(activation)) for c in stage_channels)
        for head in heads:
            initialize_head(head)
        self.side_heads = heads

    @property
    def deep_supervision(self) -> bool:
        """True when the model has side heads (training mode then returns ``(main, sides)``)."""
        return getattr(self, "side_heads", None) is not None

    def stage_reductions(self) -> List[Any]:
        """Encoder reduction of each decoder stage, coarse to fine (default: one stage per encoder stage, the
        finest at stride 1)."""
        reductions = list(self.encoder.reductions)  # type: ignore[attr-defined]
        return reductions[: len(reductions) - 1][::-1]

    @property
    def stage_strides(self) -> List[Tuple[int, ...]]:
        """Per-axis stride of each decoder stage (and side output), coarse to fine."""
        dims = self.spatial_dims  # type: ignore[attr-defined]
        return [nd.as_tuple(r, dims, "reductions") for r in self.stage_reductions()]

    def side_output_sizes(self, input_size: Sequence[int]) -> List[List[int]]:
        """Spatial size of each side output for an input of ``input_size``: ``ceil(size / stride)`` per axis."""
        return [[-(-int(s) // r) for s, r in zip(input_size, stride)] for stride in self.stage_strides]

    def side_outputs(self, stages: Sequence[torch.Tensor], input_size: Sequence[int]) -> List[torch.Tensor]:
        """Apply the side heads to ``stages`` (coarse to fine) and bring each to ``ceil(input_size / stride)``.

        When the model pads its input at the end (``pads_input``), a stage is first cropped (the padding lies past
        the crop); any remaining mismatch (an encoder with unusual padding) is resized with the model's
        interpolation mode.
        """
        if self.side_heads is None:
            raise RuntimeError(f"{type(self).__name__} was built without side heads (deep supervision is off)")
        sides: List[torch.Tensor] = []
        for head, stage, target in zip(self.side_heads, stages, self.side_output_sizes(input_size)):
            out = head(stage)
            if self.pads_input:  # type: ignore[attr-defined]
                for axis, size in enumerate(target):
                    if out.shape[2 + axis] > size:
                        out = out.narrow(2 + axis, 0, size)
            if list(out.shape[2:]) != list(target):
                out = F.interpolate(out, size=target, mode=self._side_interpolation)
            sides.append(out)
        return sides

    @torch.jit.unused
    def _returns_side_outputs(self) -> bool:
        """The base forward's hook: ``(main, sides)`` in training mode with side heads."""
        return self.training and getattr(self, "side_heads", None) is not None  # type: ignore[attr-defined]

    def __prepare_scriptable__(self) -> Any:
        """Refuse TorchScript with side heads: the scripted path has no side outputs (use eager mode, or build the
        model with ``deep_supervision=False`` and load the weights with ``strict=False`` for export)."""
        if getattr(self, "side_heads", None) is not None:
            raise RuntimeError(
                f"{type(self).__name__} with deep supervision (side heads) cannot be scripted; build it with "
                "deep_supervision=False and load_state_dict(..., strict=False) to export the main output"
            )
        return super().__prepare_scriptable__()  # type: ignore[misc]
