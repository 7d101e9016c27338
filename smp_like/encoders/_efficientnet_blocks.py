"""Pieces shared by the two EfficientNet families (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling").

The compound-scaling arithmetic (channel and repeat rounding), the per-stage architecture table of
EfficientNet-B0 and the depth/stride bookkeeping of the encoders. The blocks themselves live with each family,
because the two ports name their layers differently (``_depthwise_conv`` vs ``conv_dw``) and checkpoints must
load without renaming.
"""

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from smp_like.encoders._utils import as_conv_stride, normalize_stage_strides

MIN_DEPTH = 1
MAX_DEPTH = 5


class StageArgs(NamedTuple):
    """One row of the EfficientNet-B0 table (Tan & Le 2019, Table 1) before scaling."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


# EfficientNet-B0 (Tan & Le 2019, Table 1): the seven MBConv stages after the 3x3 stride-2 stem (32 channels).
B0_STAGES: Tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 16),
    StageArgs(2, 3, 2, 6, 24),
    StageArgs(2, 5, 2, 6, 40),
    StageArgs(3, 3, 2, 6, 80),
    StageArgs(3, 5, 1, 6, 112),
    StageArgs(4, 5, 2, 6, 192),
    StageArgs(1, 3, 1, 6, 320),
)
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280

# Encoder stage (1..5, each halving the resolution) that holds the stride-2 block of each MBConv stage above;
# the stem is encoder stage 1. Used to place per-stage (anisotropic) strides.
ENCODER_STAGE_OF_STRIDED_MBCONV_STAGE = {1: 2, 2: 3, 3: 4, 5: 5}


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8) -> int:
    """Width scaling: ``channels * multiplier`` rounded to a multiple of ``divisor``, at most 10% down."""
    scaled = channels * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, multiplier: float = 1.0) -> int:
    """Depth scaling: ``repeats * multiplier`` rounded up."""
    return int(math.ceil(multiplier * repeats))


def check_depth(depth: object, family: str, min_depth: int = MIN_DEPTH, max_depth: int = MAX_DEPTH) -> int:
    """Validate the encoder ``depth`` argument.

    Raises:
        ValueError: naming the argument, the value and the valid range.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or not min_depth <= depth <= max_depth:
        raise ValueError(
            f"`depth` (encoder_depth) of an {family} encoder must be an int in {min_depth}..{max_depth}, "
            f"got {depth!r}"
        )
    return depth


def mbconv_strides(
    strides: Optional[Sequence[Union[int, Sequence[int]]]], spatial_dims: int
) -> Tuple[Union[int, Tuple[int, ...]], List[Union[int, Tuple[int, ...]]]]:
    """Stem stride and the stride of each of the seven MBConv stages, from per-encoder-stage ``strides``.

    Returns:
        ``(stem_stride, stage_strides)``, each an int or a per-axis tuple (see ``as_conv_stride``).
    """
    per_stage = normalize_stage_strides(strides, spatial_dims)
    stem = as_conv_stride(per_stage[0])
    stage_strides: List[Union[int, Tuple[int, ...]]] = []
    for index, args in enumerate(B0_STAGES):
        encoder_stage = ENCODER_STAGE_OF_STRIDED_MBCONV_STAGE.get(index)
        stage_strides.append(as_conv_stride(per_stage[encoder_stage - 1]) if encoder_stage else args.stride)
    return stem, stage_strides


def as_axes(value: Union[int, Sequence[int]], spatial_dims: int) -> Tuple[int, ...]:
    return (value,) * spatial_dims if isinstance(value, int) else tuple(value)
