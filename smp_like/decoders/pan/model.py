"""PAN: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size."""

from fractions import Fraction
from typing import Any, Callable, Optional, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head, check_upsampling
from smp_like.base.model import SegmentationModel
from smp_like.decoders.pan.decoder import FPA_MIN_SIZE, PANDecoder
from smp_like.encoders import get_encoder

ENCODER_OUTPUT_STRIDES = (16, 32)


class PAN(SegmentationModel):
    """Pyramid Attention Network (Li et al. 2018): FPA on the deepest feature, GAU blocks up to stride 4.

    Sizes are padded to a multiple of the output stride and, because FPA halves the deepest feature three
    times, to at least 8x the output stride (128 px at ``encoder_output_stride=16``, 256 at 32; SMP fails inside
    the network below that); the mask is cropped back to the input's size.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages, 3..5.
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        encoder_output_stride: 16 (the last stage is dilated) or 32.
        decoder_channels: channels of every decoder map.
        decoder_interpolation: up-sampling mode (``"bilinear"``, ``"nearest"``, ``"bicubic"`` (2D only),
            ``"area"``, ``"nearest-exact"``).
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ... or None).
        upsampling: final bilinear up-sampling factor of the head (>= 1; 4 gives the input's size).
        aux_params: dict for the classification head (``classes``, ``pooling``, ``dropout``, ``activation``).
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        input_padding: ``F.pad`` mode used to pad inputs, or None to require sizes SMP accepts (divisible by
            the output stride and at least 8x it).
        **kwargs: passed to the encoder.

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for bad arguments (named in the message), e.g. ``encoder_output_stride`` not 16 or 32.
        TypeError: if ``output_stride`` is given too (use ``encoder_output_stride``).
    """

    requires_divisible_input_shape = True

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        encoder_output_stride: int = 16,
        decoder_channels: int = 32,
        decoder_interpolation: str = "bilinear",
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        upsampling: int = 4,
        aux_params: Optional[dict] = None,
        spatial_dims: int = 2,
        input_padding: Optional[str] = "constant",
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        if isinstance(encoder_output_stride, bool) or encoder_output_stride not in ENCODER_OUTPUT_STRIDES:
            raise ValueError(
                f"`encoder_output_stride` for PAN must be one of {ENCODER_OUTPUT_STRIDES}, "
                f"got {encoder_output_stride!r}"
            )
        if "output_stride" in kwargs:
            raise TypeError("PAN takes `encoder_output_stride` (16 or 32), not `output_stride`")
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or not 3 <= encoder_depth <= 5:
            raise ValueError(
                f"Encoder depth for PAN decoder cannot be less than 3: `encoder_depth` must be 3, 4 or 5, "
                f"got {encoder_depth!r}"
            )
        check_upsampling(upsampling)
        self._upsampling = upsampling
        self.set_input_padding(input_padding)
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            output_stride=encoder_output_stride,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = PANDecoder(
            encoder_channels=self.encoder.out_channels,
            encoder_depth=encoder_depth,
            decoder_channels=decoder_channels,
            interpolation_mode=decoder_interpolation,
            spatial_dims=spatial_dims,
        )
        self.segmentation_head = SegmentationHead(
            in_channels=decoder_channels,
            out_channels=classes,
            kernel_size=3,
            activation=activation,
            upsampling=upsampling,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.name = f"pan-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    @property
    def min_input_size(self) -> int:
        """Smallest spatial size the decoder handles: FPA pools the deepest feature 3 times (8x its stride)."""
        return FPA_MIN_SIZE * self.output_stride

    @property
    def mask_scale(self) -> Fraction:
        """Mask size / (padded) input size: ``upsampling`` over the stride of the finest (stride-4) feature."""
        return Fraction(self._upsampling) / self.encoder.reductions[2]

