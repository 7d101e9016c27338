"""DPT decoder: reassemble ViT tokens into a pyramid and fuse it coarse to fine (Ranftl et al. 2021, sec. 3).

Ranftl, Bochkovskiy, Koltun, "Vision Transformers for Dense Prediction", ICCV 2021 (arXiv:2103.13413). Each chosen
encoder block goes through

1. *Read* (sec. 3, the three readout variants): the prefix (class / register) tokens are ignored, added to every patch token, or
   concatenated to it and projected back with a linear layer + GELU;
2. *Concatenate* into a grid and *Resample* (sec. 3): a 1x1 conv to ``intermediate_channels[i]``, a stride change to ``4 * 2**i`` (transposed
   conv up, 3x3 strided conv down, identity when equal), a 3x3 conv to ``fusion_channels``;
3. *Fusion* (fig. 1, right; RefineNet-style): residual conv units, the coarser path added, up-sampling x2
   (bilinear, corners aligned) and a 1x1 projection.

State-dict keys, layer order and outputs are SMP 0.6's (``projection_blocks``, ``reassemble_blocks``,
``fusion_blocks``, ``segmentation_head.head``). One difference: each fusion block up-samples to the size of the
next (finer) feature instead of exactly x2, so token grids of odd size (inputs that are multiples of the patch
size but not of twice it, or patch sizes that are not powers of two) work; where x2 fits, both are the same
operation (with aligned corners the result depends only on the sizes).
"""

from typing import Callable, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base.exportable import dense_when_exporting
from smp_like.base.modules import Activation

READOUTS = ("ignore", "add", "cat")


def _check_2d(spatial_dims: int) -> None:
    if spatial_dims != 2:
        raise ValueError(
            f"DPT is 2D only (its encoder is a timm vision transformer), got spatial_dims={spatial_dims!r}"
        )


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def _grid(tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N, H*W, C) -> (N, C, H, W) with the spatial shape of ``like``."""
    grid = tokens.transpose(1, 2).reshape(like.shape[0], tokens.shape[-1], like.shape[2], like.shape[3])
    # A channels-last view; contiguous while exporting, where torch.export cannot prove the layout guards that
    # batch norm adds for channels-last maps of dynamic size.
    return dense_when_exporting(grid)


class ReadoutIgnoreBlock(nn.Module):
    """Read by dropping the prefix tokens (DPT sec. 3, "ignore")."""

    def forward(self, features: torch.Tensor, prefix_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        return features


class ReadoutAddBlock(nn.Module):
    """Read by adding the prefix tokens, averaged, to every patch token (DPT sec. 3, "add")."""

    def forward(self, features: torch.Tensor, prefix_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        if prefix_tokens is None:
            return features
        readout = prefix_tokens.mean(dim=1)
        return features + readout[:, :, None, None]


class ReadoutConcatBlock(nn.Module):
    """Read by concatenating the first prefix token to every patch token, then linear + GELU (DPT sec. 3, "proj").

    Without prefix tokens the linear layer maps the patch tokens alone (``in_features = embed_dim``), as in SMP.
    """

    def __init__(self, embed_dim: int, has_prefix_tokens: bool = True):
        super().__init__()
        in_features = 2 * embed_dim if has_prefix_tokens else embed_dim
        self.project = nn.Sequential(nn.Linear(in_features, embed_dim), nn.GELU())

    def forward(self, features: torch.Tensor, prefix_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        tokens = _tokens(features)
        if prefix_tokens is not None:
            readout = prefix_tokens[:, :1].expand(-1, tokens.shape[1], -1)
            tokens = torch.cat([tokens, readout], dim=-1)
        return _grid(self.project(tokens), features)


def _readout(readout: str, channels: int, has_prefix_tokens: bool) -> nn.Module:
    if readout == "cat":
        return ReadoutConcatBlock(channels, has_prefix_tokens)
    if readout == "add":
        return ReadoutAddBlock()
    return ReadoutIgnoreBlock()


class ReassembleBlock(nn.Module):
    """1x1 conv, stride change from ``stride`` to ``target_stride``, 3x3 conv to the fusion width (DPT sec. 3).

    Up by ``stride // target_stride`` with a transposed conv, down by ``target_stride // stride`` with a 3x3
    strided conv (padding 1, so sizes round up), identity when equal — SMP's factors, floored as SMP floors them.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int,
                 target_stride: int):
        super().__init__()
        self.project_to_out_channel = nn.Conv2d(in_channels, mid_channels, kernel_size=1)
        if stride > target_stride:
            factor = stride // target_stride
            self.upsample: nn.Module = nn.ConvTranspose2d(
                mid_channels, mid_channels, kernel_size=factor, stride=factor
            )
        elif stride < target_stride:
            factor = target_stride // stride
            self.upsample = nn.Conv2d(
                mid_channels, mid_channels, kernel_size=3, stride=factor, padding=1
            )
        else:
            self.upsample = nn.Identity()
        self.project_to_feature_dim = nn.Conv2d(
            mid_channels, out_channels, kernel_size=3, padding=1, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_to_feature_dim(self.upsample(self.project_to_out_channel(x)))


class ResidualConvBlock(nn.Module):
    """Pre-activation residual conv unit: x + BN(conv(ReLU(BN(conv(ReLU(x)))))) (DPT fig. 1, from RefineNet)."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(feature_dim, feature_dim, kernel_size=3, padding=1, bias=False)
        self.batch_norm_1 = nn.BatchNorm2d(feature_dim)
        self.conv_2 = nn.Conv2d(feature_dim, feature_dim, kernel_size=3, padding=1, bias=False)
        self.batch_norm_2 = nn.BatchNorm2d(feature_dim)
        self.activation = nn.ReLU()  # not in place: the input is the residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.batch_norm_1(self.conv_1(self.activation(x)))
        out = self.batch_norm_2(self.conv_2(self.activation(out)))
        return x + out


class FusionBlock(nn.Module):
    """RCU(feature) (+ the coarser path) -> RCU -> bilinear up-sampling -> 1x1 conv (DPT fig. 1, right)."""

    def __init__(self, feature_dim: int):
        super().__init__()
        self.residual_conv_block1 = ResidualConvBlock(feature_dim)
        self.residual_conv_block2 = ResidualConvBlock(feature_dim)
        self.project = nn.Conv2d(feature_dim, feature_dim, kernel_size=1)

    def forward(
        self,
        feature: torch.Tensor,
        previous_feature: Optional[torch.Tensor] = None,
        size: Optional[List[int]] = None,
    ) -> torch.Tensor:
        """Fuse ``feature`` with the coarser path and up-sample to ``size`` (default: twice the size)."""
        x = self.residual_conv_block1(feature)
        if previous_feature is not None:
            x = x + previous_feature
        x = self.residual_conv_block2(x)
        if size is None:
            size = [2 * x.shape[2], 2 * x.shape[3]]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.project(x)


class DPTDecoder(nn.Module):
    """Read, reassemble and fuse the features of a (ViT) encoder, coarse to fine (Ranftl et al. 2021).

    Args:
        encoder_out_channels: channels of each encoder feature.
        encoder_output_strides: stride of each encoder feature (16 for every block of a ViT-*/16).
        encoder_has_prefix_tokens: whether features come with class / register tokens.
        readout: ``"ignore"``, ``"add"`` or ``"cat"`` (how prefix tokens are used).
        intermediate_channels: width of each reassembled level (one per feature).
        fusion_channels: width of the fusion path.
        spatial_dims: must be 2.

    Returns (forward):
        The fused map at stride 2 of the input (N, fusion_channels, H/2, W/2).

    Raises:
        ValueError: for mismatched lengths, bad channel counts, an unknown readout, or 3D.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("reassemble_blocks.*", "fusion_blocks.*")

    def __init__(
        self,
        encoder_out_channels: Sequence[int] = (756, 756, 756, 756),
        encoder_output_strides: Sequence[int] = (16, 16, 16, 16),
        encoder_has_prefix_tokens: bool = True,
        readout: str = "cat",
        intermediate_channels: Sequence[int] = (256, 512, 1024, 1024),
        fusion_channels: int = 256,
        spatial_dims: int = 2,
    ):
        super().__init__()
        _check_2d(spatial_dims)
        if readout not in READOUTS:
            raise ValueError(f"`decoder_readout` must be one of {READOUTS}, got {readout!r}")
        for what, values in (
            ("decoder_intermediate_channels", intermediate_channels),
            ("encoder_out_channels", encoder_out_channels),
            ("encoder_output_strides", encoder_output_strides),
        ):
            if isinstance(values, (str, bytes)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
            ):
                raise ValueError(f"`{what}` must be a sequence of positive ints, got {values!r}")
        if not len(encoder_out_channels) == len(encoder_output_strides) == len(intermediate_channels):
            raise ValueError(
                f"`decoder_intermediate_channels` must have one entry per encoder feature (encoder_depth="
                f"{len(encoder_out_channels)}), got {len(intermediate_channels)}: {tuple(intermediate_channels)}"
            )
        if isinstance(fusion_channels, bool) or not isinstance(fusion_channels, int) or fusion_channels < 1:
            raise ValueError(f"`decoder_fusion_channels` must be a positive int, got {fusion_channels!r}")
        self.readout = readout
        self.has_prefix_tokens = bool(encoder_has_prefix_tokens)
        depth = len(encoder_out_channels)
        # Level i is laid out at stride 4 * 2**i: 4, 8, 16, 32 for the usual four blocks.
        target_strides = [4 * 2**i for i in range(depth)]
        self.projection_blocks = nn.ModuleList(
            [_readout(readout, c, self.has_prefix_tokens) for c in encoder_out_channels]
        )
        self.reassemble_blocks = nn.ModuleList(
            [
                ReassembleBlock(c, mid, fusion_channels, s, t)
                for c, mid, s, t in zip(encoder_out_channels, intermediate_channels, encoder_output_strides,
                                        target_strides)
            ]
        )
        self.fusion_blocks = nn.ModuleList([FusionBlock(fusion_channels) for _ in range(depth)])

    def forward(
        self,
        features: List[torch.Tensor],
        prefix_tokens: Optional[List[Optional[torch.Tensor]]] = None,
    ) -> torch.Tensor:
        """Decode ``features`` (shallow to deep) with their ``prefix_tokens`` (a list, or None for none)."""
        depth = len(self.fusion_blocks)
        if len(features) != depth:
            raise ValueError(f"DPTDecoder was built for {depth} encoder features, got {len(features)}")
        if prefix_tokens is None:
            prefix_tokens = [None] * depth
        if len(prefix_tokens) != depth:
            raise ValueError(f"`prefix_tokens` must have one entry per feature ({depth}), got {len(prefix_tokens)}")
        if self.readout == "cat" and self.has_prefix_tokens and any(p is None for p in prefix_tokens):
            raise ValueError("readout='cat' was built for an encoder with prefix tokens: pass its prefix_tokens")

        levels = [
            reassemble(read(feature, tokens))
            for read, reassemble, feature, tokens in zip(
                self.projection_blocks, self.reassemble_blocks, features, prefix_tokens
            )
        ]
        x: Optional[torch.Tensor] = None
        for i, block in enumerate(self.fusion_blocks):
            level = depth - 1 - i
            # Up-sample to the next finer level's size; the finest level simply doubles.
            size = list(levels[level - 1].shape[2:]) if level > 0 else None
            x = block(levels[level], x, size)
        assert x is not None
        return x


class DPTSegmentationHead(nn.Module):
    """conv-BN-ReLU-dropout-conv, then bilinear up-sampling and the activation (SMP's DPT head keys).

    Args:
        in_channels: decoder width (``decoder_fusion_channels``).
        out_channels: number of classes.
        activation: activation name or callable (see :class:`~smp_like.base.modules.Activation`).
        kernel_size: kernel of the first conv.
        upsampling: factor used when ``forward`` is not given a target ``size``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        activation: Union[str, Callable, None] = None,
        kernel_size: int = 3,
        upsampling: float = 2.0,
    ):
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size=kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )
        self.activation = Activation(activation)
        self.upsampling_factor = upsampling

    def forward(self, x: torch.Tensor, size: Optional[List[int]] = None) -> torch.Tensor:
        """Return the mask, up-sampled to ``size`` (the input's) or by ``upsampling``."""
        x = self.head(x)
        if size is None:
            size = [int(x.shape[2] * self.upsampling_factor), int(x.shape[3] * self.upsampling_factor)]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.activation(x)
