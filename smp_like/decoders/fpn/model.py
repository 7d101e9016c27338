"""FPN: SMP's arguments, state-dict keys and outputs; 2D and 3D; any input size.

Also home of :func:`forward_any_scale`, the pad-and-crop forward shared by the architectures whose mask need not
have the input's size (FPN, PSPNet and PAN keep SMP's fixed ``upsampling``, so e.g. FPN at encoder depth 3
returns a mask 4x larger than its input, exactly as SMP does).
"""

from fractions import Fraction
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.heads import SegmentationHead, build_classification_head
from smp_like.base.model import SegmentationModel
from smp_like.decoders.fpn.decoder import GROUP_NORM_GROUPS, FPNDecoder
from smp_like.encoders import get_encoder


def check_upsampling(upsampling: Any) -> None:
    """Validate the head's ``upsampling`` factor.

    Raises:
        ValueError: unless it is a number >= 1 (SMP silently treats values below 1 as no up-sampling).
    """
    if isinstance(upsampling, bool) or not isinstance(upsampling, (int, float)) or not upsampling >= 1:
        raise ValueError(f"`upsampling` must be a number >= 1 (1 = no up-sampling), got {upsampling!r}")


def _pad_at_end(x: torch.Tensor, target: Sequence[int], mode: str) -> torch.Tensor:
    pads = [t - s for s, t in zip(x.shape[2:], target)]
    if mode in ("reflect", "circular") and any(p >= s for p, s in zip(pads, x.shape[2:]) if p > 0):
        # F.pad would fail deep inside with an unhelpful message.
        raise ValueError(
            f"input of spatial size {tuple(x.shape[2:])} is too small to pad to {tuple(target)} with "
            f"input_padding={mode!r}; use 'constant' or 'replicate', or pad the input yourself"
        )
    flat = []
    for p in reversed(pads):
        flat += [0, p]
    if mode == "constant":
        return F.pad(x, flat, mode=mode, value=0.0)
    return F.pad(x, flat, mode=mode)


def _crop_at_end(y: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    # index_select rather than a slice: a slice makes torch.export prove `size <= padded size` through the
    # network's size arithmetic, which it cannot, while the index tensor's length simply is the size.
    for axis, size in enumerate(sizes, start=y.dim() - len(sizes)):
        y = y.index_select(axis, torch.arange(size, device=y.device))
    return y


def forward_any_scale(
    model: SegmentationModel, x: torch.Tensor, min_size: int = 1, scale: Fraction = Fraction(1)
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """``SegmentationModel.forward`` for masks at any fixed scale of the input, with a minimum input size.

    Pads the input at its end to a multiple of ``model.input_stride`` and to at least ``min_size`` per axis,
    runs the model, and crops the mask to ``ceil(size * scale)`` per axis, ``scale`` being the (static) ratio of
    mask to padded-input size (1 for the default ``upsampling``). With ``model.input_padding=None`` it raises
    instead, naming the size to pad to.

    Raises:
        TypeError, ValueError: as :meth:`SegmentationModel.check_input_shape`; ValueError too for inputs smaller
            than ``min_size`` in strict mode.
    """
    model.check_input_shape(x)
    spatial = list(x.shape[2:])
    if min_size > 1 and model.input_padding is None and any(s < min_size for s in spatial):
        raise ValueError(
            f"Wrong input shape {tuple(spatial)}: {type(model).__name__} needs spatial sizes of at least "
            f"{min_size} here. Pad the input to {tuple(max(s, min_size) for s in spatial)}."
        )
    pads_input = model.pads_input
    if pads_input:
        stride = model.input_stride
        target = [-(-s // stride) * stride for s in spatial]
        # A branch on sizes (a shape guard when traced): an exported graph covers either inputs below the
        # minimum or inputs above it, whose size arithmetic then stays simple enough for torch.export.
        if min_size > 1 and any(t < min_size for t in target):
            target = [max(t, min_size) for t in target]
        x = _pad_at_end(x, target, model.input_padding)
    features = model.encoder(x)
    masks = model.segmentation_head(model.decoder(features))
    if pads_input:
        # The mask is a fixed multiple of the padded input's size; keep the part that covers the real input.
        # A static scale keeps the crop size free of the network's size arithmetic (torch.export cannot
        # simplify that); at scale 1 it is the input size itself.
        tracing = torch.compiler.is_compiling()
        # Trailing axes: an argmax activation drops the channel axis.
        mask_spatial = list(masks.shape[masks.dim() - len(spatial):])
        if not tracing:
            expected = [p * scale.numerator // scale.denominator for p in x.shape[2:]]
            if mask_spatial != expected:
                raise RuntimeError(
                    f"{type(model).__name__}: mask size {tuple(mask_spatial)} is not {scale} x the padded input "
                    f"size {tuple(x.shape[2:])}; the model must pass its mask scale to forward_any_scale"
                )
        if scale == 1:
            out = spatial
        else:
            # ceil covers a partial output pixel; sym_min keeps it inside the mask for fractional up-sampling.
            out = [
                torch.sym_min(-(-s * scale.numerator // scale.denominator), m)
                for s, m in zip(spatial, mask_spatial)
            ]
        if tracing or mask_spatial != list(out):
            masks = _crop_at_end(masks, out)
    if model.classification_head is not None:
        return masks, model.classification_head(features[-1])
    return masks


class FPN(SegmentationModel):
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
        input_padding: ``F.pad`` mode used to pad inputs to a multiple of the output stride, or None to require
            divisible sizes (SMP's behaviour).
        **kwargs: passed to the encoder (e.g. ``output_stride``).

    Returns (forward):
        ``mask`` (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``.

    Raises:
        ValueError: for bad arguments (named in the message).
        TypeError: for ``decoder_use_norm``, which FPN does not take (its blocks use GroupNorm).
    """

    requires_divisible_input_shape = True

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
        **kwargs: Any,
    ):
        super().__init__()
        if "decoder_use_norm" in kwargs or "decoder_use_batchnorm" in kwargs:
            # SMP 0.6 passes it on to the encoder, where native encoders silently ignore it.
            raise TypeError(
                "FPN has no `decoder_use_norm`: its segmentation blocks always use GroupNorm(32), as in SMP"
            )
        nd.check_spatial_dims(spatial_dims)
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(f"`classes` must be a positive int, got {classes!r}")
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
        self.name = f"fpn-{encoder_name}"
        self.initialize()

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

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Return ``mask`` (N, classes, *spatial · scale), or ``(mask, label)`` with ``aux_params``."""
        return forward_any_scale(self, x, min_size=self.min_input_size, scale=self.mask_scale)
