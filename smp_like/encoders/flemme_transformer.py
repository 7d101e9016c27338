"""The hierarchical n-d transformer encoder shared by the Flemme-style ``vit`` and ``swin`` families
(:mod:`smp_like.encoders.flemme_vit`, :mod:`smp_like.encoders.flemme_swin`), built from the token layers and blocks
of :mod:`smp_like.encoders.transformer_blocks`. See docs/transformer_encoders.md.
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from smp_like.base.checks import check_per_axis, check_per_stage, check_positive_int, check_probability
from smp_like.base.embedding import check_injection_mode
from smp_like.base.nd import check_spatial_dims
from smp_like.base.norms import make_activation
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders.transformer_blocks import (
    NORMALIZATIONS,
    SWIN_BUILDING_BLOCKS,
    AbsolutePositionEmbedding,
    PatchEmbedding,
    PatchMerging,
    TokenStage,
    blocks_per_unit,
    make_blocks,
)

__all__ = ["FlemmeTransformerEncoder"]


class FlemmeTransformerEncoder(nn.Module, EncoderMixin):
    """Hierarchical Flemme-style transformer encoder (base of ``vit`` and ``swin``).

    Layout for ``patch_size = 2^k`` and ``depth = D``: patch embedding to ``patch_channel`` (stride ``2^k``), the
    stage-0 blocks, then ``D − k`` down stages (patch merging to ``down_channels[i]``, then blocks), then — when
    ``middle_channels`` is given — a linear projection and ``num_middle_blocks`` blocks at ``middle_channels`` on
    the deepest stage. Feature ``j`` (``1 ≤ j ≤ D``) has stride ``2^j``; features with ``j < k`` are 0-channel
    placeholders (as SMP does for transformers). Sizes are ``ceil(input / 2^j)``.

    Args:
        in_channels: input channels.
        depth: number of returned stages after the input (``encoder_depth``); at least ``log2(patch_size)``.
        spatial_dims: 2 or 3.
        patch_size: power of two.
        patch_channel: width after the patch embedding.
        down_channels: widths after each down stage (at least ``depth − log2(patch_size)`` entries).
        middle_channels: width of the middle blocks on the deepest stage (None: no middle blocks).
        building_block: family-specific (``vit``; ``swin`` / ``double_swin`` / ``res_swin``).
        num_blocks: building blocks per stage (int or one per stage).
        num_middle_blocks: building blocks at ``middle_channels``.
        normalization: ``layer`` or ``rms`` (token norm).
        activation: MLP non-linearity.
        dropout: dropout in attention and MLP.
        drop_path: stochastic-depth rate of the last block, increasing linearly from 0 over all blocks.
        num_heads: int (must divide every width) or one per stage (+1 for the middle); None: ``width // 32``.
        mlp_hidden_ratio: MLP hidden width over the token width.
        qkv_bias: bias on the query/key/value projection.
        window_size: Swin window (int or per axis; default 7). The ViT family has no windows and refuses it.
        abs_pos_embedding: add an interpolated absolute position embedding after the patch embedding.
        pos_embedding_grid: reference grid of that embedding (int or per axis).
        time_embedding_dim: if given, calls ``enable_time_embedding(time_embedding_dim, time_injection)``.
        time_injection: ``gate_bias``, ``gate``, ``bias`` or ``cross_attention``.

    Raises:
        ValueError: naming the argument, for unknown or invalid values.
    """

    supports_time_embedding = True
    _building_blocks: tuple[str, ...] = ()
    _family = "transformer"

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 5,
        spatial_dims: int = 2,
        patch_size: int = 4,
        patch_channel: int = 64,
        down_channels: Sequence[int] = (128, 256, 512, 512),
        middle_channels: int | None = None,
        building_block: str | None = None,
        num_blocks: int | Sequence[int] = 2,
        num_middle_blocks: int = 1,
        normalization: str = "layer",
        activation: str = "gelu",
        dropout: float = 0.0,
        drop_path: float = 0.0,
        num_heads: int | Sequence[int] | None = None,
        mlp_hidden_ratio: float = 4.0,
        qkv_bias: bool = True,
        window_size: int | Sequence[int] | None = None,
        abs_pos_embedding: bool = False,
        pos_embedding_grid: int | Sequence[int] = 16,
        time_embedding_dim: int | None = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        if kwargs:
            raise ValueError(
                f"unknown argument(s) {sorted(kwargs)} for the {self._family!r} encoder; valid: "
                f"{sorted(_ENCODER_ARGUMENTS)}"
            )
        check_positive_int("in_channels", in_channels)
        check_positive_int("depth", depth)
        self._spatial_dims = check_spatial_dims(spatial_dims, (2, 3))
        check_positive_int("patch_size", patch_size)
        if patch_size & (patch_size - 1):
            raise ValueError(f"`patch_size` must be a power of two (1, 2, 4, 8, ...), got {patch_size!r}")
        k = patch_size.bit_length() - 1
        if depth < k:
            raise ValueError(
                f"`depth`={depth} must be at least log2(patch_size)={k} for patch_size={patch_size}"
            )
        check_positive_int("patch_channel", patch_channel)
        building_block = building_block or self._building_blocks[0]
        if building_block not in self._building_blocks:
            raise ValueError(
                f"`building_block` must be one of {self._building_blocks}, got {building_block!r}"
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}")
        make_activation(activation, channel_dim=-1)
        check_probability("dropout", dropout)
        check_probability("drop_path", drop_path)
        if (
            isinstance(mlp_hidden_ratio, bool)
            or not isinstance(mlp_hidden_ratio, (int, float))
            or mlp_hidden_ratio <= 0
        ):
            raise ValueError(f"`mlp_hidden_ratio` must be a positive number, got {mlp_hidden_ratio!r}")
        if not isinstance(qkv_bias, bool):
            raise TypeError(f"`qkv_bias` must be a bool, got {qkv_bias!r}")
        if not isinstance(abs_pos_embedding, bool):
            raise TypeError(f"`abs_pos_embedding` must be a bool, got {abs_pos_embedding!r}")
        if window_size is not None and building_block not in SWIN_BUILDING_BLOCKS:
            raise ValueError(
                f"`window_size` is a Swin option; the {self._family!r} encoder attends globally and has no windows"
            )
        window = check_per_axis("window_size", 7 if window_size is None else window_size, spatial_dims)
        n_down = depth - k
        if isinstance(down_channels, int) or not isinstance(down_channels, (list, tuple)):
            raise TypeError(f"`down_channels` must be a list of positive ints, got {down_channels!r}")
        if len(down_channels) < n_down:
            raise ValueError(
                f"`down_channels` needs at least depth - log2(patch_size) = {n_down} entries, got {list(down_channels)}"
            )
        widths = [patch_channel] + [check_positive_int("down_channels", c) for c in down_channels[:n_down]]
        if middle_channels is not None:
            check_positive_int("middle_channels", middle_channels)
        check_positive_int("num_middle_blocks", num_middle_blocks)
        counts = check_per_stage("num_blocks", num_blocks, len(widths), check_positive_int)
        all_widths = widths + ([middle_channels] if middle_channels is not None else [])
        if num_heads is None:
            heads = [max(1, w // 32) for w in all_widths]
            heads = [h if w % h == 0 else 1 for h, w in zip(heads, all_widths)]
        else:
            heads = check_per_stage("num_heads", num_heads, len(all_widths), check_positive_int)
        for h, w in zip(heads, all_widths):
            if w % h:
                raise ValueError(f"`num_heads`={num_heads!r} must divide every stage width {all_widths}")
        if time_embedding_dim is not None:
            check_injection_mode(time_injection)

        self._in_channels = in_channels
        self._depth = depth
        self._patch_exponent = k
        self._dilation_refusal = (f"the Flemme {self._family} encoder", "its patch merging cannot be dilated")
        channels = [in_channels] + [0 if j < k else widths[j - k] for j in range(1, depth + 1)]
        if middle_channels is not None:
            channels[-1] = middle_channels
        self._out_channels = tuple(channels)

        per_unit = blocks_per_unit(building_block)
        total = per_unit * (sum(counts) + (num_middle_blocks if middle_channels is not None else 0))
        rates = [drop_path * i / max(1, total - 1) for i in range(total)]
        common = {
            "mlp_hidden_ratio": mlp_hidden_ratio,
            "qkv_bias": qkv_bias,
            "dropout": dropout,
            "normalization": normalization,
            "activation": activation,
            "window_size": window,
        }
        self.patch_embed = PatchEmbedding(in_channels, patch_channel, patch_size, spatial_dims, normalization)
        self.pos_embed = (
            AbsolutePositionEmbedding(patch_channel, spatial_dims, pos_embedding_grid)
            if abs_pos_embedding
            else None
        )
        self.pos_drop = nn.Dropout(dropout)
        self.stages = nn.ModuleList()
        self.downs = nn.ModuleList()
        used = 0
        for i, (width, count) in enumerate(zip(widths, counts)):
            if i > 0:
                self.downs.append(PatchMerging(widths[i - 1], width, spatial_dims, normalization))
            n_rates = count * per_unit
            self.stages.append(
                TokenStage(
                    make_blocks(
                        building_block,
                        width,
                        spatial_dims,
                        count,
                        rates[used : used + n_rates],
                        num_heads=heads[i],
                        **common,
                    )
                )
            )
            used += n_rates
        self.middle_proj: nn.Module | None = None
        self.middle: nn.Module | None = None
        if middle_channels is not None:
            self.middle_proj = (
                nn.Linear(widths[-1], middle_channels) if middle_channels != widths[-1] else nn.Identity()
            )
            self.middle = TokenStage(
                make_blocks(
                    building_block,
                    middle_channels,
                    spatial_dims,
                    num_middle_blocks,
                    rates[used:],
                    num_heads=heads[-1],
                    **common,
                )
            )
        self.apply(self._init_weights)
        if time_embedding_dim is not None:
            self.enable_time_embedding(time_embedding_dim, time_injection)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def reductions(self) -> tuple[int, ...]:
        return tuple(2**j for j in range(self._depth + 1))

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Add an :class:`~smp_like.base.embedding.EmbeddingInjection` of width ``embedding_dim`` to every block, so
        ``forward(x, time_emb)`` injects ``time_emb`` (N, embedding_dim) by ``mode``.

        Raises:
            ValueError: for a bad ``embedding_dim`` or ``mode``.
        """
        check_injection_mode(mode)
        check_positive_int("time_embedding_dim", embedding_dim)
        for stage in self.stages:
            stage.enable_time_embedding(embedding_dim, mode)
        if self.middle is not None:
            self.middle.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> list[torch.Tensor]:
        d = self._spatial_dims
        if x.dim() != d + 2 or x.shape[1] != self._in_channels:
            raise ValueError(
                f"`x` must be (N, {self._in_channels}, *spatial) with {d} spatial dims, got {tuple(x.shape)}"
            )
        features = [x]
        k = self._patch_exponent
        for j in range(1, min(k, self._depth + 1)):
            size = [-(-s // 2**j) for s in x.shape[2:]]
            features.append(x.new_zeros([x.shape[0], 0] + size))
        tokens = self.patch_embed(x)
        if self.pos_embed is not None:
            tokens = self.pos_embed(tokens)
        tokens = self.pos_drop(tokens)
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if i > 0:
                tokens = self.downs[i - 1](tokens)
            tokens = stage(tokens, time_emb)
            if i == last and self.middle is not None:
                tokens = self.middle(self.middle_proj(tokens), time_emb)
            if k + i >= 1:
                features.append(tokens.movedim(-1, 1))
        return features


_ENCODER_ARGUMENTS = (
    "in_channels",
    "depth",
    "spatial_dims",
    "patch_size",
    "patch_channel",
    "down_channels",
    "middle_channels",
    "building_block",
    "num_blocks",
    "num_middle_blocks",
    "normalization",
    "activation",
    "dropout",
    "drop_path",
    "num_heads",
    "mlp_hidden_ratio",
    "qkv_bias",
    "window_size",
    "abs_pos_embedding",
    "pos_embedding_grid",
    "time_embedding_dim",
    "time_injection",
)
