"""UnetPlusPlus: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size (padded to the stride)."""

import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head
from smp_like.base.hub import HubMixin
from smp_like.base.model import SegmentationModel
from smp_like.base.modules import ATTENTION_TYPES, parse_norm
from smp_like.base.deep_supervision import DeepSupervisionMixin
from smp_like.decoders.unetplusplus.decoder import UnetPlusPlusDecoder
from smp_like.encoders import get_encoder

# Encoder families SMP refuses for UnetPlusPlus (Mix Transformer: "UnetPlusPlus is not support encoder_name=...").
REFUSED_ENCODER_PREFIXES = ("mit_",)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class UnetPlusPlus(DeepSupervisionMixin, SegmentationModel):
    """UNet++ (Zhou et al. 2018): a U-Net whose skips are nested, dense convolution pathways.

    Inputs of any size are padded at their end to a multiple of the encoder's output stride and the mask is
    cropped back (``input_padding``); SMP requires divisible sizes here.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>`` (not ``mit_*``, which SMP refuses too).
        encoder_depth: number of encoder stages (1..5 for most encoders).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        decoder_use_norm: ``True``/``False``, ``"batchnorm"``, ``"identity"``, ``"layernorm"``,
            ``"instancenorm"``, ``"inplace"``, or ``{"type": ..., **kwargs}``.
        decoder_channels: channels of each top-row decoder block; one per encoder stage.
        decoder_attention_type: None or ``"scse"``.
        decoder_interpolation: up-sampling mode (``"nearest"``, ``"bilinear"``, ...).
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
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the output stride (the mask is cropped
            back), or None to raise SMP's error for such inputs.
        deep_supervision: add a 1x1 side head on every decoder stage (the top-row nodes ``x_0_j``); in training mode
            ``forward`` then returns ``(main, sides)`` (see :mod:`smp_like.base.deep_supervision`).
            Eager mode only (no TorchScript). Off by default, which keeps SMP's modules, state-dict keys and
            outputs.
        **kwargs: passed to the encoder (e.g. ``output_stride``).

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for a ``mit_*`` encoder, or any invalid argument (named, with the valid choices).
    """

    requires_divisible_input_shape = True

    supports_anisotropic_strides = True

    # config.json leaves deep_supervision out while False, so SMP can still load the folder.
    _extension_defaults = {**HubMixin._extension_defaults, "deep_supervision": False}

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        decoder_use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        decoder_attention_type: Optional[str] = None,
        decoder_interpolation: str = "nearest",
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        aux_params: Optional[dict] = None,
        spatial_dims: int = 2,
        input_padding: Optional[str] = "constant",
        deep_supervision: bool = False,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        if isinstance(encoder_name, str) and encoder_name.startswith(REFUSED_ENCODER_PREFIXES):
            raise ValueError(
                f"UnetPlusPlus does not support `encoder_name`={encoder_name!r}: SMP refuses Mix Transformer "
                f"(mit_*) encoders for UnetPlusPlus, and so does smp_like; use Unet, FPN or Segformer with it."
            )
        if "decoder_use_batchnorm" in kwargs:
            warnings.warn(
                "`decoder_use_batchnorm` is deprecated, use `decoder_use_norm`", DeprecationWarning, stacklevel=2
            )
            decoder_use_norm = kwargs.pop("decoder_use_batchnorm")
        nd.check_spatial_dims(spatial_dims)
        parse_norm(decoder_use_norm)
        nd.interpolation_mode(decoder_interpolation, spatial_dims)
        if decoder_attention_type not in ATTENTION_TYPES:
            raise ValueError(
                f"`decoder_attention_type` must be one of {ATTENTION_TYPES}, got {decoder_attention_type!r}"
            )
        check_positive_int("classes", classes)
        if not isinstance(decoder_channels, (list, tuple)) or not all(_is_positive_int(c) for c in decoder_channels):
            raise ValueError(f"`decoder_channels` must be a sequence of positive ints, got {decoder_channels!r}")
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int):
            raise ValueError(f"`encoder_depth` must be an int, got {encoder_depth!r}")
        if len(decoder_channels) != encoder_depth:
            raise ValueError(
                f"`decoder_channels` must have encoder_depth={encoder_depth} entries, got "
                f"{len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        self.set_input_padding(input_padding)
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = UnetPlusPlusDecoder(
            encoder_channels=self.encoder.out_channels,
            decoder_channels=decoder_channels,
            n_blocks=encoder_depth,
            use_norm=decoder_use_norm,
            attention_type=decoder_attention_type,
            interpolation_mode=decoder_interpolation,
            center=isinstance(encoder_name, str) and encoder_name.startswith("vgg"),
            spatial_dims=spatial_dims,
        )
        self.segmentation_head = SegmentationHead(
            in_channels=decoder_channels[-1], out_channels=classes, activation=activation, spatial_dims=spatial_dims
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.init_side_heads(
            deep_supervision, decoder_channels, classes, activation, decoder_interpolation, spatial_dims
        )
        self.name = f"unetplusplus-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)
