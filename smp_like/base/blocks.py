"""Configurable n-d convolution blocks (1D, 2D, 3D): the toolkit the Flemme-style encoders and decoders build on.

* :class:`ConvBlock` — one convolution with optional norm, dropout, activation and attention, in the order a string
  over ``n`` (norm), ``c`` (conv), ``d`` (channel dropout), ``a`` (activation), ``x`` (attention) says, e.g.
  ``"cna"`` (conv → norm → act, the default) or ``"nac"`` (pre-activation). Layers before the ``c`` act on the input
  channels, layers after it on the output channels. Norms: :data:`~smp_like.base.norms.NORMALIZATIONS` or an int
  (GroupNorm groups); attention: :data:`~smp_like.base.attention.ATTENTIONS`; activation: any ``torch.nn`` name.
* Building blocks named by :data:`BUILDING_BLOCKS`: ``conv`` (one ConvBlock), ``double_conv`` (two),
  ``res_conv`` (two plus a residual, He et al. 2016, with a 1x1 projection when channels or stride change);
  :func:`build_block` makes one by name.
* :class:`Downsample` (``conv`` | ``pool`` | ``interpolate``), :class:`Upsample` (``conv`` = transposed conv |
  ``interpolate``) and :class:`SkipFusion` (``cat`` | ``add`` | ``none``).

Sizes: every down-sampling by ``f`` gives ``ceil(size / f)`` per axis, so a stack of them gives exactly the sizes a
U-Net decoder expects for odd inputs. Time / condition embeddings: a block built with ``time_embedding_dim`` (or
after :meth:`enable_time_embedding`) injects ``forward(x, embedding)`` with
:class:`~smp_like.base.embedding.EmbeddingInjection` after the convolution of each ConvBlock — after the norm that
directly follows the convolution, if any (so ``gate_bias`` is the scale-shift norm of Dhariwal & Nichol 2021).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from smp_like.base import nd
from smp_like.base.attention import ATTENTIONS, make_attention
from smp_like.base.checks import check_positive_int
from smp_like.base.embedding import EmbeddingInjection, check_injection_mode
from smp_like.base.norms import NORMALIZATIONS, canonical_norm, make_activation, make_norm_layer

__all__ = [
    "ATTENTIONS",
    "BUILDING_BLOCKS",
    "DOWN_MODES",
    "NORMALIZATIONS",
    "ORDER_LETTERS",
    "SKIP_MODES",
    "UP_MODES",
    "ConvBlock",
    "ConvBuildingBlock",
    "DoubleConv",
    "Downsample",
    "ResConv",
    "SingleConv",
    "SkipFusion",
    "Upsample",
    "build_block",
    "check_order",
]

ORDER_LETTERS = "ncdax"
BUILDING_BLOCKS = ("conv", "double_conv", "res_conv")
DOWN_MODES = ("conv", "pool", "interpolate")
UP_MODES = ("conv", "interpolate")
SKIP_MODES = ("cat", "add", "none")


def check_order(order: str) -> str:
    """Validate a sub-layer order string: letters from ``"ncdax"``, each at most once, exactly one ``c``.

    Raises:
        TypeError: if ``order`` is not a string.
        ValueError: naming the problem and the valid letters.
    """
    if not isinstance(order, str):
        raise TypeError(f"`order` must be a string over {ORDER_LETTERS!r}, got {order!r}")
    bad = sorted(set(order) - set(ORDER_LETTERS))
    if bad:
        raise ValueError(
            f"`order`={order!r} has unknown letters {bad}; use n (norm), c (conv), d (dropout), a (activation), "
            "x (attention)"
        )
    repeated = sorted(letter for letter in set(order) if order.count(letter) > 1)
    if repeated:
        raise ValueError(f"`order`={order!r} repeats {repeated}; each letter may appear at most once")
    if "c" not in order:
        raise ValueError(f"`order`={order!r} must contain exactly one 'c' (the convolution)")
    return order


class ConvBlock(nn.Module):
    """One convolution with optional norm, channel dropout, activation and attention, in a configurable order.

    Args:
        in_channels: input channels.
        out_channels: output channels of the convolution.
        spatial_dims: 1, 2 or 3.
        kernel_size: convolution kernel (odd sizes keep the size at stride 1).
        stride: convolution stride; the output size is ``ceil(size / stride)`` for odd kernels ``>= stride``.
        order: sub-layer order over ``n c d a x`` (see :func:`check_order`); letters whose layer is disabled
            (``norm=None``, ``dropout=0``, ``activation=None``, ``attention=None``) are skipped.
        norm: one of :data:`NORMALIZATIONS`, an int (GroupNorm groups) or None.
        num_norm_groups: most groups for ``norm="group"``.
        activation: a ``torch.nn`` activation name (``"relu"``, ``"gelu"``, ``"LeakyReLU"`` ...) or None.
        dropout: channel-dropout probability (``nn.Dropout{1,2,3}d``).
        attention: None or one of :data:`ATTENTIONS`.
        time_embedding_dim: width of an embedding injected after the conv (and its norm); None for none.
        time_injection: injection mode (``gate_bias``, ``gate``, ``bias``, ``cross_attention``).

    Raises:
        ValueError: for a bad order, norm, activation, attention, dropout or size argument.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 2,
        kernel_size: int = 3,
        stride: int = 1,
        order: str = "cna",
        norm: str | int | None = "batch",
        num_norm_groups: int = 8,
        activation: str | None = "relu",
        dropout: float = 0.0,
        attention: str | None = None,
        time_embedding_dim: int | None = None,
        time_injection: str = "gate_bias",
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("kernel_size", kernel_size)
        check_positive_int("stride", stride)
        nd.check_spatial_dims(spatial_dims, (1, 2, 3))
        check_order(order)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be a probability in [0, 1), got {dropout!r}")
        if attention is not None and attention not in ATTENTIONS:
            raise ValueError(f"`attention` must be None or one of {ATTENTIONS}, got {attention!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.spatial_dims, self.order = spatial_dims, order

        norm = canonical_norm(norm)  # SMP's names ("batchnorm", "identity", ...) are aliases
        conv_position = order.index("c")
        # The bias is redundant when a norm directly follows the conv (it re-centres anyway).
        norm_follows = norm is not None and order[conv_position + 1 : conv_position + 2] == "n"
        self.layers = nn.ModuleDict()
        self._sequence: list[str] = []
        for position, letter in enumerate(order):
            channels = in_channels if position < conv_position else out_channels
            if letter == "c":
                layer: nn.Module = nd.conv_type(spatial_dims)(
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride=stride,
                    padding=kernel_size // 2,
                    bias=not norm_follows,
                )
            elif letter == "n":
                if norm is None:
                    continue
                layer = make_norm_layer(norm, channels, spatial_dims, num_norm_groups)
            elif letter == "d":
                if dropout == 0:
                    continue
                layer = nd.dropout_type(spatial_dims)(dropout)
            elif letter == "a":
                if activation is None:
                    continue
                layer = make_activation(activation)
            else:  # "x"
                if attention is None:
                    continue
                layer = make_attention(attention, channels, spatial_dims)
            self.layers[letter] = layer
            self._sequence.append(letter)
        # The embedding goes in after the conv, or after the norm right behind it.
        self._inject_after = "n" if norm_follows else "c"
        self.injection: EmbeddingInjection | None = None
        if time_embedding_dim is not None:
            self.enable_time_embedding(time_embedding_dim, time_injection)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Add (or replace) the embedding injection: ``forward(x, embedding)`` then injects ``embedding``."""
        check_positive_int("time_embedding_dim", embedding_dim)
        check_injection_mode(mode)
        self.injection = EmbeddingInjection(self.out_channels, embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        for letter in self._sequence:
            x = self.layers[letter](x)
            if letter == self._inject_after and self.injection is not None:
                x = self.injection(x, time_emb)
        return x


class ConvBuildingBlock(nn.Module):
    """Base of the named building blocks: a list of :class:`ConvBlock` run in turn, passing the embedding on."""

    blocks: nn.ModuleList

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Give every ConvBlock an embedding injection of width ``embedding_dim`` (see :class:`ConvBlock`)."""
        for block in self.blocks:
            block.enable_time_embedding(embedding_dim, mode)

    def _run(self, x: torch.Tensor, time_emb: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, time_emb)
        return x

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, time_emb)


class SingleConv(ConvBuildingBlock):
    """``conv``: one :class:`ConvBlock` (keyword arguments as there)."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 2, stride: int = 1, **kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            [ConvBlock(in_channels, out_channels, spatial_dims, stride=stride, **kwargs)]
        )


class DoubleConv(ConvBuildingBlock):
    """``double_conv``: two :class:`ConvBlock` (the first changes channels and carries the stride), as in U-Net."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 2, stride: int = 1, **kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                ConvBlock(in_channels, out_channels, spatial_dims, stride=stride, **kwargs),
                ConvBlock(out_channels, out_channels, spatial_dims, **kwargs),
            ]
        )


class ResConv(ConvBuildingBlock):
    """``res_conv``: two :class:`ConvBlock` plus a shortcut (He et al. 2016, eq. 1-2): ``F(x) + W_s x``.

    ``W_s`` is the identity when channels and stride are unchanged, else a 1x1 convolution with the block's stride.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 2, stride: int = 1, **kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                ConvBlock(in_channels, out_channels, spatial_dims, stride=stride, **kwargs),
                ConvBlock(out_channels, out_channels, spatial_dims, **kwargs),
            ]
        )
        if in_channels != out_channels or stride != 1:
            self.shortcut: nn.Module = nd.conv_type(spatial_dims)(in_channels, out_channels, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, time_emb) + self.shortcut(x)


_BLOCK_CLASSES = {"conv": SingleConv, "double_conv": DoubleConv, "res_conv": ResConv}


def build_block(
    name: str, in_channels: int, out_channels: int, spatial_dims: int = 2, **kwargs
) -> ConvBuildingBlock:
    """Build the building block ``name`` (one of :data:`BUILDING_BLOCKS`).

    Args:
        name: ``"conv"``, ``"double_conv"`` or ``"res_conv"``.
        in_channels, out_channels, spatial_dims: as in :class:`ConvBlock`.
        **kwargs: ``stride`` and any :class:`ConvBlock` keyword (order, norm, activation, dropout, attention,
            time_embedding_dim, time_injection, ...).

    Raises:
        ValueError: for an unknown name (or bad ConvBlock arguments).
    """
    if name not in _BLOCK_CLASSES:
        raise ValueError(f"`building_block` must be one of {BUILDING_BLOCKS}, got {name!r}")
    return _BLOCK_CLASSES[name](in_channels, out_channels, spatial_dims, **kwargs)


def _ceil_sizes(sizes: Sequence[int], factor: int) -> list[int]:
    return [-(-int(s) // factor) for s in sizes]


class Downsample(nn.Module):
    """Reduce every spatial size to ``ceil(size / factor)`` and map ``channels`` to ``out_channels``.

    Modes:
        ``conv``: strided convolution, kernel ``k = 2p + 1`` with padding ``p = factor // 2``, so the output size
        ``floor((n + 2p - k) / f) + 1 = floor((n - 1) / f) + 1 = ceil(n / f)``.
        ``pool``: max pooling (kernel = stride = factor, ``ceil_mode``), then a 1x1 conv if channels change.
        ``interpolate``: ``F.interpolate`` to the reduced size (``interpolation``, default linear), then a 1x1 conv
        if channels change.

    Args:
        channels: input channels.
        out_channels: output channels (default: ``channels``).
        spatial_dims: 1, 2 or 3.
        mode: one of :data:`DOWN_MODES`.
        factor: reduction factor per axis.
        interpolation: interpolation mode for ``mode="interpolate"`` (see ``smp_like.base.nd``).

    Raises:
        ValueError: for a bad mode, factor or channel count.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        spatial_dims: int = 2,
        mode: str = "conv",
        factor: int = 2,
        interpolation: str = "linear",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        out_channels = channels if out_channels is None else check_positive_int("out_channels", out_channels)
        check_positive_int("factor", factor)
        nd.check_spatial_dims(spatial_dims, (1, 2, 3))
        if mode not in DOWN_MODES:
            raise ValueError(f"`down_mode` must be one of {DOWN_MODES}, got {mode!r}")
        self.mode, self.factor, self.out_channels = mode, factor, out_channels
        conv = nd.conv_type(spatial_dims)
        self.interpolation = (
            nd.interpolation_mode(interpolation, spatial_dims) if mode == "interpolate" else None
        )
        if mode == "conv":
            self.reduce: nn.Module = conv(
                channels, out_channels, 2 * (factor // 2) + 1, stride=factor, padding=factor // 2
            )
            self.projection: nn.Module = nn.Identity()
        else:
            self.reduce = (
                nd.maxpool_type(spatial_dims)(factor, stride=factor, ceil_mode=True)
                if mode == "pool"
                else nn.Identity()
            )
            self.projection = conv(channels, out_channels, 1) if out_channels != channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "interpolate":
            align = False if self.interpolation in ("linear", "bilinear", "trilinear", "bicubic") else None
            x = F.interpolate(
                x, size=_ceil_sizes(x.shape[2:], self.factor), mode=self.interpolation, align_corners=align
            )
        else:
            x = self.reduce(x)
        return self.projection(x)


class Upsample(nn.Module):
    """Enlarge every spatial size by ``factor`` (or to an explicit ``size``) and map channels.

    Modes:
        ``conv``: transposed convolution with kernel = stride = ``factor``; with ``size`` the result is cropped (or
        zero-padded) at the end to it, so ``Upsample(Downsample(x))`` recovers odd sizes.
        ``interpolate``: ``F.interpolate`` (``interpolation``, default nearest), then a 1x1 conv if channels change.

    Args:
        channels: input channels.
        out_channels: output channels (default: ``channels``).
        spatial_dims: 1, 2 or 3.
        mode: one of :data:`UP_MODES`.
        factor: enlargement per axis.
        interpolation: interpolation mode for ``mode="interpolate"``.

    Forward:
        ``forward(x, size=None)``: ``size`` (a sequence of ``spatial_dims`` ints) is the target size.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        spatial_dims: int = 2,
        mode: str = "conv",
        factor: int = 2,
        interpolation: str = "nearest",
    ):
        super().__init__()
        check_positive_int("channels", channels)
        out_channels = channels if out_channels is None else check_positive_int("out_channels", out_channels)
        check_positive_int("factor", factor)
        nd.check_spatial_dims(spatial_dims, (1, 2, 3))
        if mode not in UP_MODES:
            raise ValueError(f"`up_mode` must be one of {UP_MODES}, got {mode!r}")
        self.mode, self.factor, self.out_channels, self.spatial_dims = (
            mode,
            factor,
            out_channels,
            spatial_dims,
        )
        self.interpolation = (
            nd.interpolation_mode(interpolation, spatial_dims) if mode == "interpolate" else None
        )
        if mode == "conv":
            self.up: nn.Module = nd.conv_transpose_type(spatial_dims)(
                channels, out_channels, factor, stride=factor
            )
            self.projection: nn.Module = nn.Identity()
        else:
            self.up = nn.Identity()
            conv = nd.conv_type(spatial_dims)
            self.projection = conv(channels, out_channels, 1) if out_channels != channels else nn.Identity()

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        if size is not None and len(size) != self.spatial_dims:
            raise ValueError(f"`size` must have {self.spatial_dims} entries, got {tuple(size)!r}")
        if self.mode == "interpolate":
            target = (
                [int(s) for s in size] if size is not None else [int(s) * self.factor for s in x.shape[2:]]
            )
            align = False if self.interpolation in ("linear", "bilinear", "trilinear", "bicubic") else None
            return self.projection(
                F.interpolate(x, size=target, mode=self.interpolation, align_corners=align)
            )
        x = self.up(x)
        if size is None:
            return x
        pad: list[int] = []
        for current, wanted in zip(reversed(x.shape[2:]), reversed(list(size))):
            pad += [0, int(wanted) - int(current)]  # negative padding crops
        return F.pad(x, pad)


class SkipFusion(nn.Module):
    """Fuse a decoder map with an encoder skip: ``cat`` (channel concatenation), ``add`` or ``none``.

    ``add`` projects the skip with a 1x1 conv when its channels differ from ``channels``; ``none`` ignores it.

    Args:
        mode: one of :data:`SKIP_MODES`.
        channels: channels of the decoder map.
        skip_channels: channels of the skip (default: ``channels``).
        spatial_dims: 1, 2 or 3.

    Attributes:
        out_channels: channels of the fused map (``channels + skip_channels`` for ``cat``, else ``channels``).

    Raises:
        ValueError: for a bad mode; in forward, for a skip whose spatial size differs from the map's.
    """

    def __init__(
        self, mode: str = "cat", channels: int = 1, skip_channels: int | None = None, spatial_dims: int = 2
    ):
        super().__init__()
        if mode not in SKIP_MODES:
            raise ValueError(f"`skip_mode` must be one of {SKIP_MODES}, got {mode!r}")
        check_positive_int("channels", channels)
        skip_channels = channels if skip_channels is None else skip_channels
        if isinstance(skip_channels, bool) or not isinstance(skip_channels, int) or skip_channels < 0:
            raise ValueError(f"`skip_channels` must be a non-negative int, got {skip_channels!r}")
        nd.check_spatial_dims(spatial_dims, (1, 2, 3))
        self.mode, self.channels, self.skip_channels = mode, channels, skip_channels
        self.out_channels = channels + skip_channels if mode == "cat" else channels
        if mode == "add" and skip_channels != channels:
            if skip_channels == 0:
                raise ValueError("`skip_mode`='add' needs a skip with channels, got skip_channels=0")
            self.projection: nn.Module = nd.conv_type(spatial_dims)(skip_channels, channels, 1)
        else:
            self.projection = nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "none":
            return x
        if skip is None:
            raise ValueError(f"SkipFusion(mode={self.mode!r}) needs a skip tensor, got None")
        if skip.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"skip spatial size {tuple(skip.shape[2:])} differs from the map's {tuple(x.shape[2:])}"
            )
        if self.mode == "cat":
            return torch.cat([x, skip], dim=1)
        return x + self.projection(skip)
