"""U-Net decoder (Ronneberger et al. 2015): upsample, concatenate the skip of the same stride, two convs."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.modules import Attention, ConvNormReLU


class UnetDecoderBlock(nn.Module):
    """Resize to the skip's size, concatenate it, attend, conv-norm-relu twice, attend."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        attention_type: Optional[str] = None,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        merged = in_channels + skip_channels
        self.conv1 = ConvNormReLU(merged, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims)
        self.attention1 = Attention(attention_type, in_channels=merged, spatial_dims=spatial_dims)
        self.conv2 = ConvNormReLU(out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims)
        self.attention2 = Attention(attention_type, in_channels=out_channels, spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor, size: List[int], skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        # Resizing to the skip's exact size (rather than x2) is what lets any input size through.
        x = F.interpolate(x, size=size, mode=self.interpolation_mode)
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], dim=1))
        x = self.conv2(self.conv1(x))
        return self.attention2(x)


class UnetDecoder(nn.Module):
    """Stack of :class:`UnetDecoderBlock`, deepest feature first, one block per encoder stage.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        decoder_channels: output channels of each block; its length is the number of blocks.
        n_blocks: number of blocks (must equal ``len(decoder_channels)``; kept for SMP compatibility).
        use_norm, attention_type, interpolation_mode: per-block options (see :class:`UnetDecoderBlock`).
        spatial_dims: 2 or 3.

    Raises:
        ValueError: if the number of blocks and ``decoder_channels`` disagree.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        n_blocks: int = 5,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        attention_type: Optional[str] = None,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        if n_blocks != len(decoder_channels):
            raise ValueError(
                f"`decoder_channels` must have one entry per encoder stage (encoder_depth={n_blocks}), "
                f"got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        # Deepest first; the stride-1 feature (the input itself) is never a skip.
        deep_to_shallow = list(encoder_channels[1:])[::-1]
        in_channels = [deep_to_shallow[0]] + list(decoder_channels[:-1])
        skip_channels = deep_to_shallow[1:] + [0]
        self.center = nn.Identity()
        self.blocks = nn.ModuleList(
            UnetDecoderBlock(i, s, o, use_norm, attention_type, interpolation_mode, spatial_dims)
            for i, s, o in zip(in_channels, skip_channels, decoder_channels)
        )

    def forward(self, features: List[torch.Tensor], time_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if time_emb is not None:
            raise ValueError("UnetDecoder does not take a time embedding")
        return self._run(features, keep_stages=False)[0]

    def forward_stages(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Return the output and every block's output, coarse to fine (for deep supervision)."""
        return self._run(features, keep_stages=True)

    def _run(self, features: List[torch.Tensor], keep_stages: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        sizes = [list(f.shape[2:]) for f in features][::-1]
        deep_to_shallow = features[1:][::-1]
        skips = deep_to_shallow[1:]
        x = self.center(deep_to_shallow[0])
        # Only kept when asked: holding every block's output would raise the peak memory of a plain forward.
        stages: List[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            skip = skips[i] if i < len(skips) else None
            x = block(x, sizes[i + 1], skip)
            if keep_stages:
                stages.append(x)
        return x, stages
