"""SegFormer's all-MLP decoder (Xie et al. 2021, sec. 3.2, eq. 4), n-d.

Each encoder level is projected to a common width by a per-pixel linear layer, resized to the stride-4 level,
concatenated and fused by a 1x1 conv-norm-ReLU. The stride-2 level is used when the encoder has one (CNNs) and
skipped when it is the 0-channel placeholder of transformer encoders, as in SMP.
"""

from typing import Any, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.exportable import dense_when_exporting
from smp_like.base.modules import ConvNormReLU

MIN_ENCODER_DEPTH = 3


def check_decoder_args(encoder_depth: Any, segmentation_channels: Any) -> None:
    """Validate Segformer's decoder arguments (called before the encoder is built, so nothing is downloaded).

    Raises:
        ValueError: for an encoder depth outside 3..5 or ``segmentation_channels`` that is not a positive int.
    """
    if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or not 3 <= encoder_depth <= 5:
        raise ValueError(
            f"Encoder depth for Segformer decoder cannot be less than {MIN_ENCODER_DEPTH}: "
            f"`encoder_depth` must be 3, 4 or 5, got {encoder_depth!r}"
        )
    if (
        isinstance(segmentation_channels, bool)
        or not isinstance(segmentation_channels, int)
        or segmentation_channels < 1
    ):
        raise ValueError(
            f"`decoder_segmentation_channels` must be a positive int, got {segmentation_channels!r}"
        )


class SegformerMLP(nn.Module):  # SMP calls it ``MLP``
    """Per-pixel linear projection of a channels-first map of any dimensionality (eq. 4, first line)."""

    def __init__(self, skip_channels: int, segmentation_channels: int):  # SMP's argument names
        super().__init__()
        self.linear = nn.Linear(skip_channels, segmentation_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Through tokens (B, N, C), as SMP: the result then has SMP's memory layout, so the fusing conv rounds
        # exactly as SMP's does for every batch size.
        shape = [x.shape[0], -1] + list(x.shape[2:])
        tokens = self.linear(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(shape)


MLP = SegformerMLP  # SMP's name


class SegformerDecoder(nn.Module):
    """All-MLP decoder: ``Linear`` per level -> resize to stride 4 -> concat -> 1x1 conv-BN-ReLU (eq. 4).

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        encoder_depth: number of encoder stages, 3..5.
        segmentation_channels: width of every projected level and of the output.
        spatial_dims: 2 or 3.

    Raises:
        ValueError: see :func:`check_decoder_args`.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("mlp_stage.*", "fuse_stage")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_depth: int = 5,
        segmentation_channels: int = 256,
        spatial_dims: int = 2,
    ):
        super().__init__()
        check_decoder_args(encoder_depth, segmentation_channels)
        self.interpolation_mode = nd.interpolation_mode("bilinear", spatial_dims)
        # Levels after the input; the 0-channel stride-2 placeholder of transformer encoders carries nothing.
        levels = list(encoder_channels[1:])
        self.skip_first_level = levels[0] == 0
        if self.skip_first_level:
            levels = levels[1:]
        self.mlp_stage = nn.ModuleList(SegformerMLP(c, segmentation_channels) for c in levels[::-1])
        self.fuse_stage = ConvNormReLU(
            len(levels) * segmentation_channels,
            segmentation_channels,
            kernel_size=1,
            use_norm="batchnorm",
            spatial_dims=spatial_dims,
        )

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        # Everything is fused at the stride-4 level (features[2]); a stride-2 level is resized down to it.
        size = features[2].shape[2:]
        levels = features[2:] if self.skip_first_level else features[1:]
        deepest = len(levels) - 1
        projected: List[torch.Tensor] = []
        # mlp_stage runs deepest level first (SMP's order, which is also the order of concatenation).
        for i, mlp in enumerate(self.mlp_stage):
            level = mlp(levels[deepest - i])
            projected.append(
                F.interpolate(level, size=size, mode=self.interpolation_mode, align_corners=False)
            )
        return self.fuse_stage(dense_when_exporting(torch.cat(projected, dim=1)))
