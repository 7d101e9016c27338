"""MA-Net decoder (Fan et al. 2020, "MA-Net: A Multi-Scale Attention Network for Liver and Tumor Segmentation",
IEEE Access 8).

A position-wise attention block (PAB) on the deepest feature, then one multi-scale fusion attention block
(MFAB) per skip: squeeze-and-excitation attention of the upsampled deep feature and of the skip,
summed, re-weight the deep feature before it is concatenated with the skip. Stages without a skip (the last one,
or a 0-channel placeholder of transformer encoders) are plain upsample + two conv blocks.

Module names and state-dict keys follow segmentation_models_pytorch; every layer is n-d (2D and 3D).
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.exportable import AdaptiveAvgPool
from smp_like.base.modules import ConvNormReLU

NormSpec = Union[bool, str, Dict[str, Any]]


class PABBlock(nn.Module):
    """Position-wise attention block (PAB, Fan et al. 2020), with SMP's exact arithmetic.

    With ``T = top_conv(x)`` and ``C = center_conv(x)`` flattened to (N, P, L) (``L`` = number of positions) and
    ``B = bottom_conv(x)`` to (N, in_channels, L): ``S = softmax(C^T T)``, where, as in SMP, the softmax runs over
    all L*L entries of each sample's map at once (not per row); ``A = S B^T`` of shape (N, L, in_channels) is
    reinterpreted in memory order as (N, in_channels, *spatial) (SMP's reshape, without a transpose); the output
    is ``out_conv(x + A)``.

    Args:
        in_channels: channels of the input and output.
        pab_channels: channels of the query/key projections (``decoder_pab_channels``).
        spatial_dims: 2 or 3.
    """

    def __init__(self, in_channels: int, pab_channels: int = 64, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        self.in_channels = in_channels
        self.pab_channels = pab_channels
        self.top_conv = conv(in_channels, pab_channels, kernel_size=1)
        self.center_conv = conv(in_channels, pab_channels, kernel_size=1)
        self.bottom_conv = conv(in_channels, in_channels, kernel_size=3, padding=1)
        self.map_softmax = nn.Softmax(dim=1)
        self.out_conv = conv(in_channels, in_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        top = self.top_conv(x).flatten(2)  # (N, P, L)
        center = self.center_conv(x).flatten(2)  # (N, P, L)
        bottom = self.bottom_conv(x).flatten(2)  # (N, C, L)
        affinity = torch.matmul(center.transpose(1, 2), top)  # (N, L, L)
        positions = affinity.shape[-1]
        attention = self.map_softmax(affinity.reshape(batch, -1)).reshape(batch, positions, positions)
        attended = torch.matmul(attention, bottom.transpose(1, 2))  # (N, L, C)
        attended = attended.reshape(x.shape)
        return self.out_conv(x + attended)


class SqueezeExcitation(nn.Sequential):
    """Channel attention (Hu et al. 2018, eq. 2-3): pool -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid (children 0-4).

    Returns the per-channel weights, shape (N, channels, 1, ...), not the re-weighted input.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_dims: int = 2):
        conv = nd.conv_type(spatial_dims)
        # At least one hidden channel: SMP's channels // reduction is 0 below `reduction` channels and then fails.
        hidden = max(1, channels // reduction)
        super().__init__(
            AdaptiveAvgPool(1, spatial_dims),
            conv(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            conv(hidden, channels, kernel_size=1),
            nn.Sigmoid(),
        )


class MFABBlock(nn.Module):
    """Multi-scale fusion attention block (MFAB, Fan et al. 2020).

    ``h = resize(hl_conv(x))`` (3x3 then 1x1 conv to the skip's channels), ``h = h * (SE_hl(h) + SE_ll(skip))``,
    then ``conv2(conv1(cat([h, skip])))``.

    Args:
        in_channels: channels of the deeper input.
        skip_channels: channels of the skip (> 0; a stage without a skip is a :class:`MAnetDecoderBlock`).
        out_channels: channels of the output.
        use_norm: norm of the conv blocks (any form ``decoder_use_norm`` takes).
        reduction: squeeze-excitation reduction ratio.
        interpolation_mode: up-sampling mode of the deeper input.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        use_norm: NormSpec = "batchnorm",
        reduction: int = 16,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        self.hl_conv = nn.Sequential(
            ConvNormReLU(in_channels, in_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims),
            ConvNormReLU(in_channels, skip_channels, 1, use_norm=use_norm, spatial_dims=spatial_dims),
        )
        self.SE_ll = SqueezeExcitation(skip_channels, reduction, spatial_dims)
        self.SE_hl = SqueezeExcitation(skip_channels, reduction, spatial_dims)
        self.conv1 = ConvNormReLU(
            2 * skip_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims
        )
        self.conv2 = ConvNormReLU(
            out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims
        )

    def forward(self, x: torch.Tensor, size: List[int], skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if skip is None:
            raise ValueError("MFABBlock fuses a skip feature: `skip` must be a tensor")
        x = self.hl_conv(x)
        # Resizing to the skip's size (x2 on stride-multiple inputs, as SMP does) keeps any feature size valid.
        x = F.interpolate(x, size=size, mode=self.interpolation_mode)
        x = x * (self.SE_hl(x) + self.SE_ll(skip))
        x = torch.cat([x, skip], dim=1)
        # Two statements: rebinding x frees the concatenated input before conv2 runs (nested, it lived to the end).
        x = self.conv1(x)
        return self.conv2(x)


class MAnetDecoderBlock(nn.Module):
    """Plain decoder stage: resize, concatenate the skip if any, two conv-norm-ReLU blocks (``conv1``, ``conv2``)."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        use_norm: NormSpec = "batchnorm",
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        self.conv1 = ConvNormReLU(
            in_channels + skip_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims
        )
        self.conv2 = ConvNormReLU(
            out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims
        )

    def forward(self, x: torch.Tensor, size: List[int], skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode=self.interpolation_mode)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        # Two statements: rebinding x frees the concatenated input before conv2 runs (nested, it lived to the end).
        x = self.conv1(x)
        return self.conv2(x)


class MAnetDecoder(nn.Module):
    """PAB on the deepest feature, then one block per encoder stage, deepest first.

    A stage whose skip has channels is an :class:`MFABBlock`; one without (the last, or a 0-channel placeholder)
    is a :class:`MAnetDecoderBlock`.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        decoder_channels: output channels of each block; one per encoder stage.
        n_blocks: number of blocks (must equal ``len(decoder_channels)``; kept for SMP compatibility).
        reduction: squeeze-excitation reduction ratio in the MFAB blocks.
        use_norm: norm of the conv blocks (any form ``decoder_use_norm`` takes).
        pab_channels: query/key channels of the PAB.
        interpolation_mode: up-sampling mode of every block.
        spatial_dims: 2 or 3.

    Raises:
        ValueError: if ``n_blocks`` and ``decoder_channels`` disagree.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("center", "blocks.*")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        n_blocks: int = 5,
        reduction: int = 16,
        use_norm: NormSpec = "batchnorm",
        pab_channels: int = 64,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        if n_blocks != len(decoder_channels):
            raise ValueError(
                f"`decoder_channels` must have one entry per encoder stage (encoder_depth={n_blocks}), "
                f"got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        deep_to_shallow = list(encoder_channels[1:])[::-1]
        in_channels = [deep_to_shallow[0]] + list(decoder_channels[:-1])
        skip_channels = deep_to_shallow[1:] + [0]
        self.center = PABBlock(deep_to_shallow[0], pab_channels=pab_channels, spatial_dims=spatial_dims)
        blocks: List[nn.Module] = []
        for i, s, o in zip(in_channels, skip_channels, decoder_channels):
            if s > 0:
                blocks.append(MFABBlock(i, s, o, use_norm, reduction, interpolation_mode, spatial_dims))
            else:
                blocks.append(MAnetDecoderBlock(i, s, o, use_norm, interpolation_mode, spatial_dims))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        sizes = [list(f.shape[2:]) for f in features][::-1]
        deep_to_shallow = features[1:][::-1]
        skips = deep_to_shallow[1:]
        x = self.center(deep_to_shallow[0])
        for i, block in enumerate(self.blocks):
            # A transformer encoder's 0-channel placeholder reaches a plain block: concatenating it is a no-op.
            skip = skips[i] if i < len(skips) else None
            x = block(x, sizes[i + 1], skip)
        return x
