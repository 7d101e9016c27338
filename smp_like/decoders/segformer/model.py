"""Segformer: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size."""

from fractions import Fraction
from typing import Any, Callable, Optional, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head, check_upsampling
from smp_like.base.model import SegmentationModel
from smp_like.decoders.segformer.decoder import SegformerDecoder, check_decoder_args
from smp_like.encoders import get_encoder

DECODER_STRIDE = 4


class Segformer(SegmentationModel):
    """SegFormer (Xie et al. 2021): any encoder + the all-MLP decoder (sec. 3.2) + a 1x1 head.

    The paper pairs the decoder with the Mix Transformer encoders (``"mit_b0"`` ... ``"mit_b5"``); as in SMP
    any registered encoder works, and so do volumes with a 3D encoder (``"resnet18"``, ``spatial_dims=3``).
    The decoder works at stride 4 and the head up-samples by ``upsampling`` (4 gives the input's size). Inputs
    of any size are padded at their end to a multiple of the output stride and the mask is cropped back (to
    ``ceil(size * upsampling / 4)`` per axis).

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages, 3..5.
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        decoder_segmentation_channels: width of the MLP decoder.
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ... or None).
        upsampling: bilinear up-sampling factor of the head (>= 1; 4 gives the input's size).
        aux_params: dict for the classification head (``classes``, ``pooling``, ``dropout``, ``activation``).
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the output stride, or None to
            require divisible sizes (SMP's behaviour).
        **kwargs: passed to the encoder (e.g. ``output_stride``).

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for bad arguments (named in the message).
    """

    requires_divisible_input_shape = True

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        decoder_segmentation_channels: int = 256,
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
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        check_decoder_args(encoder_depth, decoder_segmentation_channels)
        check_upsampling(upsampling)
        # The decoder works at stride 4, so the mask is upsampling / 4 times the (padded) input's size.
        self._upsampled_scale = Fraction(str(upsampling)) / DECODER_STRIDE
        self.set_input_padding(input_padding)
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = SegformerDecoder(
            encoder_channels=self.encoder.out_channels,
            encoder_depth=encoder_depth,
            segmentation_channels=decoder_segmentation_channels,
            spatial_dims=spatial_dims,
        )
        self.segmentation_head = SegmentationHead(
            in_channels=decoder_segmentation_channels,
            out_channels=classes,
            kernel_size=1,
            activation=activation,
            upsampling=upsampling,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.name = f"segformer-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    @property
    def mask_scale(self) -> Fraction:
        """Mask size / (padded) input size: ``upsampling`` over the decoder's stride of 4."""
        return self._upsampled_scale
