"""Linknet: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size."""

import warnings
from typing import Any, Callable, Dict, Optional, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head
from smp_like.base.model import SegmentationModel
from smp_like.decoders.linknet.decoder import PREFINAL_CHANNELS, LinknetDecoder
from smp_like.encoders import get_encoder


class Linknet(SegmentationModel):
    """LinkNet (Chaurasia & Culurciello 2017): encoder features are added to the decoder blocks' outputs.

    Sizes are padded to a multiple of the encoder's output stride (each block up-samples exactly x2) and the
    mask is cropped back to the input's size.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages (1..5; SMP documents 3..5).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        decoder_use_norm: ``True``/``False``, ``"batchnorm"``, ``"identity"``, ``"layernorm"``,
            ``"instancenorm"``, ``"inplace"``, or ``{"type": ..., **kwargs}``. The deprecated keyword
            ``decoder_use_batchnorm`` still works.
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ... or None).
        aux_params: dict for the classification head (``classes``, ``pooling``, ``dropout``, ``activation``).
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the output stride, or None to require
            divisible sizes (SMP's behaviour).
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
        decoder_use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        aux_params: Optional[dict] = None,
        spatial_dims: int = 2,
        input_padding: Optional[str] = "constant",
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        if "decoder_use_batchnorm" in kwargs:
            warnings.warn(
                "`decoder_use_batchnorm` is deprecated, use `decoder_use_norm`", DeprecationWarning, stacklevel=2
            )
            decoder_use_norm = kwargs.pop("decoder_use_batchnorm")
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int):
            raise ValueError(f"`encoder_depth` must be an int, got {encoder_depth!r}")
        if isinstance(encoder_name, str) and encoder_name.startswith("mit_b"):
            # As SMP: Mix Transformer encoders are refused for Linknet.
            raise ValueError(f"Encoder `{encoder_name}` is not supported for Linknet")
        self.set_input_padding(input_padding)
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = LinknetDecoder(
            encoder_channels=self.encoder.out_channels,
            n_blocks=encoder_depth,
            prefinal_channels=PREFINAL_CHANNELS,
            use_norm=decoder_use_norm,
            spatial_dims=spatial_dims,
        )
        self.segmentation_head = SegmentationHead(
            in_channels=PREFINAL_CHANNELS, out_channels=classes, kernel_size=1, activation=activation,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.name = f"link-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

