"""Unet: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size."""

import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head
from smp_like.base.hub import HubMixin
from smp_like.base.model import SegmentationModel
from smp_like.base.deep_supervision import DeepSupervisionMixin
from smp_like.decoders.unet.decoder import UnetDecoder, check_decoder_block_kwargs, check_decoder_options
from smp_like.encoders import get_encoder


class Unet(DeepSupervisionMixin, SegmentationModel):
    """U-Net: an encoder, a decoder that fuses every skip, a segmentation head and an optional aux head.

    Any input size works: each decoder block resizes to the size of its skip, and the last one to the input's.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages (1..5 for most encoders).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        decoder_use_norm: ``True``/``False``, ``"batchnorm"``, ``"identity"``, ``"layernorm"``,
            ``"instancenorm"``, ``"inplace"``, or ``{"type": ..., **kwargs}``.
        decoder_channels: channels of each decoder block; one per encoder stage.
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
        deep_supervision: add a 1x1 side head on every decoder stage; in training mode ``forward`` then returns
            ``(main, sides)`` (see :mod:`smp_like.base.deep_supervision`). Eager mode only (no
            TorchScript). Off by default, which keeps SMP's modules, state-dict keys and outputs.
        decoder_block: ``"conv"`` (default: SMP's block), ``"res_conv"``, ``"swin"`` or ``"vmamba"`` — a decoder
            that mirrors the encoder, as Flemme's UNet / SwinU / VMambaU (see ``docs/unet_decoder_blocks.md``).
        decoder_skip: ``"cat"`` (default), ``"add"`` (1x1 projection of the skip when widths differ) or ``"none"``
            (skips ignored: the decoder of an auto-encoder).
        decoder_block_kwargs: options of the block body, e.g. ``{"num_heads": 2, "window_size": 4}`` for swin,
            ``{"state_channel": 8, "num_blocks": 1}`` for vmamba, ``{"norm": "group"}`` for res_conv.
        **kwargs: passed to the encoder (e.g. ``output_stride``).

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.
    """

    requires_divisible_input_shape = False

    supports_anisotropic_strides = True

    # config.json leaves these out while at their defaults, so SMP can still load the folder.
    _extension_defaults = {
        **HubMixin._extension_defaults,
        "deep_supervision": False,
        "decoder_block": "conv",
        "decoder_skip": "cat",
        "decoder_block_kwargs": None,
    }

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
        deep_supervision: bool = False,
        decoder_block: str = "conv",
        decoder_skip: str = "cat",
        decoder_block_kwargs: Optional[Dict[str, Any]] = None,
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
        if not isinstance(decoder_channels, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in decoder_channels
        ):
            raise ValueError(f"`decoder_channels` must be a sequence of positive ints, got {decoder_channels!r}")
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int):
            raise ValueError(f"`encoder_depth` must be an int, got {encoder_depth!r}")
        if len(decoder_channels) != encoder_depth:
            raise ValueError(
                f"`decoder_channels` must have encoder_depth={encoder_depth} entries, got "
                f"{len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        # Checked before the (possibly large) encoder is built.
        check_decoder_block_kwargs(
            decoder_block, check_decoder_options(decoder_block, decoder_skip, decoder_block_kwargs)
        )
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = UnetDecoder(
            encoder_channels=self.encoder.out_channels,
            decoder_channels=decoder_channels,
            n_blocks=encoder_depth,
            use_norm=decoder_use_norm,
            attention_type=decoder_attention_type,
            interpolation_mode=decoder_interpolation,
            spatial_dims=spatial_dims,
            decoder_block=decoder_block,
            decoder_skip=decoder_skip,
            block_kwargs=decoder_block_kwargs,
            # SMP's Unet puts a center block on VGG encoders (no stride-32 pooling before the decoder).
            add_center_block=isinstance(encoder_name, str) and encoder_name.startswith("vgg"),
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
        self.name = f"u-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)
