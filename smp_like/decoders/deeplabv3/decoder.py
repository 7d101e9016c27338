"""DeepLabV3 and DeepLabV3+ decoders: atrous spatial pyramid pooling (ASPP) and the V3+ low-level fusion.

Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation" (DeepLabV3), sec. 3.3: ASPP =
a 1x1 conv, three 3x3 atrous convs and image-level pooling, each followed by batch norm, concatenated and
projected by a 1x1 conv. Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution" (DeepLabV3+),
sec. 3.1: the ASPP output is upsampled x4, concatenated with 48 projected low-level (stride-4) channels and
refined by 3x3 (depthwise-separable) convs. Every layer is n-d: 3D volumes get 3D atrous convs and 3D pooling.

Module names and state-dict keys follow segmentation_models_pytorch, so its checkpoints load unchanged.
"""

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.exportable import AdaptiveAvgPool

# Channels the V3+ decoder projects the low-level feature to (Chen et al. 2018, sec. 4.1: 48 works best).
LOW_LEVEL_CHANNELS = 48


class SeparableConv(nn.Sequential):
    """Depthwise (per-channel, optionally dilated) conv followed by a pointwise 1x1 conv; children 0 and 1.

    Chen et al. 2018, sec. 3.1 ("atrous separable convolution"). No biases: a batch norm always follows.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        dilation: int = 1,
        spatial_dims: int = 2,
    ):
        conv = nd.conv_type(spatial_dims)
        depthwise = conv(
            in_channels, in_channels, kernel_size, padding=padding, dilation=dilation, groups=in_channels, bias=False
        )
        pointwise = conv(in_channels, out_channels, kernel_size=1, bias=False)
        super().__init__(depthwise, pointwise)


class SeparableConv2d(nn.Sequential):
    """SMP's public 2D separable conv: depthwise conv (no bias) then a pointwise 1x1 conv (bias by default).

    Same arguments, children and ``state_dict`` keys as SMP's ``SeparableConv2d``; the decoders use the n-d
    :class:`SeparableConv`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ):
        depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)
        super().__init__(depthwise, pointwise)


class ASPPConv(nn.Sequential):
    """3x3 atrous conv (rate ``dilation``) -> batch norm -> ReLU; children 0, 1, 2."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, spatial_dims: int = 2):
        super().__init__(
            nd.conv_type(spatial_dims)(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nd.batchnorm_type(spatial_dims)(out_channels),
            nn.ReLU(),
        )


class ASPPSeparableConv(nn.Sequential):
    """3x3 atrous depthwise-separable conv -> batch norm -> ReLU; children 0 (:class:`SeparableConv`), 1, 2."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int, spatial_dims: int = 2):
        super().__init__(
            SeparableConv(
                in_channels, out_channels, 3, padding=dilation, dilation=dilation, spatial_dims=spatial_dims
            ),
            nd.batchnorm_type(spatial_dims)(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image-level features (Chen et al. 2017, sec. 3.3): global average pool -> 1x1 conv -> BN -> ReLU -> broadcast.

    The pooled map is 1x1(x1), so its batch norm needs more than one sample in training mode; :class:`ASPP`
    checks the batch size before this branch runs.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 2):
        super().__init__(
            AdaptiveAvgPool(1, spatial_dims),
            nd.conv_type(spatial_dims)(in_channels, out_channels, kernel_size=1, bias=False),
            nd.batchnorm_type(spatial_dims)(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x
        for module in self:
            pooled = module(pooled)
        # Upsampling a 1x1 map (bilinearly or otherwise) repeats its value: broadcasting is exact and cheaper.
        return pooled.expand([-1, -1] + list(x.shape[2:]))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (Chen et al. 2017, sec. 3.3, Fig. 5).

    Args:
        in_channels: channels of the input feature.
        out_channels: channels of every branch and of the projection.
        atrous_rates: dilation of each 3x3 branch (SMP and the paper use three; any number >= 1 works here).
        separable: use atrous depthwise-separable 3x3 branches (DeepLabV3+, Chen et al. 2018, sec. 3.1).
        dropout: dropout probability after the projection.
        spatial_dims: 2 or 3.

    Raises:
        ValueError: in training mode with a batch of one sample (the pooling branch's batch norm sees a single
            value per channel), as SMP does, but naming the cause.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        atrous_rates: Sequence[int],
        separable: bool = False,
        dropout: float = 0.5,
        spatial_dims: int = 2,
    ):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        norm = nd.batchnorm_type(spatial_dims)
        branch = ASPPSeparableConv if separable else ASPPConv
        modules: List[nn.Module] = [
            nn.Sequential(conv(in_channels, out_channels, kernel_size=1, bias=False), norm(out_channels), nn.ReLU())
        ]
        modules += [branch(in_channels, out_channels, rate, spatial_dims=spatial_dims) for rate in atrous_rates]
        modules.append(ASPPPooling(in_channels, out_channels, spatial_dims=spatial_dims))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(
            conv(len(modules) * out_channels, out_channels, kernel_size=1, bias=False),
            norm(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training: the ASPP image-pooling branch applies "
                "batch norm to a 1x1 pooled map, so training needs a batch of at least 2 samples, got a batch of 1 "
                f"(ASPP input shape {list(x.shape)}). Use a larger batch, or call model.eval() for inference."
            )
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3Decoder(nn.Module):
    """ASPP (Chen et al. 2017, sec. 3.3) on the deepest feature, then a 3x3 conv -> BN -> ReLU.

    The extra 3x3 block is SMP's layout (the paper feeds the ASPP projection straight to the 1x1 classifier).

    Args:
        in_channels: channels of the deepest encoder feature.
        out_channels: channels of the ASPP branches and of the output (``decoder_channels``).
        atrous_rates: dilations of the 3x3 ASPP branches.
        aspp_separable: depthwise-separable ASPP branches.
        aspp_dropout: dropout after the ASPP projection.
        spatial_dims: 2 or 3.

    Returns (forward):
        A tensor with ``out_channels`` channels at the resolution of the deepest feature.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("aspp", "relu")

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        aspp_separable: bool = False,
        aspp_dropout: float = 0.5,
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.aspp = ASPP(in_channels, out_channels, atrous_rates, aspp_separable, aspp_dropout, spatial_dims)
        self.conv = nd.conv_type(spatial_dims)(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nd.batchnorm_type(spatial_dims)(out_channels)
        self.relu = nn.ReLU()

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.aspp(features[-1]))))


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabV3+ decoder (Chen et al. 2018, sec. 3.1, Fig. 2).

    ASPP (+ separable 3x3 conv) on the deepest feature, resize to the low-level feature, concatenate it after a
    1x1 projection to 48 channels, refine with a separable 3x3 conv.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        out_channels: channels of the ASPP and of the output (``decoder_channels``).
        atrous_rates: dilations of the 3x3 ASPP branches.
        aspp_separable: depthwise-separable ASPP branches (the convs after ASPP are always separable).
        aspp_dropout: dropout after the ASPP projection.
        highres_index: index in ``features`` of the low-level (stride-4) feature.
        spatial_dims: 2 or 3.

    Returns (forward):
        A tensor with ``out_channels`` channels at the resolution of the low-level feature.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("aspp", "block1", "block2")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        out_channels: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        aspp_separable: bool = True,
        aspp_dropout: float = 0.5,
        highres_index: int = 2,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if not 0 <= highres_index < len(encoder_channels) - 1:
            raise ValueError(
                "`highres_index` must index a feature shallower than the deepest one "
                f"(0..{len(encoder_channels) - 2}), got {highres_index!r}"
            )
        norm = nd.batchnorm_type(spatial_dims)
        self.highres_index = highres_index
        self.interpolation_mode = nd.interpolation_mode("bilinear", spatial_dims)
        self.aspp = nn.Sequential(
            ASPP(encoder_channels[-1], out_channels, atrous_rates, aspp_separable, aspp_dropout, spatial_dims),
            SeparableConv(out_channels, out_channels, 3, padding=1, spatial_dims=spatial_dims),
            norm(out_channels),
            nn.ReLU(),
        )
        self.block1 = nn.Sequential(
            nd.conv_type(spatial_dims)(encoder_channels[highres_index], LOW_LEVEL_CHANNELS, 1, bias=False),
            norm(LOW_LEVEL_CHANNELS),
            nn.ReLU(),
        )
        self.block2 = nn.Sequential(
            SeparableConv(LOW_LEVEL_CHANNELS + out_channels, out_channels, 3, padding=1, spatial_dims=spatial_dims),
            norm(out_channels),
            nn.ReLU(),
        )

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        high_res = self.block1(features[self.highres_index])
        deep = self.aspp(features[-1])
        # Resizing to the low-level feature's size (x2 or x4 on stride-multiple inputs, as in SMP's Upsample)
        # keeps the concatenation valid for any feature sizes.
        deep = F.interpolate(deep, size=high_res.shape[2:], mode=self.interpolation_mode, align_corners=True)
        return self.block2(torch.cat([deep, high_res], dim=1))
