"""PSPNet decoder: the pyramid pooling module of Zhao et al. 2017 ("Pyramid Scene Parsing Network", sec. 3.2).

The deepest encoder feature is average-pooled to 1x1, 2x2, 3x3 and 6x6 bins, each reduced by a 1x1 conv to
1/N of its channels (N = 4 levels), up-sampled bilinearly back to the feature's size and concatenated with the
feature itself; a 1x1 conv and spatial dropout follow (sec. 3.2, Fig. 3).
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.exportable import AdaptiveAvgPool
from smp_like.base.modules import ConvNormReLU, parse_norm

PYRAMID_BINS = (1, 2, 3, 6)  # Zhao et al. 2017, sec. 3.2


class PSPBlock(nn.Module):
    """Adaptive average pooling to ``pool_size`` bins per axis, 1x1 conv-norm-ReLU, bilinear resize back.

    The 1x1 level has no norm (a norm over a single value per channel is degenerate), as in SMP.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        pool_size: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__()
        if pool_size == 1:
            use_norm = "identity"
        self.mode = nd.interpolation_mode("bilinear", spatial_dims)
        # PyTorch's pooling in eager mode; bin-averaging products while exporting (dynamic sizes, and no
        # ReduceMean-18, which ONNX cannot convert down to opset 17).
        self.pool = nn.Sequential(
            AdaptiveAvgPool(pool_size, spatial_dims),
            ConvNormReLU(in_channels, out_channels, kernel_size=1, use_norm=use_norm, spatial_dims=spatial_dims),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)
        return F.interpolate(y, size=x.shape[2:], mode=self.mode, align_corners=True)


class PSPModule(nn.Module):
    """Pyramid pooling (Zhao et al. 2017, Fig. 3c): the pooled levels, then the input, concatenated."""

    def __init__(
        self,
        in_channels: int,
        sizes: Sequence[int] = PYRAMID_BINS,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            PSPBlock(in_channels, in_channels // len(sizes), size, use_norm, spatial_dims) for size in sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([block(x) for block in self.blocks] + [x], dim=1)


class PSPDecoder(nn.Module):
    """Pyramid pooling module + 1x1 conv-norm-ReLU + spatial dropout on the deepest encoder feature.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first); only the last is used.
        use_norm: norm of the conv blocks: ``True``/``False``, ``"batchnorm"``, ``"identity"``,
            ``"layernorm"``, ``"instancenorm"``, ``"inplace"``, or ``{"type": ..., **kwargs}``.
        out_channels: channels of the output (``psp_out_channels``).
        dropout: spatial dropout probability, in [0, 1].
        spatial_dims: 2 or 3.

    Returns (forward):
        One tensor (N, out_channels, *size of the deepest feature).

    Raises:
        ValueError: for a bad norm, non-positive ``out_channels``, fewer deepest channels than pyramid levels,
            or a dropout outside [0, 1].
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("psp", "conv")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        out_channels: int = 512,
        dropout: float = 0.2,
        spatial_dims: int = 2,
    ):
        super().__init__()
        parse_norm(use_norm)
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"`psp_out_channels` must be a positive int, got {out_channels!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"`psp_dropout` must be a number in [0, 1], got {dropout!r}")
        in_channels = encoder_channels[-1]
        if in_channels < len(PYRAMID_BINS):
            raise ValueError(
                f"PSPNet needs at least {len(PYRAMID_BINS)} channels in the deepest encoder feature "
                f"(one per pyramid level), got {in_channels}"
            )
        self.psp = PSPModule(in_channels, PYRAMID_BINS, use_norm, spatial_dims)
        # 2 * in_channels when in_channels is a multiple of 4 (SMP's layout); exact otherwise.
        psp_channels = in_channels + len(PYRAMID_BINS) * (in_channels // len(PYRAMID_BINS))
        self.conv = ConvNormReLU(
            psp_channels, out_channels, kernel_size=1, use_norm=use_norm, spatial_dims=spatial_dims
        )
        self.dropout = nd.dropout_type(spatial_dims)(p=float(dropout))

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        x = self.psp(features[-1])
        return self.dropout(self.conv(x))
