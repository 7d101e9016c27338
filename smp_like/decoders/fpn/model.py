"""FPN: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size.

Like SMP, the head keeps its fixed ``upsampling``, so at encoder depth 3 the mask is 4x larger than the input
(``mask_scale`` says so; the base class crops the mask of a padded input accordingly).
"""

from fractions import Fraction
from typing import Any, Callable, List, Optional, Union

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead, build_classification_head, check_upsampling
from smp_like.base.hub import HubMixin
from smp_like.base.model import SegmentationModel
from smp_like.decoders.fpn.decoder import GROUP_NORM_GROUPS, FPNDecoder
from smp_like.base.deep_supervision import DeepSupervisionMixin
from smp_like.encoders import get_encoder


class FPN(DeepSupervisionMixin, SegmentationModel):
    """FPN (Lin et al. 2017) with Kirillov et al.'s (2019) semantic segmentation branch, as in SMP.

    Sizes are padded to a multiple of the encoder's output stride and the mask is cropped back. At encoder
    depth 5 with ``upsampling=4`` the mask has the input's size; like SMP, other depths keep ``upsampling`` as
    given (depth 4 returns a 2x larger mask, depth 3 a 4x larger one), so pass ``upsampling=2`` / ``1`` for
    input-sized masks there.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages, 3..5.
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        decoder_pyramid_channels: channels of the feature pyramid.
        decoder_segmentation_channels: channels of the segmentation blocks (a multiple of 32, for GroupNorm).
        decoder_merge_policy: ``"add"`` or ``"cat"`` to merge the pyramid levels.
        decoder_dropout: spatial dropout after merging, in [0, 1].
        decoder_interpolation: up-sampling mode of the top-down pathway (``"nearest"``, ``"bilinear"``,
            ``"bicubic"`` (2D only), ``"area"``, ``"nearest-exact"``).
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
        deep_supervision: add a 1x1 side head on every decoder stage (the pyramid levels ``p5 .. p2``); in training
            mode ``forward`` then returns ``(main, sides)`` (see
            :mod:`smp_like.base.deep_supervision`). Eager mode only (no TorchScript). Off by
            default, which keeps SMP's modules, state-dict keys and outputs.
        **kwargs: passed to the encoder (e.g. ``output_stride``).

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for bad arguments (named in the message).
        TypeError: for ``decoder_use_norm``, which FPN does not take (its blocks use GroupNorm).
    """

    requires_divisible_input_shape = True

    # config.json leaves deep_supervision out while False, so SMP can still load the folder.
    _extension_defaults = {**HubMixin._extension_defaults, "deep_supervision": False}

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        decoder_pyramid_channels: int = 256,
        decoder_segmentation_channels: int = 128,
        decoder_merge_policy: str = "add",
        decoder_dropout: float = 0.2,
        decoder_interpolation: str = "nearest",
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        upsampling: int = 4,
        aux_params: Optional[dict] = None,
        spatial_dims: int = 2,
        input_padding: Optional[str] = "constant",
        deep_supervision: bool = False,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        if "decoder_use_norm" in kwargs or "decoder_use_batchnorm" in kwargs:
            # SMP 0.6 passes it on to the encoder, where native encoders silently ignore it.
            raise TypeError(
                "FPN has no `decoder_use_norm`: its segmentation blocks always use GroupNorm(32), as in SMP"
            )
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or encoder_depth < 3:
            raise ValueError(
                f"Encoder depth for FPN decoder cannot be less than 3: `encoder_depth` must be 3..5, "
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
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = FPNDecoder(
            encoder_channels=self.encoder.out_channels,
            encoder_depth=encoder_depth,
            pyramid_channels=decoder_pyramid_channels,
            segmentation_channels=decoder_segmentation_channels,
            dropout=decoder_dropout,
            merge_policy=decoder_merge_policy,
            interpolation_mode=decoder_interpolation,
            spatial_dims=spatial_dims,
        )
        self.segmentation_head = SegmentationHead(
            in_channels=self.decoder.out_channels,
            out_channels=classes,
            activation=activation,
            kernel_size=1,
            upsampling=upsampling,
            spatial_dims=spatial_dims,
        )
        self.classification_head = build_classification_head(
            aux_params, self.encoder.out_channels[-1], spatial_dims=spatial_dims
        )
        self.init_side_heads(
            deep_supervision, [decoder_pyramid_channels] * 4, classes, activation, decoder_interpolation, spatial_dims
        )
        self.name = f"fpn-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    @property
    def mask_scale(self) -> Fraction:
        """Mask size / (padded) input size: ``upsampling`` over the stride of the finest pyramid level."""
        return Fraction(self._upsampling) / self.encoder.reductions[-4]

    @property
    def min_input_size(self) -> int:
        """Smallest spatial size the decoder handles.

        With 32 segmentation channels GroupNorm(32) normalises one channel per group, which fails on a 1-pixel
        deepest feature (SMP fails there too), so padding then goes to at least 2x the output stride.
        """
        one_channel_groups = self.decoder.segmentation_channels == GROUP_NORM_GROUPS
        return self.output_stride * (2 if one_channel_groups else 1)

    def stage_reductions(self) -> List[Any]:
        """Reductions of the pyramid levels p5, p4, p3, p2 (the last four encoder features), coarse to fine."""
        return list(self.encoder.reductions)[-4:][::-1]
