"""Hierarchical pyramid decoder: every stage's output kept (coarse to fine), plus the fusion of all stages.

The stages are U-Net blocks (Ronneberger et al. 2015): resize to the skip's size, concatenate, two conv-norm-relu.
Unlike :class:`~smp_like.decoders.unet.decoder.UnetDecoder`, :class:`HierarchicalDecoder` returns the list of all
stage outputs, which feed the side heads of deep supervision (Lee et al. 2015, "Deeply-Supervised Nets") and
:class:`PyramidFusion`, which merges them into one map at the finest stage's size.
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.modules import ConvNormReLU
from smp_like.decoders.unet.decoder import UnetDecoderBlock


class HierarchicalDecoder(nn.Module):
    """U-Net blocks, deepest first, returning every block's output (coarse to fine).

    Block ``i`` (0 = deepest) resizes its input to the size of the encoder feature of the next finer stride, so its
    output has exactly that feature's size; the last block works at the input's own size (stride 1).

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        decoder_channels: output channels of each block, coarse to fine; one per encoder stage.
        use_norm: ``"batchnorm"``, ``"identity"``, ... (see :class:`~smp_like.base.modules.ConvNormReLU`).
        interpolation_mode: up-sampling mode of each block (``"nearest"``, ``"bilinear"``, ...).
        spatial_dims: 2 or 3.

    Raises:
        ValueError: if ``decoder_channels`` does not have one entry per encoder stage.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("blocks.*",)

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        depth = len(encoder_channels) - 1
        if len(decoder_channels) != depth:
            raise ValueError(
                f"`decoder_channels` must have one entry per encoder stage ({depth}), "
                f"got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        deep_to_shallow = list(encoder_channels[1:])[::-1]
        in_channels = [deep_to_shallow[0]] + list(decoder_channels[:-1])
        skip_channels = deep_to_shallow[1:] + [0]  # the stride-1 feature (the input) is never a skip
        self.out_channels = tuple(int(c) for c in decoder_channels)
        self.blocks = nn.ModuleList(
            UnetDecoderBlock(i, s, o, use_norm, None, interpolation_mode, spatial_dims)
            for i, s, o in zip(in_channels, skip_channels, decoder_channels)
        )

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """Return the output of every block, coarse to fine (the last one at the input's size)."""
        sizes = [list(f.shape[2:]) for f in features][::-1]
        deep_to_shallow = features[1:][::-1]
        skips = deep_to_shallow[1:]
        x = deep_to_shallow[0]
        stages: List[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            skip = skips[i] if i < len(skips) else None
            x = block(x, sizes[i + 1], skip)
            stages.append(x)
        return stages


class PyramidFusion(nn.Module):
    """Up-sample every stage to the finest stage's size, concatenate, project with a 1x1 conv-norm-relu.

    Args:
        in_channels: channels of each stage, coarse to fine.
        out_channels: channels of the fused map.
        use_norm: norm of the projection.
        interpolation_mode: up-sampling mode (``"bilinear"`` becomes ``"trilinear"`` in 3D).
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        self.project = ConvNormReLU(sum(in_channels), out_channels, 1, use_norm=use_norm, spatial_dims=spatial_dims)

    def forward(self, stages: List[torch.Tensor]) -> torch.Tensor:
        size = list(stages[-1].shape[2:])
        resized = [s if list(s.shape[2:]) == size else F.interpolate(s, size=size, mode=self.interpolation_mode)
                   for s in stages]
        return self.project(torch.cat(resized, dim=1))
