"""Pieces of the stacked hourglass (Newell et al. 2016): stride planning, a stride-truncated U-Net decoder and the
re-injection block between stacks.

Strides follow SLEAP's encoder-decoder convention: the encoder reaches the *maximum stride* (the input must be
divisible by it), and the decoder up-samples back only as far as the *output stride* (the stride of the outputs
relative to the input). The output stride must be one of the encoder's feature strides and smaller than the
maximum stride; otherwise :func:`plan_strides` raises a ``ValueError`` naming the strides that would work.
"""

from typing import Any, Dict, List, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.decoders.unet.decoder import UnetDecoder


def plan_strides(reductions: Sequence[Any], output_stride: Any, who: str = "encoder") -> Tuple[int, int]:
    """Check that ``output_stride`` can be reached by decoding the features of an encoder with ``reductions``.

    Args:
        reductions: the encoder's feature strides, input first (``encoder.reductions``, e.g. ``(1, 2, 4, 8)``).
        output_stride: the wanted stride of the decoder output relative to the encoder input.
        who: how to name the encoder in errors.

    Returns:
        ``(skip_level, max_stride)``: the index of ``output_stride`` in ``reductions`` (the number of encoder stages
        the decoder does not undo) and the deepest stride (the divisor input sizes must be multiples of).

    Raises:
        ValueError: for a non-int output stride, anisotropic encoder strides, or an output stride that is not one
            of the encoder's strides below its deepest one.
    """
    if isinstance(output_stride, bool) or not isinstance(output_stride, int) or output_stride < 1:
        raise ValueError(f"`output_stride` must be a positive int (e.g. 1, 2 or 4), got {output_stride!r}")
    if any(not isinstance(r, int) for r in reductions):
        raise ValueError(
            f"StackedHourglass needs the same stride on every axis, but the {who} has anisotropic strides "
            f"{tuple(reductions)}"
        )
    reductions = [int(r) for r in reductions]
    max_stride = reductions[-1]
    valid = [r for r in dict.fromkeys(reductions) if r < max_stride]
    if output_stride not in valid:
        raise ValueError(
            f"`output_stride`={output_stride} cannot be reached by the {who}: its feature strides are "
            f"{tuple(reductions)} (maximum stride {max_stride}), so the output stride must be one of {valid}. "
            "Choose one of these, or change `encoder_depth` (a deeper encoder reaches larger strides)."
        )
    return reductions.index(output_stride), max_stride


class TruncatedUnetDecoder(nn.Module):
    """U-Net decoder (:class:`~smp_like.decoders.unet.decoder.UnetDecoder`) that stops at ``skip_level``.

    With encoder features at strides ``r_0 = 1, r_1, ..., r_D``, the decoder has ``D - skip_level`` blocks and its
    output has the size (and stride ``r_skip_level``) of feature ``skip_level``. ``skip_level = 0`` is the full
    U-Net decoder.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        decoder_channels: channels of each block, deepest first; ``len == D - skip_level``.
        skip_level: the index of the output feature level.
        use_norm, interpolation_mode: per-block options of the U-Net decoder.
        spatial_dims: 2 or 3.

    Raises:
        ValueError: if ``decoder_channels`` does not have ``D - skip_level`` entries.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        skip_level: int = 0,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        n_blocks = len(encoder_channels) - 1 - skip_level
        if n_blocks < 1 or len(decoder_channels) != n_blocks:
            raise ValueError(
                f"`decoder_channels` must have {n_blocks} entries (encoder depth {len(encoder_channels) - 1} minus "
                f"the {skip_level} stage(s) below the output stride), got {tuple(decoder_channels)}"
            )
        self.skip_level = skip_level
        # UnetDecoder pairs block i with the (i+1)-th deepest feature: truncating its blocks stops it at the
        # feature of level `skip_level`, whose skip (when skip_level > 0) is that feature itself.
        self.unet = UnetDecoder(
            encoder_channels=encoder_channels,
            decoder_channels=decoder_channels,
            n_blocks=n_blocks,
            use_norm=use_norm,
            interpolation_mode=interpolation_mode,
            spatial_dims=spatial_dims,
        )

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        return self.unet(features)


class StackReinjection(nn.Module):
    """Input of the next stack (Newell et al. 2016, Fig. 4): ``x_next = x + F(h) + G(y)``.

    ``x`` is the current stack's input, ``h`` its output features and ``y`` its predictions; ``F`` and ``G`` are
    1x1 convolutions mapping both back to the feature channels.
    """

    def __init__(self, channels: int, classes: int, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        self.features = conv(channels, channels, kernel_size=1)
        self.predictions = conv(classes, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + self.features(h) + self.predictions(y)
