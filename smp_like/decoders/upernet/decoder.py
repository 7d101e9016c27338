"""UPerNet decoder (Xiao et al. 2018, "Unified Perceptual Parsing for Scene Understanding"), n-d.

A pyramid pooling module (Zhao et al. 2017) on the deepest feature starts an FPN (Lin et al. 2017) top-down
pathway through the finer levels down to stride 4; every pyramid level is resized to stride 4, concatenated
and fused by a 3x3 conv. As in SMP, each encoder level of stride >= 4 is first normalised by a channel
LayerNorm (SMP's addition for transformer encoders; it applies to every encoder).
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.exportable import AdaptiveAvgPool, dense_when_exporting
from smp_like.base.modules import ChannelLayerNorm, ConvNormReLU, parse_norm

MIN_ENCODER_DEPTH = 3
PSP_POOL_SIZES = (1, 2, 3, 6)

NormSpec = Union[bool, str, Dict[str, Any]]


LayerNorm2d = ChannelLayerNorm  # SMP's name: LayerNorm over the channels of a channels-first map


class PSPModule(nn.Module):
    """Pyramid pooling (Zhao et al. 2017, sec. 3.2): pool to 1, 2, 3, 6 bins, 1x1 conv-norm-ReLU each,
    upsample, concat after the input, 3x3 conv-BN-ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        sizes: Sequence[int] = PSP_POOL_SIZES,
        use_norm: NormSpec = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode("bilinear", spatial_dims)
        # PyTorch's adaptive pooling in eager mode; an exportable equivalent under torch.export / ONNX.
        self.blocks = nn.ModuleList(
            nn.Sequential(
                AdaptiveAvgPool(size, spatial_dims=spatial_dims),
                ConvNormReLU(
                    in_channels, out_channels, kernel_size=1, use_norm=use_norm, spatial_dims=spatial_dims
                ),
            )
            for size in sizes
        )
        # The fusing conv keeps batchnorm whatever ``use_norm`` says, as in SMP (state-dict keys depend on
        # it).
        self.out_conv = ConvNormReLU(
            in_channels + len(sizes) * out_channels,
            out_channels,
            kernel_size=3,
            padding=1,
            use_norm="batchnorm",
            spatial_dims=spatial_dims,
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        size = feature.shape[2:]
        pooled = [
            F.interpolate(block(feature), size=size, mode=self.interpolation_mode, align_corners=False)
            for block in self.blocks
        ]
        return self.out_conv(torch.cat([feature] + pooled, dim=1))


class FPNLateralBlock(nn.Module):
    """FPN top-down step: 1x1 conv-norm-ReLU on the lateral (encoder) feature plus the coarser state resized to
    its size. Argument names are SMP's."""

    def __init__(
        self, lateral_channels: int, out_channels: int, use_norm: NormSpec = "batchnorm", spatial_dims: int = 2
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode("bilinear", spatial_dims)
        self.conv_norm_relu = ConvNormReLU(
            lateral_channels, out_channels, kernel_size=1, use_norm=use_norm, spatial_dims=spatial_dims
        )

    def forward(self, state_feature: torch.Tensor, lateral_feature: torch.Tensor) -> torch.Tensor:
        lateral_feature = self.conv_norm_relu(lateral_feature)
        # Upsampled term first: the sum then takes its (contiguous) memory layout, as SMP's does.
        upsampled = F.interpolate(
            state_feature, size=lateral_feature.shape[2:], mode=self.interpolation_mode, align_corners=False
        )
        return upsampled + lateral_feature


def check_decoder_args(encoder_depth: Any, decoder_channels: Any, use_norm: NormSpec) -> None:
    """Validate UPerNet's decoder arguments (called before the encoder is built, so nothing is downloaded).

    Raises:
        ValueError: for an encoder depth outside 3..5, ``decoder_channels`` that is not a positive int, an
            unknown norm, or instance norm (it cannot normalise the 1x1 pyramid-pooling branch: one spatial
            element).
    """
    if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or not 3 <= encoder_depth <= 5:
        raise ValueError(
            f"Encoder depth for UPerNet decoder cannot be less than {MIN_ENCODER_DEPTH}: "
            f"`encoder_depth` must be 3, 4 or 5, got {encoder_depth!r}"
        )
    if isinstance(decoder_channels, bool) or not isinstance(decoder_channels, int) or decoder_channels < 1:
        raise ValueError(f"`decoder_channels` of UPerNet must be a positive int, got {decoder_channels!r}")
    if parse_norm(use_norm)["type"] == "instancenorm":
        raise ValueError(
            f"`decoder_use_norm`={use_norm!r} is not possible for UPerNet: its pyramid pooling has a 1x1 "
            "branch, which instance norm cannot normalise (one spatial element); use 'batchnorm', "
            "'layernorm' or 'identity'"
        )


class UPerNetDecoder(nn.Module):
    """PPM on the deepest level -> FPN top-down over the others -> resize all to stride 4 -> concat -> fuse.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first); levels from index 2 (stride 4) on
            are used.
        encoder_depth: number of encoder stages, 3..5.
        decoder_channels: width of the pyramid and of the output.
        use_norm: norm of the conv blocks: ``True``/``False``, ``"batchnorm"``, ``"identity"``,
            ``"layernorm"``, ``"inplace"``, or ``{"type": ..., **kwargs}`` (the PPM's fusing conv always uses
            batchnorm, as in SMP).
        spatial_dims: 2 or 3.

    Raises:
        ValueError: see :func:`check_decoder_args`; at forward, a batch of one in training mode where a batch
            norm would see a single value per channel.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("psp", "fpn_lateral_blocks.*", "fpn_conv_blocks.*", "fusion_block")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_depth: int = 5,
        decoder_channels: int = 256,
        use_norm: NormSpec = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__()
        check_decoder_args(encoder_depth, decoder_channels, use_norm)
        self.interpolation_mode = nd.interpolation_mode("bilinear", spatial_dims)
        # The 1x1 pooled branch of the PPM has one value per channel and sample.
        self._branch_batchnorm = parse_norm(use_norm)["type"] == "batchnorm"
        levels = list(encoder_channels[2:])  # strides 4, 8, ...; shallow first
        self.feature_norms = nn.ModuleList(ChannelLayerNorm(c, eps=1e-6) for c in levels)
        self.psp = PSPModule(levels[-1], decoder_channels, use_norm=use_norm, spatial_dims=spatial_dims)
        self.fpn_lateral_blocks = nn.ModuleList(
            FPNLateralBlock(c, decoder_channels, use_norm=use_norm, spatial_dims=spatial_dims)
            for c in levels[-2::-1]
        )
        self.fpn_conv_blocks = nn.ModuleList(
            ConvNormReLU(
                decoder_channels,
                decoder_channels,
                kernel_size=3,
                padding=1,
                use_norm=use_norm,
                spatial_dims=spatial_dims,
            )
            for _ in levels[:-1]
        )
        self.fusion_block = ConvNormReLU(
            len(levels) * decoder_channels,
            decoder_channels,
            kernel_size=3,
            padding=1,
            use_norm=use_norm,
            spatial_dims=spatial_dims,
        )

    def _check_batch_statistics(self, deepest: torch.Tensor) -> None:
        # Batch norm in training mode needs more than one value per channel: say so here, not deep inside.
        if not self.training or deepest.shape[0] > 1:
            return
        pixels = 1
        for size in deepest.shape[2:]:
            pixels *= size
        if self._branch_batchnorm or pixels == 1:
            raise ValueError(
                f"UPerNet in training mode needs a batch of at least 2 (got a deepest feature of shape "
                f"{deepest.shape}): its pyramid pooling applies batch norm to a 1x1 map. Use a larger batch, "
                "call model.eval(), or decoder_use_norm='layernorm' / 'identity' (with inputs of at least "
                "twice the output stride)"
            )

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        levels: List[torch.Tensor] = []  # strides 4, 8, ..., channel-normalised
        for i, norm in enumerate(self.feature_norms):
            levels.append(dense_when_exporting(norm(features[i + 2])))
        self._check_batch_statistics(levels[-1])
        deep_to_shallow = levels[::-1]
        # Top-down pathway (FPN): the running sum, not its smoothed copy, feeds the next finer level.
        x = self.psp(deep_to_shallow[0])
        pyramid = [x]
        i = 1
        for lateral, fpn_conv in zip(self.fpn_lateral_blocks, self.fpn_conv_blocks):
            x = lateral(x, deep_to_shallow[i])
            pyramid.append(fpn_conv(x))
            i += 1
        # Fuse at the finest (stride-4) level, finest first in the concatenation.
        size = pyramid[-1].shape[2:]
        resized = [pyramid[-1]]
        for level in pyramid[-2::-1]:
            resized.append(F.interpolate(level, size=size, mode=self.interpolation_mode, align_corners=False))
        return self.fusion_block(dense_when_exporting(torch.cat(resized, dim=1)))
