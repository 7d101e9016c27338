"""DeepLabV3 and DeepLabV3Plus: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size.

The encoder is dilated to ``encoder_output_stride`` (8 or 16) through ``get_encoder(output_stride=...)``; inputs
are padded to a multiple of that stride inside ``forward`` and the mask is cropped back (``input_padding``).
"""

from fractions import Fraction
from typing import Any, Callable, Iterable, Optional, Tuple, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head
from smp_like.base.model import SegmentationModel
from smp_like.decoders.deeplabv3.decoder import DeepLabV3Decoder, DeepLabV3PlusDecoder
from smp_like.encoders import get_encoder

OUTPUT_STRIDES = (8, 16)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_common(
    arch: str,
    encoder_depth: Any,
    encoder_output_stride: Any,
    decoder_channels: Any,
    decoder_atrous_rates: Any,
    decoder_aspp_separable: Any,
    decoder_aspp_dropout: Any,
    classes: Any,
    upsampling: Any,
    spatial_dims: Any,
) -> Tuple[int, ...]:
    """Validate the arguments both DeepLab variants share; return the atrous rates as a tuple."""
    nd.check_spatial_dims(spatial_dims)
    if encoder_output_stride not in OUTPUT_STRIDES or isinstance(encoder_output_stride, bool):
        raise ValueError(
            f"{arch} supports `encoder_output_stride` 8 or 16, got {encoder_output_stride!r} "
            "(the encoder is dilated to reach it)"
        )
    if not _is_int(encoder_depth):
        raise ValueError(f"`encoder_depth` must be an int, got {encoder_depth!r}")
    if not _is_int(decoder_channels) or decoder_channels < 1:
        raise ValueError(f"`decoder_channels` must be a positive int for {arch}, got {decoder_channels!r}")
    if isinstance(decoder_atrous_rates, (str, bytes)) or not isinstance(decoder_atrous_rates, Iterable):
        raise ValueError(
            "`decoder_atrous_rates` must be a sequence of positive ints like (12, 24, 36), "
            f"got {decoder_atrous_rates!r}"
        )
    rates = tuple(decoder_atrous_rates)
    if not rates or not all(_is_int(r) and r > 0 for r in rates):
        raise ValueError(
            f"`decoder_atrous_rates` must be a non-empty sequence of positive ints like (12, 24, 36), got {rates!r}"
        )
    if not isinstance(decoder_aspp_separable, bool):
        raise ValueError(f"`decoder_aspp_separable` must be True or False, got {decoder_aspp_separable!r}")
    if isinstance(decoder_aspp_dropout, bool) or not isinstance(decoder_aspp_dropout, (int, float)) or not (
        0.0 <= decoder_aspp_dropout <= 1.0
    ):
        raise ValueError(f"`decoder_aspp_dropout` must be a probability in [0, 1], got {decoder_aspp_dropout!r}")
    check_positive_int("classes", classes)
    if upsampling is not None and (not _is_int(upsampling) or upsampling < 1):
        raise ValueError(
            f"`upsampling` must be None (back to the input size) or a positive int scale factor, got {upsampling!r}"
        )
    return rates


class _DeepLabModel(SegmentationModel):
    """Shared forward of the two DeepLab variants: pad, run, crop the mask to the input's extent.

    With the default ``upsampling`` the mask has the input's size. A custom ``upsampling`` makes it
    ``upsampling / decoder_stride`` times the input; the crop then keeps the part that covers the unpadded input.
    """

    requires_divisible_input_shape = True
    # The mask is (upsampling / _decoder_stride) times the input size; set in the subclasses' __init__.
    _upsampling: int = 1
    _decoder_stride: int = 1

    @property
    def mask_scale(self) -> Fraction:
        """Mask size / (padded) input size: the head's ``upsampling`` over the decoder's stride."""
        return Fraction(self._upsampling) / self._decoder_stride


class DeepLabV3(_DeepLabModel):
    """DeepLabV3 (Chen et al. 2017): a dilated encoder, ASPP, a 1x1 head and bilinear upsampling.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages (1..5 for most encoders).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        encoder_output_stride: 8 or 16; the last encoder stages are dilated instead of strided.
        decoder_channels: channels of the ASPP branches and of the decoder output.
        decoder_atrous_rates: dilations of the 3x3 ASPP branches (SMP: exactly three; here any number >= 1).
        decoder_aspp_separable: depthwise-separable ASPP branches.
        decoder_aspp_dropout: dropout after the ASPP projection.
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ... or None).
        upsampling: head upsampling factor; None = the encoder's output stride (mask at input size).
        aux_params: dict for the classification head (``classes``, ``pooling``, ``dropout``, ``activation``).
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the output stride (the mask is cropped
            back), or None to raise SMP's error for such inputs.
        **kwargs: passed to the encoder.

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for an output stride other than 8 or 16, or any other invalid argument (named).
    """

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        encoder_output_stride: int = 8,
        decoder_channels: int = 256,
        decoder_atrous_rates: Iterable[int] = (12, 24, 36),
        decoder_aspp_separable: bool = False,
        decoder_aspp_dropout: float = 0.5,
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        upsampling: Optional[int] = None,
        aux_params: Optional[dict] = None,
        spatial_dims: int = 2,
        input_padding: Optional[str] = "constant",
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        rates = _check_common(
            "DeepLabV3", encoder_depth, encoder_output_stride, decoder_channels, decoder_atrous_rates,
            decoder_aspp_separable, decoder_aspp_dropout, classes, upsampling, spatial_dims,
        )  # fmt: skip
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
        self.decoder = DeepLabV3Decoder(
            in_channels=self.encoder.out_channels[-1],
            out_channels=decoder_channels,
            atrous_rates=rates,
            aspp_separable=decoder_aspp_separable,
            aspp_dropout=decoder_aspp_dropout,
            spatial_dims=spatial_dims,
        )
        self._check_anisotropic_strides()
        # The decoder works at the encoder's (possibly capped by a shallow depth) output stride.
        self._decoder_stride = self.encoder.output_stride
        self._upsampling = self._decoder_stride if upsampling is None else upsampling
        self.segmentation_head = SegmentationHead(
            in_channels=decoder_channels,
            out_channels=classes,
            activation=activation,
            kernel_size=1,
            upsampling=self._upsampling,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.name = f"deeplabv3-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)


class DeepLabV3Plus(_DeepLabModel):
    """DeepLabV3+ (Chen et al. 2018): DeepLabV3's ASPP plus a decoder that fuses the stride-4 feature.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: 3, 4 or 5 (the decoder needs the stride-4 feature and a deeper one).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        encoder_output_stride: 8 or 16; the last encoder stages are dilated instead of strided.
        decoder_channels: channels of the ASPP and of the decoder output.
        decoder_atrous_rates: dilations of the 3x3 ASPP branches (SMP: exactly three; here any number >= 1).
        decoder_aspp_separable: depthwise-separable ASPP branches.
        decoder_aspp_dropout: dropout after the ASPP projection.
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ... or None).
        upsampling: head upsampling factor (4: the mask has the input's size; None means the same).
        aux_params: dict for the classification head (``classes``, ``pooling``, ``dropout``, ``activation``).
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the output stride (the mask is cropped
            back), or None to raise SMP's error for such inputs.
        **kwargs: passed to the encoder.

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for an output stride other than 8 or 16, an encoder depth below 3, or any other invalid
            argument (named).
    """

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        encoder_output_stride: int = 16,
        decoder_channels: int = 256,
        decoder_atrous_rates: Iterable[int] = (12, 24, 36),
        decoder_aspp_separable: bool = True,
        decoder_aspp_dropout: float = 0.5,
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
        rates = _check_common(
            "DeepLabV3Plus", encoder_depth, encoder_output_stride, decoder_channels, decoder_atrous_rates,
            decoder_aspp_separable, decoder_aspp_dropout, classes, upsampling, spatial_dims,
        )  # fmt: skip
        if encoder_depth not in (3, 4, 5):
            raise ValueError(
                f"DeepLabV3Plus needs `encoder_depth` 3, 4 or 5 (its decoder fuses the stride-4 feature with a "
                f"deeper one), got {encoder_depth!r}"
            )
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
        # The low-level feature is the stride-4 one (index 2 for every encoder whose features go 1, 2, 4, ...).
        reductions = tuple(self.encoder.reductions)
        highres_index = reductions.index(4) if 4 in reductions[:-1] else 2
        self.decoder = DeepLabV3PlusDecoder(
            encoder_channels=self.encoder.out_channels,
            out_channels=decoder_channels,
            atrous_rates=rates,
            aspp_separable=decoder_aspp_separable,
            aspp_dropout=decoder_aspp_dropout,
            highres_index=highres_index,
            spatial_dims=spatial_dims,
        )
        self._decoder_stride = reductions[highres_index]
        self._upsampling = self._decoder_stride if upsampling is None else upsampling
        self.segmentation_head = SegmentationHead(
            in_channels=decoder_channels,
            out_channels=classes,
            activation=activation,
            kernel_size=1,
            upsampling=self._upsampling,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.name = f"deeplabv3plus-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)
