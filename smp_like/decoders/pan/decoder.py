"""PAN decoder (Li et al. 2018, "Pyramid Attention Network for Semantic Segmentation").

Feature Pyramid Attention (FPA, sec. 3.2, Fig. 2) on the deepest encoder feature: a U-shaped pyramid of 7x7,
5x5 and 3x3 convs on max-pooled copies produces a one-channel attention map that multiplies a 1x1 projection of
the feature, plus a global-pooling branch. Global Attention Upsample blocks (GAU, sec. 3.3, Fig. 3) then walk up
to stride 4: the low-level feature (3x3 conv) is weighted by a channel attention computed from the high-level
feature (global pooling, 1x1 conv, sigmoid) and added to the up-sampled high-level feature.
"""

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.exportable import AdaptiveAvgPool

# FPA halves the deepest feature three times (sec. 3.2), so it needs at least 2**3 pixels per axis there.
FPA_LEVELS = 3
FPA_MIN_SIZE = 2**FPA_LEVELS


def _align_corners(mode: str) -> Optional[bool]:
    # SMP's layout: corners aligned for (bi/tri)linear up-sampling, PyTorch's default for every other mode.
    return True if mode in ("linear", "bilinear", "trilinear") else None


class ConvBnRelu(nn.Module):
    """conv (with bias) -> BatchNorm -> ReLU (unless ``add_relu=False``), as attributes ``conv``, ``bn``.

    SMP's PAN layout; the GAU attention branch skips the ReLU, its sigmoid follows the norm directly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        add_relu: bool = True,
        interpolate: bool = False,
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.add_relu = add_relu
        self.interpolate = interpolate
        # SMP's optional x2 up-sampling after the block: (bi/tri)linear with aligned corners.
        self.interpolation_mode = nd.interpolation_mode("bilinear", spatial_dims)
        self.conv = nd.conv_type(spatial_dims)(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.activation = nn.ReLU(inplace=True)
        self.bn = nd.batchnorm_type(spatial_dims)(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if self.add_relu:
            x = self.activation(x)
        if self.interpolate:
            x = F.interpolate(x, scale_factor=2.0, mode=self.interpolation_mode, align_corners=True)
        return x


class FPABlock(nn.Module):
    """Feature Pyramid Attention (Li et al. 2018, sec. 3.2, Fig. 2).

    out = mid(x) * U(x) + upsample(gp(x)), where U is the pyramid: three max-pool halvings with 7x7, 5x5 and
    (two) 3x3 convs down to one channel, merged coarse to fine by up-sampling and adding the 7x7 / 5x5 branches.
    Up-sampling is always (bi/tri)linear with aligned corners, whatever ``decoder_interpolation`` says (as SMP).
    """

    def __init__(self, in_channels: int, out_channels: int, upscale_mode: str = "bilinear", spatial_dims: int = 2):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode(upscale_mode, spatial_dims)
        self.align_corners = _align_corners(self.interpolation_mode)
        pool = nd.maxpool_type(spatial_dims)

        def cbr(i: int, o: int, k: int) -> ConvBnRelu:
            return ConvBnRelu(i, o, k, padding=k // 2, spatial_dims=spatial_dims)

        self.branch1 = nn.Sequential(AdaptiveAvgPool(1, spatial_dims), cbr(in_channels, out_channels, 1))
        self.mid = nn.Sequential(cbr(in_channels, out_channels, 1))
        self.down1 = nn.Sequential(pool(kernel_size=2, stride=2), cbr(in_channels, 1, 7))
        self.down2 = nn.Sequential(pool(kernel_size=2, stride=2), cbr(1, 1, 5))
        self.down3 = nn.Sequential(pool(kernel_size=2, stride=2), cbr(1, 1, 3), cbr(1, 1, 3))
        self.conv2 = cbr(1, 1, 5)
        self.conv1 = cbr(1, 1, 7)

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[2:], mode=self.interpolation_mode, align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self._up(self.branch1(x), x)
        mid = self.mid(x)
        x1 = self.down1(x)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        # Coarse to fine (Fig. 2): each level adds its own conv branch to the up-sampled coarser map.
        x2 = self.conv2(x2) + self._up(x3, x2)
        x1 = self.conv1(x1) + self._up(x2, x1)
        return self._up(x1, x) * mid + b1


class GAUBlock(nn.Module):
    """Global Attention Upsample (Li et al. 2018, sec. 3.3, Fig. 3).

    out = upsample(high) + conv3x3(low) * sigmoid(bn(conv1x1(gap(high)))) (no ReLU before the sigmoid).
    """

    def __init__(
        self, in_channels: int, out_channels: int, interpolation_mode: str = "bilinear", spatial_dims: int = 2
    ):
        super().__init__()
        # SMP's public attribute name; resolved for spatial_dims ("bilinear" -> "trilinear" in 3D).
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        self.align_corners = _align_corners(self.interpolation_mode)
        self.conv1 = nn.Sequential(
            AdaptiveAvgPool(1, spatial_dims),
            ConvBnRelu(out_channels, out_channels, 1, add_relu=False, spatial_dims=spatial_dims),
            nn.Sigmoid(),
        )
        self.conv2 = ConvBnRelu(in_channels, out_channels, 3, padding=1, spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x``: low-level (finer) encoder feature; ``y``: high-level decoder map."""
        y_up = F.interpolate(y, size=x.shape[2:], mode=self.interpolation_mode, align_corners=self.align_corners)
        return y_up + self.conv2(x) * self.conv1(y)


class PANDecoder(nn.Module):
    """FPA on the deepest encoder feature, then one GAU per finer stage down to stride 4.

    Blocks are named ``gau{k}`` for the stage-``k+1`` feature (``gau1`` takes the stride-4 feature), as in SMP.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        encoder_depth: encoder depth, 3..5.
        decoder_channels: channels of every decoder map.
        interpolation_mode: interpolation mode of the GAU blocks (``"bilinear"``, ``"nearest"``, ...); FPA is
            always bilinear.
        spatial_dims: 2 or 3.

    Returns (forward):
        One tensor (N, decoder_channels, *size of the stride-4 feature).

    Raises:
        ValueError: for an encoder depth below 3, non-positive ``decoder_channels`` or an unknown mode.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("fpa", "gau3", "gau2", "gau1")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_depth: int = 5,
        decoder_channels: int = 32,
        interpolation_mode: str = "bilinear",
        spatial_dims: int = 2,
    ):
        super().__init__()
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or not 3 <= encoder_depth <= 5:
            raise ValueError(f"`encoder_depth` for PAN must be 3, 4 or 5, got {encoder_depth!r}")
        if len(encoder_channels) != encoder_depth + 1:
            raise ValueError(
                f"PAN expects {encoder_depth + 1} encoder features for encoder_depth={encoder_depth}, "
                f"got channels {tuple(encoder_channels)}"
            )
        if isinstance(decoder_channels, bool) or not isinstance(decoder_channels, int) or decoder_channels < 1:
            raise ValueError(f"`decoder_channels` for PAN must be a positive int, got {decoder_channels!r}")
        self.fpa = FPABlock(encoder_channels[-1], decoder_channels, spatial_dims=spatial_dims)
        # gau{k} fuses encoder stage k+1 into the map from the stage below; stages beyond the depth have none
        # (None attributes add no state-dict keys and keep forward scriptable).
        self.gau3: Optional[GAUBlock] = None
        self.gau2: Optional[GAUBlock] = None
        if encoder_depth >= 5:
            self.gau3 = GAUBlock(encoder_channels[4], decoder_channels, interpolation_mode, spatial_dims)
        if encoder_depth >= 4:
            self.gau2 = GAUBlock(encoder_channels[3], decoder_channels, interpolation_mode, spatial_dims)
        self.gau1 = GAUBlock(encoder_channels[2], decoder_channels, interpolation_mode, spatial_dims)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        x = self.fpa(features[-1])
        if self.gau3 is not None:
            x = self.gau3(features[4], x)
        if self.gau2 is not None:
            x = self.gau2(features[3], x)
        return self.gau1(features[2], x)
