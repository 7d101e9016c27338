"""FPN decoder (Lin et al. 2017, "Feature Pyramid Networks for Object Detection", sec. 3) with the semantic
segmentation branch of Kirillov et al. 2019 ("Panoptic Feature Pyramid Networks", sec. 3 and Fig. 3).

Top-down pathway: the deepest feature is projected by a 1x1 conv; each coarser level is up-sampled to the next
finer one and added to that level's 1x1-projected encoder feature (Lin et al. 2017, Fig. 3). Each pyramid level
then goes through conv3x3-GroupNorm-ReLU blocks, up-sampling x2 after each, until it reaches stride 4 (Kirillov
et al. 2019, sec. 3); the four maps are summed (or concatenated) and passed through spatial dropout.
"""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd

MERGE_POLICIES = ("add", "cat")
# GroupNorm with 32 groups, as Kirillov et al. 2019 (sec. 3) and SMP use; channels must be a multiple of it.
GROUP_NORM_GROUPS = 32


class ConvGroupNormReLU(nn.Module):
    """conv3x3 (no bias) -> GroupNorm(32) -> ReLU, optionally followed by bilinear up-sampling to a given size.

    Keys ``block.0`` (conv) and ``block.1`` (norm), as SMP's ``Conv3x3GNReLU``.
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = False, spatial_dims: int = 2):
        super().__init__()
        self.upsample = upsample
        self.mode = nd.interpolation_mode("bilinear", spatial_dims)
        self.block = nn.Sequential(
            nd.conv_type(spatial_dims)(in_channels, out_channels, 3, stride=1, padding=1, bias=False),
            nn.GroupNorm(GROUP_NORM_GROUPS, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, size: Optional[List[int]] = None) -> torch.Tensor:
        x = self.block(x)
        if self.upsample and size is not None:
            x = F.interpolate(x, size=size, mode=self.mode, align_corners=True)
        return x


Conv3x3GNReLU = ConvGroupNormReLU  # SMP's name for the same block


class FPNBlock(nn.Module):
    """Top-down step (Lin et al. 2017, Fig. 3): up-sample the coarser map, add the 1x1-projected skip."""

    def __init__(
        self,
        pyramid_channels: int,
        skip_channels: int,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        # SMP's public attribute name; resolved for spatial_dims ("bilinear" -> "trilinear" in 3D).
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        self.skip_conv = nd.conv_type(spatial_dims)(skip_channels, pyramid_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Resize to the skip's exact size (equal to x2 for divisible inputs); PyTorch's default corner alignment.
        x = F.interpolate(x, size=skip.shape[2:], mode=self.interpolation_mode)
        return x + self.skip_conv(skip)


class SegmentationBlock(nn.Module):
    """``n_upsamples`` conv-GN-ReLU-up x2 steps (at least one conv), bringing a pyramid level to stride 4."""

    def __init__(self, in_channels: int, out_channels: int, n_upsamples: int = 0, spatial_dims: int = 2):
        super().__init__()
        first = ConvGroupNormReLU(in_channels, out_channels, upsample=n_upsamples > 0, spatial_dims=spatial_dims)
        layers = [first]
        for _ in range(1, n_upsamples):
            layers.append(ConvGroupNormReLU(out_channels, out_channels, upsample=True, spatial_dims=spatial_dims))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sizes: List[List[int]]) -> torch.Tensor:
        """``sizes``: the target size after each up-sampling step (the finer pyramid levels, in order)."""
        for i, layer in enumerate(self.block):
            x = layer(x, sizes[i] if i < len(sizes) else None)
        return x


class MergeBlock(nn.Module):
    """Sum (``"add"``) or channel-concatenate (``"cat"``) same-size maps (Kirillov et al. 2019, sec. 3)."""

    def __init__(self, policy: str):
        super().__init__()
        if policy not in MERGE_POLICIES:
            raise ValueError(f"`decoder_merge_policy` must be one of {MERGE_POLICIES}, got {policy!r}")
        self.policy = policy

    def forward(self, x: List[torch.Tensor]) -> torch.Tensor:
        """``x``: the maps to merge (SMP's argument name)."""
        if self.policy == "add":
            out = x[0]
            for item in x[1:]:
                out = out + item
            return out
        return torch.cat(x, dim=1)


class FPNDecoder(nn.Module):
    """FPN top-down pathway + semantic segmentation branch on the last four encoder features.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first); at least four entries are used, so the
            encoder depth must be >= 3 (at depth 3 the input itself is the finest level, as in SMP).
        encoder_depth: depth of the encoder (kept for SMP compatibility; must be >= 3).
        pyramid_channels: channels of the pyramid levels (1x1 projections).
        segmentation_channels: channels of the segmentation blocks; a multiple of 32 (GroupNorm groups).
        dropout: spatial dropout probability applied after merging, in [0, 1].
        merge_policy: ``"add"`` (output has ``segmentation_channels``) or ``"cat"`` (4x as many).
        interpolation_mode: up-sampling mode of the top-down pathway (``"nearest"``, ``"bilinear"``, ...).
        spatial_dims: 2 or 3.

    Returns (forward):
        One tensor at the stride of the fourth-deepest feature (stride 4 at encoder depth 5).

    Raises:
        ValueError: for an encoder depth below 3, an unknown merge policy or interpolation mode, channel
            counts that are not positive (or not a multiple of 32 for ``segmentation_channels``), or a dropout
            outside [0, 1].
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("p5", "p4", "p3", "p2", "seg_blocks.*")

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_depth: int = 5,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        dropout: float = 0.2,
        merge_policy: str = "add",
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or encoder_depth < 3:
            raise ValueError(f"`encoder_depth` for FPN must be an int >= 3 (3..5), got {encoder_depth!r}")
        if len(encoder_channels) < 4:
            raise ValueError(
                "FPN needs at least 4 encoder features (encoder_depth >= 3), got channels "
                f"{tuple(encoder_channels)}"
            )
        for name, value in (("decoder_pyramid_channels", pyramid_channels),
                            ("decoder_segmentation_channels", segmentation_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if segmentation_channels % GROUP_NORM_GROUPS:
            raise ValueError(
                f"`decoder_segmentation_channels` must be a multiple of {GROUP_NORM_GROUPS} (GroupNorm groups), "
                f"got {segmentation_channels!r}"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"`decoder_dropout` must be a number in [0, 1], got {dropout!r}")
        self.merge = MergeBlock(merge_policy)  # validates the policy first
        self.segmentation_channels = segmentation_channels
        self.out_channels = segmentation_channels * (4 if merge_policy == "cat" else 1)

        # Deepest first: c5 (projected by p5), then the skips of p4, p3, p2.
        c5, c4, c3, c2 = list(encoder_channels)[::-1][:4]
        if min(c5, c4, c3, c2) < 1:
            # Transformer-style encoders have a 0-channel placeholder at stride 2 (SMP fails in forward here).
            raise ValueError(
                f"FPN at encoder_depth={encoder_depth} uses the last four encoder features, channels "
                f"{(c2, c3, c4, c5)}, but one of them is an empty placeholder (0 channels); this encoder needs "
                f"encoder_depth=5"
            )
        conv = nd.conv_type(spatial_dims)
        self.p5 = conv(c5, pyramid_channels, kernel_size=1)
        self.p4 = FPNBlock(pyramid_channels, c4, interpolation_mode, spatial_dims)
        self.p3 = FPNBlock(pyramid_channels, c3, interpolation_mode, spatial_dims)
        self.p2 = FPNBlock(pyramid_channels, c2, interpolation_mode, spatial_dims)
        self.seg_blocks = nn.ModuleList(
            SegmentationBlock(pyramid_channels, segmentation_channels, n_upsamples, spatial_dims)
            for n_upsamples in (3, 2, 1, 0)
        )
        self.dropout = nd.dropout_type(spatial_dims)(p=float(dropout), inplace=True)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        return self.forward_stages(features)[0]

    def forward_stages(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Return the output and the pyramid levels ``p5, p4, p3, p2`` (coarse to fine; for deep supervision)."""
        c2, c3, c4, c5 = features[-4:]
        p5 = self.p5(c5)
        p4 = self.p4(p5, c4)
        p3 = self.p3(p4, c3)
        p2 = self.p2(p3, c2)
        sizes = [list(p4.shape[2:]), list(p3.shape[2:]), list(p2.shape[2:])]
        # Level k (p5: 3 steps, ..., p2: 0) is brought to p2's size through the finer levels' sizes.
        levels = (p5, p4, p3, p2)
        outputs = [block(p, sizes[3 - n :]) for block, p, n in zip(self.seg_blocks, levels, (3, 2, 1, 0))]
        return self.dropout(self.merge(outputs)), [p5, p4, p3, p2]
