"""Mix Transformer (MiT) encoders ``mit_b0`` ... ``mit_b5`` (Xie et al. 2021, "SegFormer", sec. 3.1).

A MiT stage is an overlapping patch embedding (a strided convolution, sec. 3.1 "Overlapped Patch Merging"),
a stack of transformer blocks with *efficient self-attention* (keys and values come from a sequence shortened
by a strided convolution of ratio R, eq. 2) and a *Mix-FFN* (a 3x3 depth-wise convolution between the two
linear layers, eq. 3), and a final LayerNorm. Four stages give features at strides 4, 8, 16 and 32; the
stride-2 level of the encoder contract is a 0-channel placeholder, as in SMP.

Module names and parameter shapes are SMP 0.6's (``patch_embed1.proj``, ``block1.0.attn.kv``, ``norm1`` ...),
so SMP checkpoints and the ``smp-hub/mit_b*.imagenet`` weights load without renaming. 2D only.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.modules import DropPath
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._normalization import IMAGENET_SETTINGS


def _tokens_to_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) map."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch merging (sec. 3.1): a ``patch_size`` conv with stride ``stride`` and padding
    ``patch_size // 2``, then LayerNorm over the tokens.

    Returns (forward):
        Tokens of shape (B, H' * W', C) and the map size ``H'``, ``W'``.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2], x.shape[3]
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x, height, width


class Attention(nn.Module):
    """Efficient multi-head self-attention (sec. 3.1, eq. 1-2).

    Queries come from every token; keys and values from the map reduced by a ``sr_ratio`` x ``sr_ratio`` conv
    with the same stride (then LayerNorm), which cuts the cost from O(N^2) to O(N^2 / R^2).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr: nn.Module = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm: nn.Module = nn.LayerNorm(dim)
        else:
            self.sr = nn.Identity()
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        head_dim = channels // self.num_heads
        q = self.q(x).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            # eq. 2: Reshape(N/R^2, C*R^2) then Linear(C*R^2, C) is a conv of kernel and stride R.
            reduced = self.sr(_tokens_to_map(x, height, width))
            source = self.norm(reduced.flatten(2).transpose(1, 2))
        else:
            source = x
        kv = self.kv(source).reshape(batch, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        # eq. 1: softmax(Q K^T / sqrt(d_head)) V, per head.
        attn = (q @ k.transpose(-2, -1)) * self.scale
        # Softmax in float32 under bf16/fp16 autocast (range of exp and of the normalising sum), then back.
        attn = self.attn_drop(attn.float().softmax(dim=-1).to(attn.dtype))
        x = (attn @ v).transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(x))


class DWConv(nn.Module):
    """3x3 depth-wise conv on the token map: the positional information of Mix-FFN (sec. 3.1, eq. 3)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.dwconv(_tokens_to_map(x, height, width)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Mix-FFN (eq. 3): x_out = MLP(GELU(Conv3x3(MLP(x_in)))) (+ x_in in the block)."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DWConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), height, width)))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        sr_ratio: int = 1,
        layer_norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop, sr_ratio)
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class MixVisionTransformerEncoder(nn.Module, EncoderMixin):
    """MiT feature extractor returning ``[x, placeholder, f/4, f/8, f/16, f/32][: depth + 1]``.

    The placeholder has 0 channels and half the input size (rounded down), standing in for the stride-2 level
    MiT does not have (as SMP's does).

    Args:
        out_channels: channels of the six possible features (input, 0, then the four embedding dims).
        embed_dims: embedding dim of each of the four stages.
        num_heads: attention heads of each stage.
        mlp_ratios: Mix-FFN expansion of each stage.
        depths: number of blocks in each stage.
        sr_ratios: spatial-reduction ratio R of the attention of each stage.
        qkv_bias: bias in the query / key-value projections.
        drop_rate: dropout after projections and in Mix-FFN.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic-depth rate, increased linearly from 0 over all blocks.
        layer_norm_eps: eps of the block and stage LayerNorms (patch-embedding and reduction norms use 1e-5).
        depth: number of levels after the input, 1..5 (stage ``i`` runs only if ``depth >= i + 1``).
        spatial_dims: must be 2.

    Raises:
        ValueError: for a depth outside 1..5, spatial_dims other than 2, or per-stage lists of wrong length.
    """

    _ignored_pretrained_prefixes = ("head.",)
    # TorchScript compiles properties unless told not to; the contract properties are Python-side metadata.
    __jit_unused_properties__ = [
        "out_channels",
        "depth",
        "in_channels",
        "spatial_dims",
        "reductions",
        "output_stride",
    ]

    def __init__(
        self,
        out_channels: Sequence[int],
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        layer_norm_eps: float = 1e-6,
        depth: int = 5,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a Mix Transformer encoder must be an int in 1..5, got {depth!r}"
            )
        if isinstance(spatial_dims, bool) or spatial_dims != 2:
            raise ValueError(
                "Mix Transformer encoders (mit_b*) are 2D only: spatial_dims must be 2, got "
                f"{spatial_dims!r}; for volumes use an encoder that supports spatial_dims=3, e.g. 'resnet18'"
            )
        for name, values in (
            ("embed_dims", embed_dims),
            ("num_heads", num_heads),
            ("mlp_ratios", mlp_ratios),
            ("depths", depths),
            ("sr_ratios", sr_ratios),
        ):
            if len(values) != 4:
                raise ValueError(f"`{name}` must have one entry per stage (4), got {tuple(values)!r}")
        self._spatial_dims = nd.check_spatial_dims(spatial_dims, (2,))
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        # Stage 1 embeds 7x7 patches with stride 4; later stages merge 3x3 patches with stride 2 (sec. 3.1).
        in_dims = [3] + list(embed_dims[:3])
        self.patch_embed1 = OverlapPatchEmbed(in_dims[0], embed_dims[0], patch_size=7, stride=4)
        self.patch_embed2 = OverlapPatchEmbed(in_dims[1], embed_dims[1], patch_size=3, stride=2)
        self.patch_embed3 = OverlapPatchEmbed(in_dims[2], embed_dims[2], patch_size=3, stride=2)
        self.patch_embed4 = OverlapPatchEmbed(in_dims[3], embed_dims[3], patch_size=3, stride=2)

        # Stochastic-depth rates rise linearly from 0 to drop_path_rate over all blocks (plain Python: no
        # tensor is made, so the encoder also builds on the meta device).
        total = sum(depths)
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        start = 0
        for stage in range(4):
            blocks = nn.ModuleList(
                (
                    Block(
                        embed_dims[stage],
                        num_heads[stage],
                        mlp_ratios[stage],
                        qkv_bias=qkv_bias,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=rates[start + i],
                        sr_ratio=sr_ratios[stage],
                        layer_norm_eps=layer_norm_eps,
                    )
                    for i in range(depths[stage])
                )
            )
            start += depths[stage]
            # Registered as block1, norm1, block2, norm2, ... (SMP's order of modules and state-dict keys).
            # A ModuleList (SMP has a Sequential, same keys): blocks also take the map size, so nothing chains
            # them.
            self.add_module(f"block{stage + 1}", blocks)
            self.add_module(f"norm{stage + 1}", nn.LayerNorm(embed_dims[stage], eps=layer_norm_eps))
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # The SegFormer initialisation: truncated-normal linears, fan-out normal convs, unit LayerNorms.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def get_stages(self) -> Dict[int, Any]:
        # Dilation (output_stride 16 / 8) turns the strides of stages 4 and 5 into dilation, as SMP 0.6 does:
        # every conv of the stage (patch merging, spatial reduction, Mix-FFN) gets stride 1 and the rate.
        return {4: [self.patch_embed3, self.block3], 5: [self.patch_embed4, self.block4]}

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        if time_emb is not None:
            raise ValueError(
                "MixVisionTransformerEncoder does not take a time embedding (supports_time_embedding=False)"
            )
        batch = x.shape[0]
        placeholder = x.new_empty((batch, 0, x.shape[2] // 2, x.shape[3] // 2))
        features = [x, placeholder]
        # The four stages are written out (not looped over by name) so the forward stays TorchScript-friendly.
        # Features are returned contiguous (NCHW memory), as SMP's, so decoder convs see the same layout.
        if self._depth >= 2:
            x, height, width = self.patch_embed1(x)
            for block in self.block1:
                x = block(x, height, width)
            x = _tokens_to_map(self.norm1(x), height, width).contiguous()
            features.append(x)
        if self._depth >= 3:
            x, height, width = self.patch_embed2(x)
            for block in self.block2:
                x = block(x, height, width)
            x = _tokens_to_map(self.norm2(x), height, width).contiguous()
            features.append(x)
        if self._depth >= 4:
            x, height, width = self.patch_embed3(x)
            for block in self.block3:
                x = block(x, height, width)
            x = _tokens_to_map(self.norm3(x), height, width).contiguous()
            features.append(x)
        if self._depth >= 5:
            x, height, width = self.patch_embed4(x)
            for block in self.block4:
                x = block(x, height, width)
            x = _tokens_to_map(self.norm4(x), height, width).contiguous()
            features.append(x)
        return features


_IMAGENET = IMAGENET_SETTINGS

# Pinned revisions of the weights SMP publishes as smp-hub/<name>.imagenet (ImageNet-1k classification).
_REVISIONS = {
    "mit_b0": "9ce53d104d92d75aabb00aae70677aaab67e7c84",
    "mit_b1": "a04bf4f13a549bce677cf79b04852e7510782817",
    "mit_b2": "868ab6f13871dcf8c3d9f90ee4519403475b65ef",
    "mit_b3": "32558d12a65f1daa0ebcf4f4053c4285e2c1cbda",
    "mit_b4": "3a3454e900a4b4f11dd60eeb59101a9a1a36b017",
    "mit_b5": "ced04d96c586b6297fd59a7a1e244fc78fdb6531",
}

# Table 6 of the paper: B0 is the narrow model; B1..B5 share widths and differ in depth.
_NARROW = (32, 64, 160, 256)
_WIDE = (64, 128, 320, 512)
_DEPTHS = {
    "mit_b0": (_NARROW, (2, 2, 2, 2)),
    "mit_b1": (_WIDE, (2, 2, 2, 2)),
    "mit_b2": (_WIDE, (3, 4, 6, 3)),
    "mit_b3": (_WIDE, (3, 4, 18, 3)),
    "mit_b4": (_WIDE, (3, 8, 27, 3)),
    "mit_b5": (_WIDE, (3, 6, 40, 3)),
}

mix_transformer_encoders = {
    name: {
        "encoder": MixVisionTransformerEncoder,
        "params": {
            "out_channels": (3, 0, *dims),
            "embed_dims": dims,
            "num_heads": (1, 2, 5, 8),
            "mlp_ratios": (4, 4, 4, 4),
            "depths": depths,
            "sr_ratios": (8, 4, 2, 1),
            "qkv_bias": True,
            "drop_rate": 0.0,
            "drop_path_rate": 0.1,
            "layer_norm_eps": 1e-6,
        },
        "pretrained_settings": {
            "imagenet": {"repo_id": f"smp-hub/{name}.imagenet", "revision": _REVISIONS[name], **_IMAGENET}
        },
        "spatial_dims": (2,),
    }
    for name, (dims, depths) in _DEPTHS.items()
}
