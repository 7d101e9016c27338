"""LinkNet decoder (Chaurasia & Culurciello 2017, "LinkNet: Exploiting Encoder Representations for Efficient
Semantic Segmentation", sec. III and Fig. 3).

Each decoder block is conv1x1 (m -> m/4) -> transposed conv 3x3-ish, stride 2 (m/4 -> m/4) -> conv1x1
(m/4 -> n), every conv followed by norm and ReLU (Fig. 3); its output is *added* to the encoder feature of the
same stride (the "link"), rather than concatenated as in U-Net.
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.modules import ConvNormReLU, make_norm, parse_norm

PREFINAL_CHANNELS = 32  # channels of the last block, fed to the segmentation head (SMP's layout)


class TransposeX2(nn.Sequential):
    """Transposed conv (kernel 4, stride 2, padding 1: exactly x2) -> norm -> ReLU; children 0, 1, 2.

    The transposed conv keeps its bias whatever the norm, as in SMP.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        conv = nd.conv_transpose_type(spatial_dims)(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        norm = make_norm(use_norm, out_channels, spatial_dims)
        # InplaceABN applies the activation itself.
        activation = nn.Identity() if parse_norm(use_norm)["type"] == "inplace" else nn.ReLU(inplace=True)
        super().__init__(conv, norm, activation)


class LinknetDecoderBlock(nn.Module):
    """conv1x1 (in -> in/4) -> TransposeX2 -> conv1x1 (in/4 -> out), plus the skip (Chaurasia 2017, Fig. 3)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__()
        mid = in_channels // 4
        self.block = nn.Sequential(
            ConvNormReLU(in_channels, mid, kernel_size=1, use_norm=use_norm, spatial_dims=spatial_dims),
            TransposeX2(mid, mid, use_norm=use_norm, spatial_dims=spatial_dims),
            ConvNormReLU(mid, out_channels, kernel_size=1, use_norm=use_norm, spatial_dims=spatial_dims),
        )

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.block(x)
        if skip is not None:
            # Same size already for padded inputs. While tracing, the explicit resize lets torch.export see the
            # two sizes are equal without a guard it cannot prove; in eager mode it would only cost a copy.
            if torch.jit.is_scripting():
                x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            elif torch.compiler.is_compiling() or x.shape[2:] != skip.shape[2:]:
                x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = x + skip
        return x


DecoderBlock = LinknetDecoderBlock  # SMP's name


class LinknetDecoder(nn.Module):
    """One :class:`LinknetDecoderBlock` per encoder stage, deepest first; the last outputs 32 channels.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        prefinal_channels: output channels of the last block (32 in SMP).
        n_blocks: number of blocks, equal to the encoder depth (1..5).
        use_norm: ``True``/``False``, ``"batchnorm"``, ``"identity"``, ``"layernorm"``, ``"instancenorm"``,
            ``"inplace"``, or ``{"type": ..., **kwargs}``.
        spatial_dims: 2 or 3.

    Returns (forward):
        One tensor (N, prefinal_channels, *input size).

    Raises:
        ValueError: for a bad norm, or ``n_blocks`` that does not match the encoder features.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("blocks.*",)

    def __init__(
        self,
        encoder_channels: Sequence[int],
        prefinal_channels: int = PREFINAL_CHANNELS,
        n_blocks: int = 5,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__()
        parse_norm(use_norm)
        if n_blocks != len(encoder_channels) - 1:
            raise ValueError(
                f"Linknet needs one decoder block per encoder stage: n_blocks={n_blocks}, but the encoder gives "
                f"{len(encoder_channels) - 1} stages ({tuple(encoder_channels)})"
            )
        # Deepest first; block i maps stage channels (i) to the channels of the next finer stage (its skip).
        deep_to_shallow = list(encoder_channels[1:])[::-1]
        # Transformer-style encoders give a 0-channel placeholder at stride 2: that block keeps the channels of
        # the stage below and gets no skip (SMP's layout).
        self.has_skip = [c > 0 for c in deep_to_shallow[1:]] + [False]
        widths = []
        for c in deep_to_shallow:
            widths.append(c if c > 0 or not widths else widths[-1])
        out_channels = widths[1:] + [prefinal_channels]
        self.blocks = nn.ModuleList(
            LinknetDecoderBlock(i, o, use_norm=use_norm, spatial_dims=spatial_dims)
            for i, o in zip(widths, out_channels)
        )

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        deep_to_shallow = features[1:][::-1]
        skips = deep_to_shallow[1:]
        x = deep_to_shallow[0]
        for i, block in enumerate(self.blocks):
            skip = skips[i] if self.has_skip[i] else None
            x = block(x, skip)
        return x
