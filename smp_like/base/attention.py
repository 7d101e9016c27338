"""Attention modules for channels-first maps of any dimensionality (1D/2D/3D), chosen by name.

``"se"``    squeeze-and-excitation (Hu et al. 2018, eq. 2-4): ``x · σ(W₂ δ(W₁ avgpool(x)))``.
``"scse"``  concurrent spatial and channel SE (Roy et al. 2018): ``x · cSE(x) + x · sSE(x)``.
``"cbam"``  CBAM (Woo et al. 2018, eq. 2-3): channel attention ``σ(MLP(avgpool x) + MLP(maxpool x))``, then
            spatial attention ``σ(conv₇([mean_c x; max_c x]))``.
``"self"``  multi-head self-attention (Vaswani et al. 2017) over the flattened positions (one token per position),
            pre-LayerNorm, with a residual: ``x + MHA(LN(tokens))``.

All keep the input's shape and work at any spatial size (a single position included).
"""

import torch
from torch import nn

from smp_like.base import nd
from smp_like.base.exportable import AdaptiveAvgPool

__all__ = ["ATTENTIONS", "CBAM", "SCSEModule", "SelfAttentionNd", "SqueezeExcitation", "make_attention"]

ATTENTIONS = ("scse", "se", "cbam", "self")


class SCSEModule(nn.Module):
    """Concurrent spatial and channel squeeze-excitation (Roy et al., 2018, eq. 1-3): x·cSE(x) + x·sSE(x)."""

    def __init__(self, in_channels: int, reduction: int = 16, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        # At least one hidden channel: SMP's in_channels // reduction is 0 below 16 channels and then fails.
        hidden = max(1, in_channels // reduction)
        self.cSE = nn.Sequential(
            AdaptiveAvgPool(1, spatial_dims),
            conv(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            conv(hidden, in_channels, 1),
            nn.Sigmoid(),
        )
        self.sSE = nn.Sequential(conv(in_channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cSE(x) + x * self.sSE(x)


def _spatial_axes(x: torch.Tensor) -> tuple:
    return tuple(range(2, x.dim()))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): rescale each channel by a gate computed from its global mean.

    Args:
        channels: channels ``C``.
        reduction: hidden width is ``max(1, C // reduction)``.
        spatial_dims: 1, 2 or 3.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        hidden = max(1, channels // reduction)
        self.fc1 = conv(channels, hidden, 1)
        self.fc2 = conv(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=_spatial_axes(x), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(squeezed))))


class CBAM(nn.Module):
    """Convolutional block attention module (Woo et al. 2018): channel attention, then spatial attention.

    Args:
        channels: channels ``C``.
        reduction: hidden width of the shared channel MLP is ``max(1, C // reduction)``.
        spatial_kernel: kernel of the spatial-attention convolution (7 in the paper).
        spatial_dims: 1, 2 or 3.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(conv(channels, hidden, 1), nn.ReLU(inplace=True), conv(hidden, channels, 1))
        self.spatial = conv(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = _spatial_axes(x)
        average = x.mean(dim=axes, keepdim=True)
        maximum = x.amax(dim=axes, keepdim=True)
        x = x * torch.sigmoid(self.mlp(average) + self.mlp(maximum))  # eq. 2
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))  # eq. 3


class SelfAttentionNd(nn.Module):
    """Multi-head self-attention over the positions of an n-d map, with a pre-norm and a residual.

    Args:
        channels: channels ``C`` (the token width).
        num_heads: heads wanted; the largest divisor of ``C`` not above it is used.
    """

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        heads = max(h for h in range(1, max(1, min(num_heads, channels)) + 1) if channels % h == 0)
        self.norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (N, positions, C)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + attended.transpose(1, 2).reshape(x.shape)


def make_attention(attention: str | None, channels: int, spatial_dims: int = 2) -> nn.Module:
    """Build the attention module named ``attention`` (one of :data:`ATTENTIONS`, or None for identity).

    Raises:
        ValueError: for an unknown name.
    """
    nd.check_spatial_dims(spatial_dims, (1, 2, 3))
    if attention is None:
        return nn.Identity()
    if attention == "se":
        return SqueezeExcitation(channels, spatial_dims=spatial_dims)
    if attention == "scse":
        return SCSEModule(channels, spatial_dims=spatial_dims)
    if attention == "cbam":
        return CBAM(channels, spatial_dims=spatial_dims)
    if attention == "self":
        return SelfAttentionNd(channels)
    raise ValueError(f"`attention` must be None or one of {ATTENTIONS}, got {attention!r}")
