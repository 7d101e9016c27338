"""Flemme-style CNN encoders ``cnn``, ``cnn_small``, ``cnn_base`` (2D and 3D), built from :mod:`smp_like.base.blocks`.

Structure (after Flemme's CNN encoder): a patch embedding (a convolution with kernel = stride = ``patch_size`` to
``patch_channel`` channels; a 3x3 stride-1 convolution when ``patch_size`` is 1, the default), then one level per
stride ``2^i`` from the patch stride down to ``2^depth``:

* the patch level (stride ``patch_size``): ``num_blocks`` building blocks at ``patch_channel``;
* each further level ``j``: a :class:`~smp_like.base.blocks.Downsample` by 2 (``down_mode``) to ``down_channels[j]``
  and ``num_blocks`` building blocks at that width;
* the deepest level also runs the middle blocks, one building block per entry of ``middle_channels``.

Feature ``i`` of the encoder contract is the output of the level at stride ``2^i``; levels finer than the patch
stride are 0-channel placeholders (as SMP does for transformers). ``depth - log2(patch_size)`` down-samplings are
built, using the first entries of ``down_channels``. Every down-sampling gives ``ceil(size / 2)``, and the input is
zero-padded at its end to a multiple of ``patch_size``, so feature ``i`` has exactly ``ceil(size / 2^i)`` positions
per axis for any input size. Every building block accepts a time / condition embedding
(``supports_time_embedding = True``).
"""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smp_like.base import nd
from smp_like.base.blocks import BUILDING_BLOCKS, DOWN_MODES, Downsample, build_block, check_order
from smp_like.base.checks import check_positive_int
from smp_like.base.embedding import check_injection_mode
from smp_like.encoders._base import EncoderMixin

__all__ = ["FlemmeCNNEncoder", "flemme_cnn_encoders"]


def _channel_list(name: str, value: object, allow_empty: bool = False) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"`{name}` must be a sequence of positive ints, got {value!r}")
    values = list(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"`{name}` must be a sequence of positive ints, got {value!r}")
    if not values and not allow_empty:
        raise ValueError(f"`{name}` must not be empty")
    return values


class _Level(nn.Module):
    """One resolution level: optional down-sampling, then building blocks (each taking the embedding)."""

    def __init__(self, down: nn.Module | None, blocks: list[nn.Module]):
        super().__init__()
        self.down = down if down is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        x = self.down(x)
        for block in self.blocks:
            x = block(x, time_emb)
        return x


class FlemmeCNNEncoder(nn.Module, EncoderMixin):
    """Flemme-style convolutional encoder (see the module docstring for the structure).

    Args:
        in_channels: input channels.
        depth: number of stride-2 levels (features ``depth + 1``), 1 to 5 or more.
        spatial_dims: 2 or 3.
        patch_size: stride of the patch embedding, a power of 2 not above ``2^depth`` (1: a stride-1 3x3 stem).
        patch_channel: channels of the patch embedding and the patch level.
        down_channels: widths of the levels below the patch level (at least ``depth - log2(patch_size)``
            entries; the first ones are used).
        middle_channels: one extra building block per entry at the deepest level (may be empty).
        building_block: ``"conv"``, ``"double_conv"`` or ``"res_conv"``.
        num_blocks: building blocks per level.
        normalization: ``"batch"``, ``"group"``, ``"instance"``, ``"layer"``, ``"rms"``, an int (groups) or None.
        num_norm_groups: most groups for ``"group"``.
        activation: any ``torch.nn`` activation name.
        dropout: channel-dropout probability inside the blocks.
        down_mode: ``"conv"``, ``"pool"`` or ``"interpolate"``.
        kernel_size: convolution kernel of the blocks.
        order: ConvBlock sub-layer order (``"cna"``; see :func:`smp_like.base.blocks.check_order`).
        attention: attention inside every ConvBlock (None, ``"scse"``, ``"se"``, ``"cbam"``, ``"self"``).
        time_embedding_dim: width of a time / condition embedding; None for a time-unaware encoder.
        time_injection: ``"gate_bias"``, ``"gate"``, ``"bias"`` or ``"cross_attention"``.

    Raises:
        TypeError: for ``down_channels`` / ``middle_channels`` that are not sequences.
        ValueError: for any other bad argument, naming it and the valid choices.
    """

    supports_time_embedding = True
    _dilation_refusal = (
        "the Flemme CNN encoder",
        "its levels down-sample by pooling, interpolation or conv stages",
    )

    def __init__(
        self,
        in_channels: int = 3,
        depth: int = 5,
        spatial_dims: int = 2,
        patch_size: int = 1,
        patch_channel: int = 8,
        down_channels: Sequence[int] = (16, 32, 64, 128, 128),
        middle_channels: Sequence[int] = (128,),
        building_block: str = "conv",
        num_blocks: int = 1,
        normalization: str | int | None = "batch",
        num_norm_groups: int = 8,
        activation: str | None = "relu",
        dropout: float = 0.0,
        down_mode: str = "conv",
        kernel_size: int = 3,
        order: str = "cna",
        attention: str | None = None,
        time_embedding_dim: int | None = None,
        time_injection: str = "gate_bias",
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("depth", depth)
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("patch_size", patch_size)
        if patch_size & (patch_size - 1) or patch_size > 2**depth:
            raise ValueError(
                f"`patch_size` must be a power of 2 no larger than 2**depth={2**depth}, got {patch_size!r}"
            )
        check_positive_int("patch_channel", patch_channel)
        down = _channel_list("down_channels", down_channels, allow_empty=True)
        middle = _channel_list("middle_channels", middle_channels, allow_empty=True)
        if building_block not in BUILDING_BLOCKS:
            raise ValueError(f"`building_block` must be one of {BUILDING_BLOCKS}, got {building_block!r}")
        check_positive_int("num_blocks", num_blocks)
        if down_mode not in DOWN_MODES:
            raise ValueError(f"`down_mode` must be one of {DOWN_MODES}, got {down_mode!r}")
        check_order(order)
        if time_embedding_dim is not None:
            check_positive_int("time_embedding_dim", time_embedding_dim)
            check_injection_mode(time_injection)

        patch_level = patch_size.bit_length() - 1  # log2(patch_size)
        n_down = depth - patch_level
        if len(down) < n_down:
            raise ValueError(
                f"`down_channels` needs at least depth - log2(patch_size) = {n_down} entries for depth={depth}, "
                f"patch_size={patch_size}; got {tuple(down)}"
            )
        self._depth = depth
        self._in_channels = in_channels
        self._spatial_dims = spatial_dims
        self._patch_size = patch_size
        self._patch_level = patch_level

        block_kwargs: dict[str, Any] = {
            "spatial_dims": spatial_dims,
            "kernel_size": kernel_size,
            "order": order,
            "norm": normalization,
            "num_norm_groups": num_norm_groups,
            "activation": activation,
            "dropout": dropout,
            "attention": attention,
        }
        conv = nd.conv_type(spatial_dims)
        if patch_size == 1:
            self.patch_embed = conv(in_channels, patch_channel, 3, padding=1)
        else:
            self.patch_embed = conv(in_channels, patch_channel, patch_size, stride=patch_size)

        widths = [patch_channel] + down[:n_down]
        levels = []
        for j, width in enumerate(widths):
            previous = widths[j - 1] if j else patch_channel
            downsample = Downsample(previous, width, spatial_dims, mode=down_mode) if j else None
            blocks = [build_block(building_block, width, width, **block_kwargs) for _ in range(num_blocks)]
            if j == len(widths) - 1:
                current = width
                for middle_width in middle:
                    blocks.append(build_block(building_block, current, middle_width, **block_kwargs))
                    current = middle_width
            levels.append(_Level(downsample, blocks))
        self.levels = nn.ModuleList(levels)

        deepest = middle[-1] if middle else widths[-1]
        level_channels = widths[:-1] + [deepest]
        self._out_channels = (in_channels,) + (0,) * (patch_level - 1 if patch_level else 0)
        self._out_channels += tuple(level_channels[1:] if patch_level == 0 else level_channels)

        if time_embedding_dim is not None:
            self.enable_time_embedding(time_embedding_dim, time_injection)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Give every building block an embedding injection (see :class:`~smp_like.base.blocks.ConvBlock`)."""
        check_positive_int("time_embedding_dim", embedding_dim)
        check_injection_mode(mode)
        for level in self.levels:
            for block in level.blocks:
                block.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> list[torch.Tensor]:
        self._check_time_embedding(time_emb)
        sizes = [int(s) for s in x.shape[2:]]
        features = [x]
        for i in range(1, self._patch_level):
            placeholder_size = [-(-s // 2**i) for s in sizes]
            features.append(x.new_empty((x.shape[0], 0, *placeholder_size)))
        pad: list[int] = []
        for s in reversed(sizes):
            pad += [0, -s % self._patch_size]
        h = self.patch_embed(F.pad(x, pad) if any(pad) else x)
        for j, level in enumerate(self.levels):
            h = level(h, time_emb)
            if self._patch_level + j >= 1:
                features.append(h)
        return features


_COMMON = {"patch_size": 1, "num_blocks": 1}

flemme_cnn_encoders: dict[str, dict[str, Any]] = {
    "cnn": {
        "encoder": FlemmeCNNEncoder,
        "params": dict(
            _COMMON,
            patch_channel=8,
            down_channels=(16, 32, 64, 128, 128),
            middle_channels=(128,),
            building_block="conv",
        ),
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    },
    "cnn_small": {
        "encoder": FlemmeCNNEncoder,
        "params": dict(
            _COMMON,
            patch_channel=32,
            down_channels=(32, 64, 128, 256, 256),
            middle_channels=(256,),
            building_block="double_conv",
        ),
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    },
    "cnn_base": {
        "encoder": FlemmeCNNEncoder,
        "params": dict(
            _COMMON,
            patch_channel=64,
            down_channels=(64, 128, 256, 512, 512),
            middle_channels=(512, 512),
            building_block="res_conv",
            num_blocks=2,
        ),
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    },
}
