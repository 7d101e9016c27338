"""PSPNet: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size."""

import warnings
from fractions import Fraction
from typing import Any, Callable, Dict, Optional, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head, check_upsampling
from smp_like.base.model import SegmentationModel
from smp_like.decoders.pspnet.decoder import PSPDecoder
from smp_like.encoders import get_encoder


class PSPNet(SegmentationModel):
    """PSPNet (Zhao et al. 2017): an encoder, the pyramid pooling module on its deepest feature, and a head.

    Only the deepest feature is used, so the mask is coarse. Sizes are padded to a multiple of the encoder's
    output stride and the mask is cropped back. With the defaults (encoder depth 3, ``upsampling=8``) the mask
    has the input's size; like SMP, other depths keep ``upsampling`` as given (depth 5 returns a mask 4x smaller
    than the input), so pass ``upsampling=2 ** encoder_depth`` for input-sized masks.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        encoder_depth: number of encoder stages (1..5; SMP documents 3..5).
        psp_out_channels: channels after the pyramid pooling module.
        decoder_use_norm: ``True``/``False``, ``"batchnorm"``, ``"identity"``, ``"layernorm"``,
            ``"instancenorm"``, ``"inplace"``, or ``{"type": ..., **kwargs}``. The deprecated keyword
            ``psp_use_batchnorm`` (a bool or any of these) still works and takes precedence, as in SMP.
        psp_dropout: spatial dropout after the pyramid pooling module, in [0, 1].
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ... or None).
        upsampling: final bilinear up-sampling factor of the head (>= 1).
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
        ``mask`` (N, classes, *spatial · upsampling / output_stride), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for bad arguments (named in the message).
    """

    requires_divisible_input_shape = True

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_weights: Optional[str] = "imagenet",
        encoder_depth: int = 3,
        psp_out_channels: int = 512,
        decoder_use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        psp_dropout: float = 0.2,
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        upsampling: int = 8,
        aux_params: Optional[dict] = None,
        spatial_dims: int = 2,
        input_padding: Optional[str] = "constant",
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        if "psp_use_batchnorm" in kwargs:
            warnings.warn(
                "`psp_use_batchnorm` is deprecated, use `decoder_use_norm`", DeprecationWarning, stacklevel=2
            )
            decoder_use_norm = kwargs.pop("psp_use_batchnorm")
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int):
            raise ValueError(f"`encoder_depth` must be an int, got {encoder_depth!r}")
        check_upsampling(upsampling)
        self._upsampling = upsampling
        self.set_input_padding(input_padding)
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = PSPDecoder(
            encoder_channels=self.encoder.out_channels,
            use_norm=decoder_use_norm,
            out_channels=psp_out_channels,
            dropout=psp_dropout,
            spatial_dims=spatial_dims,
        )
        self.segmentation_head = SegmentationHead(
            in_channels=psp_out_channels,
            out_channels=classes,
            kernel_size=3,
            activation=activation,
            upsampling=upsampling,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.name = f"psp-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    @property
    def mask_scale(self) -> Fraction:
        """Mask size / (padded) input size: ``upsampling`` over the deepest feature's stride."""
        return Fraction(self._upsampling) / self.encoder.reductions[-1]

