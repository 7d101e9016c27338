"""DPT: SMP 0.6's arguments, state-dict keys and outputs, for timm vision transformers; any input size (2D only)."""

import warnings
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import build_classification_head
from smp_like.base.model import SegmentationModel
from smp_like.decoders.dpt.decoder import READOUTS, DPTDecoder, DPTSegmentationHead
from smp_like.encoders.timm_vit import TimmViTEncoder

TIMM_PREFIX = "tu-"


class DPT(SegmentationModel):
    """Dense Prediction Transformer (Ranftl et al. 2021, arXiv:2103.13413) with a timm encoder.

    The encoder is read at ``encoder_depth`` blocks (:class:`~smp_like.encoders.timm_vit.TimmViTEncoder`: the
    plain token maps, with their prefix tokens); the decoder reassembles them at strides 4, 8, 16, 32 and fuses
    them coarse to fine; the head predicts at stride 2 and up-samples to the input size. Hierarchical timm models
    (ConvNeXt, Swin, ...) work too, as in SMP. SMP 0.6 checkpoints load unchanged (same keys and outputs).

    Differences from SMP (where SMP fails): inputs of any size are padded to a multiple of the encoder's stride
    (the patch size) and the mask cropped back (``input_padding``; None keeps SMP's strict check); token grids of
    odd size (e.g. 80x80 inputs for a /16 ViT) and patch sizes that are not powers of two (DINOv2's 14) work,
    because fusion blocks up-sample to the next level's size and the head to the input's; ViTs are created with
    ``dynamic_img_size=True`` where timm supports it (pass ``dynamic_img_size=False`` for SMP's default); a block
    listed twice in ``encoder_output_indices`` is read twice (SMP silently drops the duplicate). Unlike SMP,
    which takes any non-None ``encoder_weights`` as "timm's default weights", a string that is neither
    ``"imagenet"`` nor a timm tag of the model is refused, as for every ``tu-`` encoder of smp_like.

    Args:
        encoder_name: ``tu-<timm model>[.<tag>]``; only timm models (as in SMP).
        encoder_depth: number of blocks read (>= 1, at most the model's number of blocks).
        encoder_weights: None for random weights, ``"imagenet"`` for timm's default (or the named) tag, or a tag.
        encoder_output_indices: which blocks to read (negative counts from the end); default: spread evenly,
            ending at the last block. Features are always taken shallow to deep.
        decoder_readout: ``"cat"``, ``"add"`` or ``"ignore"``: how class / register tokens are used.
        decoder_intermediate_channels: width of each reassembled level, one per block read.
        decoder_fusion_channels: width of the fusion path and the head.
        in_channels: input channels.
        classes: output mask channels.
        activation: activation after the head (``"sigmoid"``, ``"softmax"``, ..., a callable, or None).
        aux_params: dict for the classification head on the deepest feature (``classes``, ``pooling``,
            ``dropout``, ``activation``).
        spatial_dims: must be 2 (timm transformers are 2D); kept for a uniform signature.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the patch size, or None to require
            divisible sizes (SMP's behaviour).
        **kwargs: passed to ``timm.create_model`` (None values dropped), e.g. ``dynamic_img_size``,
            ``img_size``, ``drop_path_rate``. ``output_stride`` other than None is refused (no dilation).

    Returns (forward):
        ``mask`` (N, classes, H, W), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for a non-timm encoder, 3D, a bad depth / index / readout / channel list, or dilation.
    """

    requires_divisible_input_shape = True

    def __init__(
        self,
        encoder_name: str = "tu-vit_base_patch16_224.augreg_in21k",
        encoder_depth: int = 4,
        encoder_weights: Optional[str] = "imagenet",
        encoder_output_indices: Optional[Sequence[int]] = None,
        decoder_readout: str = "cat",
        decoder_intermediate_channels: Sequence[int] = (256, 512, 1024, 1024),
        decoder_fusion_channels: int = 256,
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
        nd.check_spatial_dims(spatial_dims)
        if spatial_dims != 2:
            raise ValueError(
                f"DPT is 2D only (its encoder is a timm vision transformer), got spatial_dims={spatial_dims!r}; "
                "for volumes use an architecture with a native 3D encoder (e.g. Unet with resnet18)"
            )
        if not isinstance(encoder_name, str) or not encoder_name.startswith(TIMM_PREFIX):
            raise ValueError(
                f"Only timm encoders are supported for DPT: `encoder_name` must start with {TIMM_PREFIX!r} "
                f"(e.g. 'tu-vit_base_patch16_224'), got {encoder_name!r}"
            )
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or encoder_depth < 1:
            raise ValueError(f"`encoder_depth` must be an int >= 1, got {encoder_depth!r}")
        if decoder_readout not in READOUTS:
            raise ValueError(f"`decoder_readout` must be one of {READOUTS}, got {decoder_readout!r}")
        check_positive_int("classes", classes)
        if (
            isinstance(decoder_intermediate_channels, (str, bytes))
            or not hasattr(decoder_intermediate_channels, "__len__")
            or len(decoder_intermediate_channels) != encoder_depth
        ):
            raise ValueError(
                f"`decoder_intermediate_channels` must have encoder_depth={encoder_depth} entries, got "
                f"{decoder_intermediate_channels!r}"
            )
        if kwargs.get("output_stride") is not None:
            raise ValueError(
                f"DPT does not support dilation: leave `output_stride` unset (None), got {kwargs['output_stride']!r}"
            )
        kwargs.pop("output_stride", None)
        self.set_input_padding(input_padding)

        self.encoder = TimmViTEncoder(
            name=encoder_name[len(TIMM_PREFIX) :],
            pretrained=encoder_weights,
            in_channels=in_channels,
            depth=encoder_depth,
            output_indices=encoder_output_indices,
            **kwargs,
        )
        if not self.encoder.has_prefix_tokens and decoder_readout != "ignore":
            warnings.warn(
                f"Encoder {encoder_name!r} has no prefix tokens (e.g. cls_token), but `decoder_readout` is "
                f"{decoder_readout!r}; `decoder_readout='ignore'` is recommended for such encoders.",
                UserWarning,
                stacklevel=2,
            )
        self.decoder = DPTDecoder(
            encoder_out_channels=self.encoder.out_channels,
            encoder_output_strides=self.encoder.output_strides,
            encoder_has_prefix_tokens=self.encoder.has_prefix_tokens,
            readout=decoder_readout,
            intermediate_channels=decoder_intermediate_channels,
            fusion_channels=decoder_fusion_channels,
        )
        self.segmentation_head = DPTSegmentationHead(
            in_channels=decoder_fusion_channels, out_channels=classes, activation=activation, kernel_size=3,
            upsampling=2,
        )
        self.classification_head = build_classification_head(aux_params, self.encoder.out_channels[-1])
        self.name = f"dpt-{encoder_name[len(TIMM_PREFIX):]}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    def check_input_shape(self, x: torch.Tensor) -> None:
        """The base checks, plus the exact size a fixed-size encoder (no dynamic image size) insists on.

        Raises:
            TypeError: if ``x`` is not a tensor.
            ValueError: for a wrong rank, channel count, or size.
        """
        super().check_input_shape(x)
        fixed = self.encoder.fixed_input_size
        if fixed is not None:
            stride = self.input_stride if self.pads_input else 1
            sizes = tuple((s + stride - 1) // stride * stride for s in x.shape[2:])
            if sizes != tuple(fixed):
                raise ValueError(
                    f"encoder {self.encoder.name!r} takes only {tuple(fixed)} inputs (it has no dynamic image size), "
                    f"got {tuple(x.shape[2:])}; resize the input, or pass dynamic_img_size=True if the timm model "
                    "supports it"
                )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, timesteps: Optional[torch.Tensor] = None, embedding: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Return ``mask`` of shape (N, classes, H, W), or ``(mask, label)`` with ``aux_params``.

        ``timesteps`` / ``embedding``: for a model built with ``time_embedding_dim`` (see SegmentationModel).
        """
        self.check_input_shape(x)
        vector = self._time_vector(x, timesteps, embedding)
        padded, spatial = self._pad_input(x)
        features, prefix_tokens = self.encoder(padded)
        with self._decoder_time(vector):
            decoder_output = self.decoder(features, prefix_tokens)
        masks = self.segmentation_head(decoder_output, size=[padded.shape[2], padded.shape[3]])
        masks = self._crop_mask(masks, padded, spatial)
        if self.classification_head is not None:
            labels = self.classification_head(features[-1])
            return masks, labels
        return masks
