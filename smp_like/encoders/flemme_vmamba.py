"""Flemme-style VMamba encoders (``vmamba``, ``vmamba_small``, ``vmamba_base``) for 2D images and 3D volumes.

Structure (Liu et al. 2024, "VMamba", fig. 3, with Flemme's parameter names): a patch embedding (conv, kernel
= stride = ``patch_size``, input padded at its end to a multiple of ``patch_size``) to ``patch_channel``
channels, then stages of VSS building blocks (see :mod:`smp_like.encoders._vmamba_blocks`), each after the
first preceded by a patch merging (3×3 conv of stride 2 + norm, VMamba v2's down-sampling) to the next of
``down_channels``; an optional middle stage at ``middle_channels`` refines the deepest feature.

Features follow the smp_like encoder contract: ``depth + 1`` channels-first maps of strides 1, 2, 4, …; levels
below the patch stride are 0-channel placeholders (as SMP does for transformers). Scans run on the actual
token grid, so any input size works and nothing depends on an image size.
"""

import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.embedding import check_injection_mode
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._vmamba_blocks import TokenNorm, VMambaStage, check_block_kwargs

__all__ = ["FlemmeVMambaEncoder", "flemme_vmamba_encoders"]


class _PatchEmbedding(nn.Module):
    """Pad to a multiple of ``patch_size``, conv with kernel = stride = ``patch_size``, norm (channels-first
    out)."""

    def __init__(
        self, in_channels: int, out_channels: int, patch_size: int, spatial_dims: int, norm: nn.Module
    ):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nd.conv_type(spatial_dims)(in_channels, out_channels, patch_size, stride=patch_size)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: List[int] = []
        for size in reversed(x.shape[2:]):
            pads += [0, (-size) % self.patch_size]
        if any(pads):
            x = F.pad(x, pads)
        x = self.proj(x)
        return torch.movedim(self.norm(torch.movedim(x, 1, -1)), -1, 1)


class _PatchMerging(nn.Module):
    """Down-sampling by 2 (3×3 conv, stride 2, padding 1: ceil(n / 2) for any n) then a token norm."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int, norm: nn.Module):
        super().__init__()
        self.reduction = nd.conv_type(spatial_dims)(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduction(x)
        return torch.movedim(self.norm(torch.movedim(x, 1, -1)), -1, 1)


class FlemmeVMambaEncoder(nn.Module, EncoderMixin):
    """VMamba encoder with Flemme's parameters, n-d, any input size, optional time-embedding injection.

    Args:
        in_channels: input channels.
        depth: number of features after the input (from ``encoder_depth``); needs ``2**depth >= patch_size``.
        spatial_dims: 2 or 3.
        patch_size: patch-embedding stride, a power of two (2, 4, …).
        patch_channel: channels after the patch embedding (the first real feature).
        down_channels: widths after each patch merging; needs at least ``depth - log2(patch_size)`` entries.
        middle_channels: if given, a middle stage at this width (linear projection + blocks) refines the
            deepest feature, which then has ``middle_channels`` channels.
        building_block: one of ``vmamba``, ``vmamba2``, ``double_vmamba``, ``double_vmamba2``, ``res_vmamba``,
            ``res_vmamba2``.
        num_blocks: building blocks per stage: an int, or one entry per stage (at least as many as stages
            built; the middle stage uses the last used entry).
        normalization: token norm (``layer``, ``rms``, ``batch``, ``group``, ``instance``).
        num_norm_groups: groups of the ``group`` norm.
        activation: MLP activation.
        dropout: dropout in the mixers and MLPs.
        drop_path: stochastic-depth rate, rising linearly from 0 to this over all blocks.
        mlp_hidden_ratio: MLP width / channels (0: no MLP).
        state_channel, conv_kernel_size, inner_factor, dt_min, dt_max, dt_init_floor, scan_mode, flip_scan,
            head_channel, chunk_size: the selective-scan mixer (see ``SS2D``).
        time_embedding_dim: if given, every block injects an (N, time_embedding_dim) embedding.
        time_injection: ``gate_bias``, ``gate``, ``bias`` or ``cross_attention``.

    Raises:
        ValueError: for any invalid argument, naming it.
    """

    supports_time_embedding = True
    _dilation_refusal = ("Flemme VMamba encoders", "their patch embedding and merging cannot be dilated")

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 5,
        spatial_dims: int = 2,
        patch_size: int = 4,
        patch_channel: int = 96,
        down_channels: Sequence[int] = (192, 384, 768, 1536),
        middle_channels: Optional[int] = None,
        building_block: str = "vmamba",
        num_blocks: Union[int, Sequence[int]] = (2, 2, 5, 2, 2),
        normalization: str = "layer",
        num_norm_groups: int = 1,
        activation: str = "gelu",
        dropout: float = 0.0,
        drop_path: float = 0.1,
        mlp_hidden_ratio: float = 4.0,
        state_channel: int = 16,
        conv_kernel_size: int = 3,
        inner_factor: float = 2.0,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_mode: str = "cross",
        flip_scan: bool = False,
        head_channel: int = 16,
        chunk_size: int = 64,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("depth", depth)
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        check_positive_int("patch_size", patch_size)
        if patch_size & (patch_size - 1):
            raise ValueError(f"`patch_size` must be a power of two (1, 2, 4, 8, ...), got {patch_size!r}")
        patch_level = int(math.log2(patch_size))
        if patch_level > depth:
            raise ValueError(
                f"`patch_size`={patch_size} has stride 2**{patch_level}, deeper than `depth` (encoder_depth)="
                f"{depth}; use patch_size <= {2**depth} or a larger depth"
            )
        check_positive_int("patch_channel", patch_channel)
        down_channels = tuple(down_channels)
        for c in down_channels:
            check_positive_int("down_channels", c)
        num_merges = depth - patch_level
        if len(down_channels) < num_merges:
            raise ValueError(
                f"`down_channels` needs at least {num_merges} entries for depth={depth} and "
                f"patch_size={patch_size}, got {down_channels!r}"
            )
        if middle_channels is not None:
            check_positive_int("middle_channels", middle_channels)
        num_stages = num_merges + 1
        if isinstance(num_blocks, int) and not isinstance(num_blocks, bool):
            blocks_per_stage = [num_blocks] * num_stages
        else:
            blocks_per_stage = list(num_blocks)
            if len(blocks_per_stage) < num_stages:
                raise ValueError(
                    f"`num_blocks` must be an int or have at least {num_stages} entries (one per stage), "
                    f"got {num_blocks!r}"
                )
        for n in blocks_per_stage:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"`num_blocks` entries must be ints >= 0, got {num_blocks!r}")
        block_kwargs = dict(
            normalization=normalization,
            num_norm_groups=num_norm_groups,
            activation=activation,
            dropout=dropout,
            mlp_hidden_ratio=mlp_hidden_ratio,
            state_channel=state_channel,
            conv_kernel_size=conv_kernel_size,
            inner_factor=inner_factor,
            dt_min=dt_min,
            dt_max=dt_max,
            dt_init_floor=dt_init_floor,
            scan_mode=scan_mode,
            flip_scan=flip_scan,
            head_channel=head_channel,
            chunk_size=chunk_size,
        )
        check_block_kwargs(building_block=building_block, drop_path=drop_path, **block_kwargs)

        widths = [patch_channel, *down_channels[:num_merges]]
        counts = blocks_per_stage[:num_stages] + (
            [blocks_per_stage[num_stages - 1]] if middle_channels else []
        )
        total = sum(counts)
        # Stochastic depth rises linearly over all blocks (plain Python, so the encoder builds on the meta
        # device).
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]

        def norm(channels: int) -> nn.Module:
            return TokenNorm(normalization, channels, num_norm_groups)

        self.patch_embed = _PatchEmbedding(
            in_channels, patch_channel, patch_size, spatial_dims, norm(patch_channel)
        )
        self.downsamples = nn.ModuleList()
        self.stages = nn.ModuleList()
        start = 0
        for i, width in enumerate(widths):
            if i > 0:
                self.downsamples.append(_PatchMerging(widths[i - 1], width, spatial_dims, norm(width)))
            self.stages.append(
                VMambaStage(
                    width,
                    spatial_dims,
                    counts[i],
                    building_block,
                    rates[start : start + counts[i]],
                    **block_kwargs,
                )
            )
            start += counts[i]
        if middle_channels:
            self.middle_proj: Optional[nn.Module] = nd.conv_type(spatial_dims)(widths[-1], middle_channels, 1)
            self.middle: Optional[VMambaStage] = VMambaStage(
                middle_channels, spatial_dims, counts[-1], building_block, rates[start:], **block_kwargs
            )
            widths[-1] = middle_channels
        else:
            self.middle_proj, self.middle = None, None

        self._patch_level = patch_level
        self._depth = depth
        self._in_channels = in_channels
        self._out_channels = (in_channels, *([0] * max(patch_level - 1, 0)), *widths)
        if patch_level == 0:  # patch_size 1: the patch embedding is the stride-1 level; keep f0 = x
            self._out_channels = (in_channels, *widths[1:])
        self._reductions = tuple(2**i for i in range(depth + 1))
        self._output_stride = 2**depth
        if time_embedding_dim is not None:
            self.enable_time_embedding(time_embedding_dim, time_injection)

    def _all_stages(self) -> List[VMambaStage]:
        return list(self.stages) + ([self.middle] if self.middle is not None else [])

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Give every block an embedding injection of width ``embedding_dim`` by ``mode``.

        Raises:
            ValueError: for a bad width or mode.
        """
        check_positive_int("time_embedding_dim", embedding_dim)
        check_injection_mode(mode)
        for stage in self._all_stages():
            stage.enable_time_embedding(embedding_dim, mode)
        self.time_embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        if x.dim() != self._spatial_dims + 2 or x.shape[1] != self._in_channels:
            raise ValueError(
                f"input must be (N, {self._in_channels}, *{self._spatial_dims} spatial sizes), "
                f"got {tuple(x.shape)}"
            )
        if time_emb is not None and getattr(self, "time_embedding_dim", None) is None:
            raise ValueError(
                "`time_emb` given but this encoder has no embedding injection: build it with "
                "time_embedding_dim=... or call enable_time_embedding(dim, mode) first"
            )
        features = [x]
        spatial = x.shape[2:]
        for level in range(1, self._patch_level):
            features.append(x.new_empty((x.shape[0], 0, *(s // 2**level for s in spatial))))
        h = self.patch_embed(x)
        h = self.stages[0](h, time_emb)
        if self._patch_level > 0:
            features.append(h)
        for down, stage in zip(self.downsamples, self.stages[1:]):
            h = stage(down(h), time_emb)
            features.append(h)
        if self.middle is not None:
            features[-1] = self.middle(self.middle_proj(features[-1]), time_emb)
        return features[: self._depth + 1]


_SMALL_NUM_BLOCKS = (2, 2, 15, 2, 2)

flemme_vmamba_encoders = {
    # VMamba-T/S/B widths and depths (Liu et al. 2024, table 1, v2 layout) with Flemme's parameter names; the
    # last entries of down_channels / num_blocks are only used with patch_size 2 (one more stage).
    "vmamba": {
        "encoder": FlemmeVMambaEncoder,
        "params": {
            "patch_size": 4,
            "patch_channel": 96,
            "down_channels": (192, 384, 768, 1536),
            "num_blocks": (2, 2, 5, 2, 2),
            "drop_path": 0.2,
        },
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    },
    "vmamba_small": {
        "encoder": FlemmeVMambaEncoder,
        "params": {
            "patch_size": 4,
            "patch_channel": 96,
            "down_channels": (192, 384, 768, 1536),
            "num_blocks": _SMALL_NUM_BLOCKS,
            "drop_path": 0.3,
        },
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    },
    "vmamba_base": {
        "encoder": FlemmeVMambaEncoder,
        "params": {
            "patch_size": 4,
            "patch_channel": 128,
            "down_channels": (256, 512, 1024, 2048),
            "num_blocks": _SMALL_NUM_BLOCKS,
            "drop_path": 0.5,
        },
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    },
}
