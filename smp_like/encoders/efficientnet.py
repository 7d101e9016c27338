"""EfficientNet-B0..B7 encoders (Tan & Le 2019) as n-d modules, laid out like SMP's efficientnet-pytorch port.

Layer names follow that port (``_conv_stem``, ``_bn0``, ``_blocks.<i>._depthwise_conv``, ``_se_reduce`` ...,
``_conv_head``, ``_bn1``), so SMP checkpoints and the ``smp-hub/efficientnet-b*.<tag>`` weights load without
renaming.

Padding: the port emulates TensorFlow's ``"SAME"`` padding, but *statically*: the amounts are computed once,
at construction, for the image size each model was published with (224 px for B0 ... 600 px for B7) and then
applied to every input. Stride-2 convolutions therefore pad asymmetrically (e.g. ``(0, 1)`` for 3x3), and a
few stages pad symmetrically where that image size is odd at their level (B1/B2's last stride-2 stage). We
reproduce exactly that (per axis, in 2D and 3D), so features agree with SMP for every input size;
``image_size=None`` switches to "SAME" padding computed from each input (TensorFlow's behaviour; not SMP's).
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._efficientnet_blocks import (
    B0_HEAD_CHANNELS,
    B0_STAGES,
    B0_STEM_CHANNELS,
    as_axes,
    check_depth,
    mbconv_strides,
    round_channels,
    round_repeats,
)
from smp_like.encoders._utils import normalize_stage_strides
from smp_like.encoders._normalization import IMAGENET_MEAN, IMAGENET_STD

# The port's batch-norm settings (TensorFlow's momentum 0.99 is PyTorch's 0.01).
_BN_EPS = 1e-3
_BN_MOMENTUM = 1 - 0.99


def tf_same_padding(
    input_size: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> Tuple[int, ...]:
    """``F.pad`` amounts (last axis first) that make a convolution behave like TensorFlow's ``"SAME"``.

    Per axis the output has ``ceil(n / s)`` entries; the missing input is zeros, the odd one at the end.
    """
    pads: List[int] = []
    for n, k, s, d in zip(input_size, kernel_size, stride, dilation):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append(total // 2)
        pads.append(total - total // 2)
    flat: List[int] = []
    for axis in reversed(range(len(input_size))):
        flat += pads[2 * axis : 2 * axis + 2]
    return tuple(flat)


class _TFSamePaddingMixin:
    """Zero-pads like TensorFlow's ``"SAME"`` before an ``nn.ConvNd`` (built with ``padding=0``)."""

    def _setup_same_padding(self, image_size: Optional[Sequence[int]]) -> None:
        # image_size: this conv's input size when the network sees its nominal image size; None = dynamic.
        self.image_size = None if image_size is None else tuple(image_size)
        self.same_padding = (
            None
            if image_size is None
            else tf_same_padding(self.image_size, self.kernel_size, self.stride, self.dilation)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(d != 1 for d in self.dilation):
            # Dilated by make_dilated: it set stride 1 and symmetric padding on the conv itself (SMP does the
            # same and drops the static padding).
            return self._conv_forward(x, self.weight, self.bias)
        pads = self.same_padding
        if pads is None:
            pads = tf_same_padding(x.shape[2:], self.kernel_size, self.stride, self.dilation)
        if any(pads):
            x = F.pad(x, pads)
        return self._conv_forward(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, same_padding={self.same_padding}"


class Conv2dSame(_TFSamePaddingMixin, nn.Conv2d):
    """2D convolution with TensorFlow-style ``"SAME"`` padding: static given ``image_size``, else dynamic."""

    def __init__(self, *args, image_size: Optional[Sequence[int]] = None, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self._setup_same_padding(image_size)


class Conv3dSame(_TFSamePaddingMixin, nn.Conv3d):
    """3D convolution with TensorFlow-style ``"SAME"`` padding: static given ``image_size``, else dynamic."""

    def __init__(self, *args, image_size: Optional[Sequence[int]] = None, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self._setup_same_padding(image_size)


_SAME_CONV = {2: Conv2dSame, 3: Conv3dSame}


def _reduce(
    image_size: Optional[Tuple[int, ...]], stride: Union[int, Tuple[int, ...]]
) -> Optional[Tuple[int, ...]]:
    """The input size after a "SAME" convolution with ``stride`` (ceil per axis)."""
    if image_size is None:
        return None
    return tuple(math.ceil(n / s) for n, s in zip(image_size, as_axes(stride, len(image_size))))


def drop_connect(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Drop whole residual branches per sample (stochastic depth, Huang et al. 2016), rescaling the kept ones.

    Written as the port does (``floor(keep + U[0, 1))``), so it draws the same random numbers.
    """
    keep = 1.0 - rate
    mask_shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = torch.floor(keep + torch.rand(mask_shape, dtype=x.dtype, device=x.device))
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (Sandler et al. 2018; Hu et al. 2018).

    1x1 expansion -> kxk depthwise (strided) -> SE -> 1x1 projection; identity shortcut when shapes allow.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride (int or one per axis).
        expand_ratio: width of the expanded representation relative to ``in_channels``.
        image_size: per-axis input size at the nominal image size (static "SAME" padding), or None (dynamic).
        se_ratio: squeeze width relative to ``in_channels``.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: Union[int, Tuple[int, ...]],
        expand_ratio: int,
        image_size: Optional[Tuple[int, ...]],
        se_ratio: float = 0.25,
        spatial_dims: int = 2,
    ):
        super().__init__()
        same_conv, conv = _SAME_CONV[spatial_dims], nd.conv_type(spatial_dims)
        norm = nd.batchnorm_type(spatial_dims)
        mid_channels = in_channels * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = conv(in_channels, mid_channels, 1, bias=False)
            self._bn0 = norm(mid_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        else:
            self._expand_conv = nn.Identity()
            self._bn0 = nn.Identity()
        self._depthwise_conv = same_conv(
            mid_channels, mid_channels, kernel_size, stride=stride, groups=mid_channels, bias=False,
            image_size=image_size,
        )
        self._bn1 = norm(mid_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        squeezed = max(1, int(in_channels * se_ratio))
        self._se_reduce = conv(mid_channels, squeezed, 1)
        self._se_expand = conv(squeezed, mid_channels, 1)
        self._project_conv = conv(mid_channels, out_channels, 1, bias=False)
        self._bn2 = norm(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._swish = nn.SiLU()
        self.expands = expand_ratio != 1
        self.has_shortcut = in_channels == out_channels and set(as_axes(stride, spatial_dims)) == {1}

    def forward(self, x: torch.Tensor, drop_connect_rate: float = 0.0) -> torch.Tensor:
        shortcut = x
        if self.expands:
            x = self._swish(self._bn0(self._expand_conv(x)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        squeezed = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        squeezed = self._se_expand(self._swish(self._se_reduce(squeezed)))
        x = torch.sigmoid(squeezed) * x
        x = self._bn2(self._project_conv(x))
        if self.has_shortcut:
            if self.training and drop_connect_rate > 0:
                x = drop_connect(x, drop_connect_rate)
            x = x + shortcut
        return x


class EfficientNetEncoder(nn.Module, EncoderMixin):
    """EfficientNet feature extractor (Tan & Le 2019): ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Args:
        out_channels: channels of the six possible features (input first).
        out_indexes: index of the block whose output is feature 2, 3, 4 and 5 (SMP's choice, kept as data:
            for B0 feature 4 is taken after the first 112-channel block, for the others after the last).
        width_coefficient: channel multiplier of the compound scaling.
        depth_coefficient: repeat multiplier of the compound scaling.
        image_size: the nominal input size that fixes the static "SAME" padding (per axis in 3D); None pads
            from each input's actual size instead.
        drop_connect_rate: stochastic-depth rate (block ``i`` of ``n`` uses ``rate * i / n``).
        depth: number of down-sampling stages to return, 2..5 (as SMP, which has no depth 1 for this family).
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors (5 entries, each 1, 2 or one per axis), e.g.
            ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 2..5, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("_fc.",)

    def __init__(
        self,
        out_channels: Sequence[int],
        out_indexes: Sequence[int],
        width_coefficient: float,
        depth_coefficient: float,
        image_size: Optional[int] = 224,
        drop_connect_rate: float = 0.2,
        depth: int = 5,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
    ):
        super().__init__()
        check_depth(depth, "EfficientNet", min_depth=2)
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        if strides is not None:
            self._stage_strides = normalize_stage_strides(strides, spatial_dims)
        stem_stride, stage_strides = mbconv_strides(strides, spatial_dims)
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3
        self._out_indexes = tuple(out_indexes)
        self.drop_connect_rate = drop_connect_rate

        norm = nd.batchnorm_type(spatial_dims)
        size = None if image_size is None else (int(image_size),) * spatial_dims
        stem_channels = round_channels(B0_STEM_CHANNELS, width_coefficient)
        self._conv_stem = _SAME_CONV[spatial_dims](
            3, stem_channels, 3, stride=stem_stride, bias=False, image_size=size
        )
        self._bn0 = norm(stem_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._swish = nn.SiLU()
        size = _reduce(size, stem_stride)

        blocks: List[MBConvBlock] = []
        in_channels = stem_channels
        for args, stride in zip(B0_STAGES, stage_strides):
            channels = round_channels(args.out_channels, width_coefficient)
            for repeat in range(round_repeats(args.repeats, depth_coefficient)):
                block_stride = stride if repeat == 0 else 1
                blocks.append(
                    MBConvBlock(in_channels, channels, args.kernel_size, block_stride, args.expand_ratio,
                                image_size=size, spatial_dims=spatial_dims)
                )
                size = _reduce(size, block_stride)
                in_channels = channels
        self._blocks = nn.ModuleList(blocks)
        if self._out_indexes[-1] != len(blocks) - 1:
            raise ValueError(
                f"`out_indexes` must end at the last block ({len(blocks) - 1}), got {out_indexes!r}"
            )

        # The classification head's conv + norm are unused by the encoder but kept, as SMP does, so
        # checkpoints load with strict=True both ways.
        head_channels = round_channels(B0_HEAD_CHANNELS, width_coefficient)
        self._conv_head = nd.conv_type(spatial_dims)(in_channels, head_channels, 1, bias=False)
        self._bn1 = norm(head_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)

    def _stage_blocks(self) -> Dict[int, List[nn.Module]]:
        bounds = (-1, *self._out_indexes)
        return {
            stage: list(self._blocks[bounds[stage - 2] + 1 : bounds[stage - 1] + 1]) for stage in range(2, 6)
        }

    def get_stages(self) -> Dict[int, Union[nn.Module, Sequence[nn.Module]]]:
        return {1: [self._conv_stem, self._bn0, self._swish], **self._stage_blocks()}

    def _size_changing_convs(self) -> List[_TFSamePaddingMixin]:
        last = self._out_indexes[self._depth - 2]
        return [self._conv_stem] + [block._depthwise_conv for block in self._blocks[: last + 1]]

    def _too_small_axes(self, spatial_shape: Sequence[int]) -> List[int]:
        """Axes whose size leaves a static-padded conv with fewer inputs than its kernel."""
        sizes, failing = list(spatial_shape), set()
        for conv in self._size_changing_convs():
            if any(d != 1 for d in conv.dilation):
                continue  # stride 1 and symmetric padding (k // 2) * rate keep every size
            pads = conv.same_padding
            for axis in range(len(sizes)):
                before, after = pads[2 * (len(sizes) - 1 - axis) : 2 * (len(sizes) - axis)]
                padded = sizes[axis] + before + after
                reach = (conv.kernel_size[axis] - 1) * conv.dilation[axis] + 1
                if padded < reach:
                    failing.add(axis)
                sizes[axis] = max((padded - reach) // conv.stride[axis] + 1, 1)
        return sorted(failing)

    def _check_input_size(self, spatial_shape: Sequence[int]) -> None:
        if self._conv_stem.same_padding is None or torch.compiler.is_compiling():
            return
        failing = self._too_small_axes(spatial_shape)
        if not failing:
            return
        minimum = list(spatial_shape)
        for axis in failing:
            while axis in self._too_small_axes(minimum):
                minimum[axis] += 1
        raise ValueError(
            f"input spatial size {tuple(spatial_shape)} is too small for this EfficientNet encoder's static "
            f"'SAME' padding (fixed for image_size {self._conv_stem.image_size[0]}): it needs at least "
            f"{tuple(minimum)}; pad the input, or build the encoder with image_size=None to pad from each "
            "input"
        )

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        self._check_input_size(x.shape[2:])
        features = [x]
        x = self._swish(self._bn0(self._conv_stem(x)))
        features.append(x)
        wanted = set(self._out_indexes[: self._depth - 1])
        last = self._out_indexes[self._depth - 2]
        for index, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * index / len(self._blocks))
            if index in wanted:
                features.append(x)
            if index == last:
                break
        return features


_HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
_IMAGENET = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
# ImageNet weights expect ImageNet normalisation; AdvProp weights (Xie et al. 2020) expect [-1, 1] inputs.
_NORMALISATION = {"imagenet": _IMAGENET, "advprop": _HALF}

# name: (width, depth, nominal image size, SMP's feature blocks, SMP's out_channels, {tag: Hub revision})
_ARCHITECTURES = {
    "efficientnet-b0": (1.0, 1.0, 224, (2, 4, 8, 15), (3, 32, 24, 40, 112, 320), {
        "imagenet": "1bbe7ecc1d5ea1d2058de1a2db063b8701aff314",
        "advprop": "29043c08140d9c6ee7de1468d55923f2b06bcec2"}),
    "efficientnet-b1": (1.0, 1.1, 240, (4, 7, 15, 22), (3, 32, 24, 40, 112, 320), {
        "imagenet": "5d637466a5215de300a8ccb13a39357df2df2bf4",
        "advprop": "2e518b8b0955bbab467f50525578dab6b6086afc"}),
    "efficientnet-b2": (1.1, 1.2, 260, (4, 7, 15, 22), (3, 32, 24, 48, 120, 352), {
        "imagenet": "a96d4f0295ffbae18ebba173bf7f3c0c8f21990e",
        "advprop": "be788c20dfb0bbe83b4c439f9cfe0dd937c0783e"}),
    "efficientnet-b3": (1.2, 1.4, 300, (4, 7, 17, 25), (3, 40, 32, 48, 136, 384), {
        "imagenet": "074c54a6c473e0d294690d49cedb6cf463e7127d",
        "advprop": "9ccc166d87bd9c08d6bed4477638c7f4bb3eec78"}),
    "efficientnet-b4": (1.4, 1.8, 380, (5, 9, 21, 31), (3, 48, 32, 56, 160, 448), {
        "imagenet": "05cd5dde5dab658f00c463f9b9aa0ced76784f40",
        "advprop": "f04caa809ea4eb08ee9e7fd555f5514ebe2a9ef5"}),
    "efficientnet-b5": (1.6, 2.2, 456, (7, 12, 26, 38), (3, 48, 40, 64, 176, 512), {
        "imagenet": "69f4d28460a4e421b7860bc26ee7d832e03e01ca",
        "advprop": "dabe78fc8ab7ce93ddc2bb156b01db227caede88"}),
    "efficientnet-b6": (1.8, 2.6, 528, (8, 14, 30, 44), (3, 56, 40, 72, 200, 576), {
        "imagenet": "8570752016f7c62ae149cffa058550fe44e21c8b",
        "advprop": "c2dbb4d1359151165ec7b96cfe54a9cac2142a31"}),
    "efficientnet-b7": (2.0, 3.1, 600, (10, 17, 37, 54), (3, 64, 48, 80, 224, 640), {
        "imagenet": "5a5dbe687d612ebc3dca248274fd1191111deda6",
        "advprop": "ce33edb4e80c0cde268f098ae2299e23f615577d"}),
}

efficientnet_encoders = {
    name: {
        "encoder": EfficientNetEncoder,
        "params": {
            "out_channels": out_channels,
            "out_indexes": out_indexes,
            "width_coefficient": width,
            "depth_coefficient": depth,
            "image_size": image_size,
        },
        "pretrained_settings": {
            tag: {
                "repo_id": f"smp-hub/{name}.{tag}",
                "revision": revision,
                **_NORMALISATION[tag],
                "input_space": "RGB",
                "input_range": [0, 1],
            }
            for tag, revision in revisions.items()
        },
        "spatial_dims": (2, 3),
    }
    for name, (width, depth, image_size, out_indexes, out_channels, revisions) in _ARCHITECTURES.items()
}
