"""Shared n-d transformer token layers, blocks and stages: used by the Flemme-style ``vit`` and ``swin`` encoders
(:mod:`smp_like.encoders.flemme_transformer`) and by decoders (Unet's ``swin`` decoder block), which may import
this public module.

Tokens are kept internally as channels-last grids ``(N, *grid, C)``; features leave the encoders channels-first
``(N, C, *grid)``.

* :class:`PatchEmbedding` — ViT's patch embedding ``x_p E`` (Dosovitskiy et al. 2021, eq. 1) as an n-d conv with
  ``kernel = stride = patch_size``; the input is zero-padded at its end to a multiple of ``patch_size``.
* :class:`PatchMerging` — Swin's patch merging (Liu et al. 2021, sec. 3.1): concatenate each 2×2(×2) group of tokens,
  LayerNorm, and a linear map to the next width (the grid is zero-padded to even sizes first).
* :class:`AbsolutePositionEmbedding` — ViT's ``E_pos`` (eq. 1) stored for a reference grid and interpolated
  (linear / bilinear / trilinear) to the actual token grid.
* :class:`ViTBlock` — pre-norm transformer block (Dosovitskiy et al. 2021, eqs. 2-3):
  ``z' = z + MSA(LN(z))``, ``z = z' + MLP(LN(z'))``.
* :class:`SwinBlock` — (shifted) window attention (Liu et al. 2021, eqs. 3-4) with an n-d relative position bias
  table, padding/cropping for grids that are not multiples of the window and a shifted-window mask computed for the
  actual padded grid.
* :class:`SwinPair`, :class:`ResidualSwinPair` — the ``double_swin`` and ``res_swin`` building blocks.
* :class:`SwinStage`, :class:`ViTStage` — channels-first stages for decoders, ``forward(x, time_emb=None)``.

Every block takes an optional embedding ``(N, E)`` and injects it, after the attention residual and before the MLP,
with :class:`~smp_like.base.embedding.EmbeddingInjection` (``channel_dim=-1``).
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smp_like.base.checks import check_per_axis, check_per_stage, check_positive_int, check_probability
from smp_like.base.embedding import EmbeddingInjection, check_injection_mode
from smp_like.base.modules import DropPath
from smp_like.base.nd import check_spatial_dims, conv_type, interpolation_mode
from smp_like.base.norms import make_activation

__all__ = [
    "NORMALIZATIONS",
    "AbsolutePositionEmbedding",
    "DropPath",
    "SWIN_BUILDING_BLOCKS",
    "TokenStage",
    "VIT_BUILDING_BLOCKS",
    "blocks_per_unit",
    "make_blocks",
    "Mlp",
    "PatchEmbedding",
    "PatchMerging",
    "ResidualSwinPair",
    "SwinBlock",
    "SwinPair",
    "SwinStage",
    "ViTBlock",
    "ViTStage",
    "make_token_norm",
]

NORMALIZATIONS = ("layer", "rms")




def make_token_norm(normalization: str, channels: int) -> nn.Module:
    """A normalisation over the last axis of channels-last tokens.

    Args:
        normalization: ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm).
        channels: token width.

    Raises:
        ValueError: for an unknown ``normalization``.
    """
    if normalization == "layer":
        return nn.LayerNorm(channels)
    if normalization == "rms":
        return nn.RMSNorm(channels)
    raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}")


class Mlp(nn.Module):
    """``Linear → activation → dropout → Linear → dropout`` (the transformer MLP, Dosovitskiy et al. 2021, eq. 3)."""

    def __init__(self, channels: int, hidden_ratio: float, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        hidden = max(1, round(channels * hidden_ratio))
        self.fc1 = nn.Linear(channels, hidden)
        self.act = make_activation(activation, channel_dim=-1)
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PatchEmbedding(nn.Module):
    """Non-overlapping patches → tokens: an n-d conv with ``kernel = stride = patch_size``, then a token norm.

    The input is zero-padded at its end to a multiple of ``patch_size``, so the token grid is
    ``ceil(size / patch_size)`` per axis. Returns channels-last tokens ``(N, *grid, C)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        patch_size: int,
        spatial_dims: int,
        normalization: str = "layer",
    ):
        super().__init__()
        self.patch_size = patch_size
        self.proj = conv_type(spatial_dims)(in_channels, channels, kernel_size=patch_size, stride=patch_size)
        self.norm = make_token_norm(normalization, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad: list[int] = []
        for size in reversed(x.shape[2:]):
            pad += [0, (-size) % p]
        if any(pad):
            x = F.pad(x, pad)
        return self.norm(self.proj(x).movedim(1, -1))


def _pad_grid_end(x: torch.Tensor, multiples: Sequence[int]) -> torch.Tensor:
    """Zero-pad the grid axes of channels-last ``x`` (N, *grid, C) at their end to the given multiples."""
    pad: list[int] = [0, 0]  # the channel axis
    for size, m in zip(reversed(x.shape[1:-1]), reversed(list(multiples))):
        pad += [0, (-size) % m]
    return F.pad(x, pad) if any(pad) else x


class PatchMerging(nn.Module):
    """Swin's patch merging (Liu et al. 2021, sec. 3.1), n-d: each 2×2(×2) token group is concatenated
    (``2^d · C`` features), normalised and linearly mapped to ``out_channels``. Odd grids are zero-padded first, so
    the grid becomes ``ceil(size / 2)``."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int, normalization: str = "layer"):
        super().__init__()
        self.spatial_dims = spatial_dims
        merged = in_channels * 2**spatial_dims
        self.norm = make_token_norm(normalization, merged)
        self.reduction = nn.Linear(merged, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.spatial_dims
        x = _pad_grid_end(x, (2,) * d)
        n, grid, c = x.shape[0], x.shape[1:-1], x.shape[-1]
        shape = [n]
        for g in grid:
            shape += [g // 2, 2]
        x = x.reshape(shape + [c])
        # (N, g1/2, 2, g2/2, 2, ..., C) -> (N, g1/2, g2/2, ..., 2, 2, ..., C) -> merge the 2^d group with C
        order = [0] + [1 + 2 * i for i in range(d)] + [2 + 2 * i for i in range(d)] + [1 + 2 * d]
        x = x.permute(order).reshape([n] + [g // 2 for g in grid] + [c * 2**d])
        return self.reduction(self.norm(x))


class AbsolutePositionEmbedding(nn.Module):
    """Learned absolute position embedding ``E_pos`` (Dosovitskiy et al. 2021, eq. 1) for any token grid.

    Stored for a reference grid ``reference_grid`` (per axis) and resized with (bi/tri)linear interpolation
    (``align_corners=False``) to the actual grid — the resolution change of Dosovitskiy et al. 2021, sec. 3.2.

    Args:
        channels: token width.
        spatial_dims: 1, 2 or 3.
        reference_grid: token grid the table is stored for (int or per axis).
    """

    def __init__(self, channels: int, spatial_dims: int, reference_grid: int | Sequence[int] = 16):
        super().__init__()
        self.reference_grid = check_per_axis("pos_embedding_grid", reference_grid, spatial_dims)
        self.mode = interpolation_mode("linear", spatial_dims)
        self.embedding = nn.Parameter(torch.zeros(1, channels, *self.reference_grid))
        nn.init.trunc_normal_(self.embedding, std=0.02)

    def grid_embedding(self, grid: Sequence[int]) -> torch.Tensor:
        """The embedding for ``grid``, channels-last ``(1, *grid, C)``."""
        emb = self.embedding
        if tuple(grid) != self.reference_grid:
            emb = F.interpolate(emb, size=tuple(grid), mode=self.mode, align_corners=False)
        return emb.movedim(1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.grid_embedding(x.shape[1:-1]).to(x.dtype)


class _InjectableBlock(nn.Module):
    """A token block holding an optional EmbeddingInjection (added later by ``enable_time_embedding``)."""

    injection: EmbeddingInjection | None

    def _init_injection(self, channels: int, num_heads: int) -> None:
        self.channels = channels
        self._injection_heads = num_heads
        self.injection = None

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Inject an ``(N, embedding_dim)`` embedding by ``mode`` in every forward that receives one."""
        check_injection_mode(mode)
        check_positive_int("time_embedding_dim", embedding_dim)
        self.injection = EmbeddingInjection(
            self.channels, embedding_dim, mode, num_heads=self._injection_heads
        )

    def _inject(self, x: torch.Tensor, time_emb: torch.Tensor | None) -> torch.Tensor:
        if time_emb is None:
            return x
        if self.injection is None:
            raise ValueError(
                "an embedding was given to a block without injection; call enable_time_embedding(embedding_dim, "
                "mode) or build with time_embedding_dim=..."
            )
        return self.injection(x, time_emb, channel_dim=-1)


def _check_heads(channels: int, num_heads: int) -> int:
    check_positive_int("num_heads", num_heads)
    if channels % num_heads:
        raise ValueError(f"`num_heads`={num_heads} must divide the block width {channels}")
    return num_heads


class ViTBlock(_InjectableBlock):
    """Pre-norm transformer block on tokens ``(N, *grid, C)`` with global multi-head self-attention.

    ``z' = z + DropPath(MSA(LN(z)))``; ``z' ← inject(z', e)``; ``z = z' + DropPath(MLP(LN(z')))``
    (Dosovitskiy et al. 2021, eqs. 2-3; MSA = softmax(QKᵀ/√d)V of Vaswani et al. 2017, eq. 1).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        mlp_hidden_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        normalization: str = "layer",
        activation: str = "gelu",
    ):
        super().__init__()
        self.num_heads = _check_heads(channels, num_heads)
        self._init_injection(channels, num_heads)
        self.norm1 = make_token_norm(normalization, channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.dropout = dropout
        self.proj_drop = nn.Dropout(dropout)
        self.drop_path = DropPath(check_probability("drop_path", drop_path))
        self.norm2 = make_token_norm(normalization, channels)
        self.mlp = Mlp(channels, mlp_hidden_ratio, activation, dropout)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[-1]
        tokens = x.reshape(n, -1, c)
        q, k, v = (
            self.qkv(tokens).reshape(n, -1, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        )
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(n, -1, c)
        return self.proj_drop(self.proj(out)).reshape(x.shape)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.norm1(x)))
        x = self._inject(x, time_emb)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def relative_position_index(window: Sequence[int], table_window: Sequence[int]) -> torch.Tensor:
    """Index into an n-d relative position bias table for every token pair of a ``window``.

    The table has ``prod(2·W_a − 1)`` rows for the configured window ``table_window`` (W); a pair (i, j) of tokens in
    the (possibly smaller) actual ``window`` uses the row of the offset ``pos_i − pos_j + W − 1`` (per axis, in
    ``[0, 2W_a − 2]``), flattened row-major (Liu et al. 2021, sec. 3.2, "Relative position bias").

    Returns:
        (L, L) long tensor, ``L = prod(window)``.
    """
    axes = [torch.arange(w) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1)  # (d, L)
    rel = coords[:, :, None] - coords[:, None, :]  # (d, L, L)
    index = torch.zeros(rel.shape[1:], dtype=torch.long)
    for a, w in enumerate(table_window):
        index = index * (2 * w - 1) + rel[a] + (w - 1)
    return index


class SwinBlock(_InjectableBlock):
    """Swin transformer block (Liu et al. 2021, eq. 3) on tokens ``(N, *grid, C)``, any ``spatial_dims``.

    ``z' = z + DropPath((S)W-MSA(LN(z)))``; ``z' ← inject(z', e)``; ``z = z' + DropPath(MLP(LN(z')))``, with window
    attention ``softmax(QKᵀ/√d + B)V`` (eq. 4), ``B`` from an n-d relative position bias table.

    Windows larger than the grid shrink to the grid on that axis (and that axis is not shifted), as Swin does when
    the resolution is at most the window. Grids that are not multiples of the window are zero-padded at their end
    and cropped back; padded tokens are masked out as keys. With ``shift=True`` the grid is rolled by
    ``-window // 2`` and the attention mask of the cyclic shift (sec. 3.2) is computed for the actual padded grid
    (cached per grid size).

    Args:
        channels: token width.
        spatial_dims: 1, 2 or 3.
        num_heads: attention heads (must divide ``channels``).
        window_size: int or per-axis window.
        shift: SW-MSA (True) or W-MSA (False).
        mlp_hidden_ratio, qkv_bias, dropout, drop_path, normalization, activation: as in :class:`ViTBlock`.
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        num_heads: int = 1,
        window_size: int | Sequence[int] = 7,
        shift: bool = False,
        mlp_hidden_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        normalization: str = "layer",
        activation: str = "gelu",
    ):
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims, (1, 2, 3))
        self.num_heads = _check_heads(channels, num_heads)
        self.window_size = check_per_axis("window_size", window_size, spatial_dims)
        self.shift = bool(shift)
        self._init_injection(channels, num_heads)
        self.norm1 = make_token_norm(normalization, channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.attn_drop = nn.Dropout(dropout)
        self.proj_drop = nn.Dropout(dropout)
        self.drop_path = DropPath(check_probability("drop_path", drop_path))
        self.norm2 = make_token_norm(normalization, channels)
        self.mlp = Mlp(channels, mlp_hidden_ratio, activation, dropout)
        rows = math.prod(2 * w - 1 for w in self.window_size)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._cache: dict[tuple, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift={self.shift}, num_heads={self.num_heads}"

    def window_and_shift(self, grid: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The effective window and shift per axis for a token ``grid``."""
        window = tuple(min(w, g) for w, g in zip(self.window_size, grid))
        shift = tuple(w // 2 if (self.shift and g > w) else 0 for w, g in zip(self.window_size, grid))
        return window, shift

    def _relative_bias(self, window: tuple[int, ...], device: torch.device) -> torch.Tensor:
        key = ("index", window, device)
        if key not in self._cache:
            self._cache[key] = relative_position_index(window, self.window_size).to(device)
        index = self._cache[key]
        return self.relative_position_bias_table[index].permute(2, 0, 1)  # (heads, L, L)

    def _mask(
        self,
        grid: tuple[int, ...],
        padded: tuple[int, ...],
        window: tuple[int, ...],
        shift: tuple[int, ...],
        device: torch.device,
    ) -> torch.Tensor | None:
        """Additive mask (nW, L, L) for the padded, rolled grid, or None when nothing is masked."""
        if grid == padded and not any(shift):
            return None
        key = ("mask", grid, window, shift, device)
        if key in self._cache:
            return self._cache[key]
        # Region labels of the cyclic shift, in the rolled frame (Liu et al. 2021, sec. 3.2): per shifted axis the
        # slices [0, P-w), [P-w, P-s), [P-s, P); tokens of different slices in one window must not attend.
        labels = torch.zeros(padded, dtype=torch.long)
        per_axis = []
        for w, s in zip(window, shift):
            per_axis.append([slice(0, -w), slice(-w, -s), slice(-s, None)] if s else [slice(None)])
        for count, region in enumerate(_product(per_axis)):
            labels[region] = count
        valid = torch.zeros(padded, dtype=torch.bool)
        valid[tuple(slice(0, g) for g in grid)] = True
        if any(shift):
            valid = torch.roll(valid, shifts=tuple(-s for s in shift), dims=tuple(range(len(shift))))
        labels_w = _partition(labels[None, ..., None], window).squeeze(-1)  # (nW, L)
        valid_w = _partition(valid[None, ..., None], window).squeeze(-1)
        allowed = (labels_w[:, :, None] == labels_w[:, None, :]) & valid_w[:, None, :]
        # A padded query may see only padding keys: let every token see itself so no row is empty.
        allowed |= torch.eye(allowed.shape[-1], dtype=torch.bool)[None]
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf")).to(device)
        self._cache[key] = mask
        return mask

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(S)W-MSA on normalised tokens ``(N, *grid, C)``; returns the same shape."""
        n, grid, c = x.shape[0], tuple(x.shape[1:-1]), x.shape[-1]
        window, shift = self.window_and_shift(grid)
        dims = tuple(range(1, 1 + len(grid)))
        x = _pad_grid_end(x, window)
        padded = tuple(x.shape[1:-1])
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=dims)
        windows = _partition(x, window)  # (N*nW, L, C)
        b, length = windows.shape[:2]
        h = self.num_heads
        q, k, v = self.qkv(windows).reshape(b, length, 3, h, c // h).permute(2, 0, 3, 1, 4)
        scores = (q * (c // h) ** -0.5) @ k.transpose(-2, -1)  # (B, h, L, L)
        scores = scores + self._relative_bias(window, x.device).to(scores.dtype)[None]
        mask = self._mask(grid, padded, window, shift, x.device)
        if mask is not None:
            scores = scores.view(n, -1, h, length, length) + mask.to(scores.dtype)[None, :, None]
            scores = scores.view(b, h, length, length)
        # Softmax in float32 (bf16/fp16 autocast hands it half-precision scores): exp of large logits and the
        # normalising sum need the range; the weights go back to the scores' dtype for the product with V.
        attn = self.attn_drop(scores.float().softmax(dim=-1).to(scores.dtype))
        out = (attn @ v).transpose(1, 2).reshape(b, length, c)
        out = self.proj_drop(self.proj(out))
        x = _unpartition(out, window, n, padded)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=dims)
        return x[(slice(None),) + tuple(slice(0, g) for g in grid)]

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.norm1(x)))
        x = self._inject(x, time_emb)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _product(lists: list[list]) -> list[tuple]:
    out: list[tuple] = [()]
    for options in lists:
        out = [prefix + (o,) for prefix in out for o in options]
    return out


def _partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """(N, *P, C) with P a multiple of ``window`` -> (N·nW, L, C), windows in row-major order."""
    n, grid, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    d = len(grid)
    shape = [n]
    for g, w in zip(grid, window):
        shape += [g // w, w]
    x = x.reshape(shape + [c])
    order = [0] + [1 + 2 * i for i in range(d)] + [2 + 2 * i for i in range(d)] + [1 + 2 * d]
    return x.permute(order).reshape(-1, math.prod(window), c)


def _unpartition(windows: torch.Tensor, window: Sequence[int], n: int, grid: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`_partition`: (N·nW, L, C) -> (N, *grid, C)."""
    d, c = len(grid), windows.shape[-1]
    x = windows.reshape([n] + [g // w for g, w in zip(grid, window)] + list(window) + [c])
    order = [0]
    for i in range(d):
        order += [1 + i, 1 + d + i]
    return x.permute(order + [1 + 2 * d]).reshape([n] + list(grid) + [c])


class SwinPair(nn.Module):
    """``double_swin``: a W-MSA block followed by an SW-MSA block (Liu et al. 2021, eq. 3)."""

    def __init__(self, channels: int, spatial_dims: int, **block_kwargs: Any):
        super().__init__()
        drop = block_kwargs.pop("drop_path", 0.0)
        drops = drop if isinstance(drop, (tuple, list)) else (drop, drop)
        self.regular = SwinBlock(channels, spatial_dims, shift=False, drop_path=drops[0], **block_kwargs)
        self.shifted = SwinBlock(channels, spatial_dims, shift=True, drop_path=drops[1], **block_kwargs)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        self.regular.enable_time_embedding(embedding_dim, mode)
        self.shifted.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.shifted(self.regular(x, time_emb), time_emb)


class ResidualSwinPair(nn.Module):
    """``res_swin``: ``y = SwinPair(P(x)) + S(x)``, with linear projections ``P``, ``S`` when the width changes
    (identity otherwise) — a residual connection around the W-MSA/SW-MSA pair (He et al. 2016, eq. 2)."""

    def __init__(
        self, in_channels: int, spatial_dims: int, out_channels: int | None = None, **block_kwargs: Any
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.project = nn.Linear(in_channels, out_channels) if out_channels != in_channels else nn.Identity()
        self.shortcut = nn.Linear(in_channels, out_channels) if out_channels != in_channels else nn.Identity()
        self.pair = SwinPair(out_channels, spatial_dims, **block_kwargs)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        self.pair.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.pair(self.project(x), time_emb) + self.shortcut(x)


SWIN_BUILDING_BLOCKS = ("swin", "double_swin", "res_swin")
VIT_BUILDING_BLOCKS = ("vit",)


def blocks_per_unit(building_block: str) -> int:
    return 2 if building_block in ("double_swin", "res_swin") else 1


def make_blocks(
    building_block: str,
    channels: int,
    spatial_dims: int,
    num_blocks: int,
    drop_paths: Sequence[float],
    **kwargs: Any,
) -> nn.ModuleList:
    """``num_blocks`` building blocks of one width. ``drop_paths`` has one rate per attention block.

    ``"swin"`` alternates W-MSA (even index) and SW-MSA (odd index) blocks, as in Swin's stages;
    ``"double_swin"``/``"res_swin"`` are W-MSA + SW-MSA pairs; ``"vit"`` is :class:`ViTBlock`.
    """
    blocks = []
    for i in range(num_blocks):
        if building_block == "vit":
            kwargs_vit = {k: v for k, v in kwargs.items() if k != "window_size"}
            blocks.append(ViTBlock(channels, drop_path=drop_paths[i], **kwargs_vit))
        elif building_block == "swin":
            blocks.append(
                SwinBlock(channels, spatial_dims, shift=bool(i % 2), drop_path=drop_paths[i], **kwargs)
            )
        elif building_block == "double_swin":
            blocks.append(
                SwinPair(channels, spatial_dims, drop_path=tuple(drop_paths[2 * i : 2 * i + 2]), **kwargs)
            )
        elif building_block == "res_swin":
            blocks.append(
                ResidualSwinPair(
                    channels, spatial_dims, drop_path=tuple(drop_paths[2 * i : 2 * i + 2]), **kwargs
                )
            )
        else:
            raise ValueError(
                f"`building_block` must be one of {VIT_BUILDING_BLOCKS + SWIN_BUILDING_BLOCKS}, got {building_block!r}"
            )
    return nn.ModuleList(blocks)


class TokenStage(nn.Module):
    """Blocks of one width applied in sequence to channels-last tokens."""

    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        for block in self.blocks:
            block.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, time_emb)
        return x


class _ChannelsFirstStage(nn.Module):
    building_blocks: tuple[str, ...] = ()

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        num_blocks: int = 2,
        num_heads: int = 1,
        building_block: str = "",
        window_size: int | Sequence[int] = 7,
        mlp_hidden_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        normalization: str = "layer",
        activation: str = "gelu",
        time_embedding_dim: int | None = None,
        time_injection: str = "gate_bias",
    ):
        super().__init__()
        check_spatial_dims(spatial_dims, (1, 2, 3))
        check_positive_int("channels", channels)
        check_positive_int("num_blocks", num_blocks)
        building_block = building_block or self.building_blocks[0]
        if building_block not in self.building_blocks:
            raise ValueError(
                f"`building_block` must be one of {self.building_blocks}, got {building_block!r}"
            )
        check_probability("dropout", dropout)
        check_probability("drop_path", drop_path)
        n_attention = num_blocks * blocks_per_unit(building_block)
        self.spatial_dims = spatial_dims
        self.stage = TokenStage(
            make_blocks(
                building_block,
                channels,
                spatial_dims,
                num_blocks,
                [drop_path] * n_attention,
                num_heads=num_heads,
                window_size=window_size,
                mlp_hidden_ratio=mlp_hidden_ratio,
                qkv_bias=qkv_bias,
                dropout=dropout,
                normalization=normalization,
                activation=activation,
            )
        )
        if time_embedding_dim is not None:
            self.enable_time_embedding(time_embedding_dim, time_injection)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Add an EmbeddingInjection of width ``embedding_dim`` to every block."""
        self.stage.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"`x` must be (N, C, *spatial) with {self.spatial_dims} spatial dims, got {tuple(x.shape)}"
            )
        return self.stage(x.movedim(1, -1), time_emb).movedim(-1, 1)


class SwinStage(_ChannelsFirstStage):
    """Swin blocks on channels-first features ``(N, C, *spatial)`` — a decoder stage of any size.

    Args:
        channels: feature width (kept).
        spatial_dims: 1, 2 or 3.
        num_blocks: building blocks (``"swin"`` alternates W-MSA/SW-MSA; pairs for ``double_swin``/``res_swin``).
        num_heads: attention heads (must divide ``channels``).
        building_block: ``"swin"``, ``"double_swin"`` or ``"res_swin"``.
        window_size: int or per-axis window.
        mlp_hidden_ratio, qkv_bias, dropout, drop_path, normalization, activation: block options.
        time_embedding_dim: if given, every block injects an ``(N, time_embedding_dim)`` embedding.
        time_injection: ``gate_bias``, ``gate``, ``bias`` or ``cross_attention``.

    Forward:
        ``forward(x, time_emb=None)`` → tensor shaped like ``x``.
    """

    building_blocks = SWIN_BUILDING_BLOCKS


class ViTStage(_ChannelsFirstStage):
    """Global-attention ViT blocks on channels-first features ``(N, C, *spatial)`` (same arguments as
    :class:`SwinStage`; ``window_size`` is ignored; ``building_block="vit"``)."""

    building_blocks = VIT_BUILDING_BLOCKS
