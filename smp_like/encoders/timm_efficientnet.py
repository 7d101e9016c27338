"""EfficientNet, EfficientNet-L2 and EfficientNet-Lite encoders as n-d modules in timm's EfficientNet layout.

Tan & Le 2019 (EfficientNet B0-B7); Xie et al. 2020 (AdvProp weights; Noisy Student, which adds B8 and L2);
the Lite variants (TensorFlow's EfficientNet-Lite, 2020: ReLU6, no squeeze-and-excitation, fixed stem/head).

SMP builds these names on timm's ``EfficientNet`` class with PyTorch-style symmetric padding (``k // 2``); we
write the same network ourselves so it runs in 3D too. Module names are timm's (``conv_stem``, ``bn1``,
``blocks.<stage>.<block>.conv_dw``, ``se.conv_reduce`` ..., ``conv_head``, ``bn2``), so SMP checkpoints and
the ``smp-hub/timm-efficientnet-*`` weights load without renaming. The activations that timm fuses into its
norm layers are separate, parameter-free modules here; the state dict is unchanged by that.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.modules import DropPath
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

# Which of the seven block stages make up encoder stages 2..5 (stage 1 is the stem).
_STAGE_BLOCKS = {2: (0, 1), 3: (2,), 4: (3, 4), 5: (5, 6)}


class Swish(nn.Module):
    """Swish, ``x * sigmoid(x)`` (Ramachandran et al. 2017), written out as timm computes it.

    ``nn.SiLU``'s fused kernel rounds differently; a deep random network (L2 has 88 blocks) amplifies that
    last-bit difference into visibly different features, so we keep timm's arithmetic.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(x.sigmoid())


def _activation(lite: bool) -> nn.Module:
    return nn.ReLU6(inplace=True) if lite else Swish()


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (Hu et al. 2018, "Squeeze-and-Excitation Networks").

    Args:
        channels: channels gated.
        squeeze_channels: width of the bottleneck.
        spatial_dims: 2 or 3.
    """

    def __init__(self, channels: int, squeeze_channels: int, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        self.conv_reduce = conv(channels, squeeze_channels, 1)
        self.act1 = Swish()
        self.conv_expand = conv(squeeze_channels, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(squeezed))))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise kxk -> (SE) -> pointwise 1x1, the expansion-1 block of the first stage (Howard et al. 2017).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride (int or one per axis).
        se_ratio: squeeze width relative to ``in_channels`` (0 for no SE).
        lite: ReLU6 instead of Swish.
        drop_path_rate: stochastic-depth rate of the residual branch.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: Union[int, Tuple[int, ...]],
        se_ratio: float,
        lite: bool,
        drop_path_rate: float = 0.0,
        spatial_dims: int = 2,
    ):
        super().__init__()
        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        self.conv_dw = conv(in_channels, in_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                            groups=in_channels, bias=False)
        self.bn1 = norm(in_channels)
        self.act = _activation(lite)
        self.se = (
            SqueezeExcite(in_channels, round(in_channels * se_ratio), spatial_dims)
            if se_ratio
            else nn.Identity()
        )
        self.conv_pw = conv(in_channels, out_channels, 1, bias=False)
        self.bn2 = norm(out_channels)
        self.has_shortcut = in_channels == out_channels and set(as_axes(stride, spatial_dims)) == {1}
        self.drop_path = DropPath(drop_path_rate) if self.has_shortcut and drop_path_rate else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.se(self.act(self.bn1(self.conv_dw(x))))
        x = self.bn2(self.conv_pw(x))
        return self.drop_path(x) + shortcut if self.has_shortcut else x


class InvertedResidual(nn.Module):
    """Inverted bottleneck, MBConv (Sandler et al. 2018): 1x1 expand -> kxk depthwise -> (SE) -> 1x1 project.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride (int or one per axis).
        expand_ratio: width of the expanded representation relative to ``in_channels``.
        se_ratio: squeeze width relative to ``in_channels`` (0 for no SE).
        lite: ReLU6 instead of Swish.
        drop_path_rate: stochastic-depth rate of the residual branch.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: Union[int, Tuple[int, ...]],
        expand_ratio: int,
        se_ratio: float,
        lite: bool,
        drop_path_rate: float = 0.0,
        spatial_dims: int = 2,
    ):
        super().__init__()
        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        mid_channels = round_channels(in_channels * expand_ratio)
        self.conv_pw = conv(in_channels, mid_channels, 1, bias=False)
        self.bn1 = norm(mid_channels)
        self.act = _activation(lite)
        self.conv_dw = conv(mid_channels, mid_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                            groups=mid_channels, bias=False)
        self.bn2 = norm(mid_channels)
        self.se = (
            SqueezeExcite(mid_channels, round(in_channels * se_ratio), spatial_dims)
            if se_ratio
            else nn.Identity()
        )
        self.conv_pwl = conv(mid_channels, out_channels, 1, bias=False)
        self.bn3 = norm(out_channels)
        self.has_shortcut = in_channels == out_channels and set(as_axes(stride, spatial_dims)) == {1}
        self.drop_path = DropPath(drop_path_rate) if self.has_shortcut and drop_path_rate else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act(self.bn1(self.conv_pw(x)))
        x = self.se(self.act(self.bn2(self.conv_dw(x))))
        x = self.bn3(self.conv_pwl(x))
        return self.drop_path(x) + shortcut if self.has_shortcut else x


class TimmEfficientNetEncoder(nn.Module, EncoderMixin):
    """timm-layout EfficientNet feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Features 2..5 are the outputs of block stages 2, 3, 5 and 7 of the B0 table (Tan & Le 2019, Table 1).

    Args:
        out_channels: channels of the six possible features (input first).
        channel_multiplier: width multiplier of the compound scaling.
        depth_multiplier: repeat multiplier of the compound scaling.
        lite: EfficientNet-Lite: ReLU6, no squeeze-and-excitation, stem/head widths and the repeats of the
            first and last stages not scaled.
        drop_path_rate: stochastic-depth rate of the last block (block ``i`` of ``n`` uses ``rate * i / n``).
        depth: number of down-sampling stages to return, 1..5.
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors (5 entries, each 1, 2 or one per axis), e.g.
            ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 1..5, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("classifier.",)

    def __init__(
        self,
        out_channels: Sequence[int],
        channel_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        lite: bool = False,
        drop_path_rate: float = 0.2,
        depth: int = 5,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
    ):
        super().__init__()
        check_depth(depth, "EfficientNet-Lite" if lite else "EfficientNet")
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        if strides is not None:
            self._stage_strides = normalize_stage_strides(strides, spatial_dims)
        stem_stride, stage_strides = mbconv_strides(strides, spatial_dims)
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        stem_channels = B0_STEM_CHANNELS if lite else round_channels(B0_STEM_CHANNELS, channel_multiplier)
        self.conv_stem = conv(3, stem_channels, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = norm(stem_channels)
        self.act = _activation(lite)

        se_ratio = 0.0 if lite else 0.25
        last = len(B0_STAGES) - 1
        repeats = [
            args.repeats if lite and index in (0, last) else round_repeats(args.repeats, depth_multiplier)
            for index, args in enumerate(B0_STAGES)
        ]
        total_blocks, block_index = sum(repeats), 0
        stages: List[nn.Sequential] = []
        in_channels = stem_channels
        for index, (args, stride, count) in enumerate(zip(B0_STAGES, stage_strides, repeats)):
            channels = round_channels(args.out_channels, channel_multiplier)
            blocks: List[nn.Module] = []
            for repeat in range(count):
                common = dict(
                    kernel_size=args.kernel_size,
                    stride=stride if repeat == 0 else 1,
                    se_ratio=se_ratio,
                    lite=lite,
                    drop_path_rate=drop_path_rate * block_index / total_blocks,
                    spatial_dims=spatial_dims,
                )
                if index == 0:
                    blocks.append(DepthwiseSeparableConv(in_channels, channels, **common))
                else:
                    blocks.append(
                        InvertedResidual(in_channels, channels, expand_ratio=args.expand_ratio, **common)
                    )
                in_channels = channels
                block_index += 1
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)

        # The classification head's conv + norm are unused by the encoder but kept, as SMP does, so
        # checkpoints load with strict=True both ways.
        head_channels = B0_HEAD_CHANNELS if lite else round_channels(B0_HEAD_CHANNELS, channel_multiplier)
        self.conv_head = conv(in_channels, head_channels, 1, bias=False)
        self.bn2 = norm(head_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        # Fan-out normal init of the TensorFlow reference (Tan & Le 2019); depthwise fan-out per group.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                fan_out = m.weight[0, 0].numel() * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_stages(self) -> Dict[int, Union[nn.Module, Sequence[nn.Module]]]:
        stages: Dict[int, Union[nn.Module, Sequence[nn.Module]]] = {1: [self.conv_stem, self.bn1, self.act]}
        stages.update({stage: [self.blocks[i] for i in indexes] for stage, indexes in _STAGE_BLOCKS.items()})
        return stages

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        x = self.act(self.bn1(self.conv_stem(x)))
        features.append(x)
        for stage in range(2, self._depth + 1):
            for index in _STAGE_BLOCKS[stage]:
                x = self.blocks[index](x)
            features.append(x)
        return features


_IMAGENET = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
_HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

# name: (channel multiplier, depth multiplier, SMP's out_channels, {tag: pinned Hub revision}).
_EFFICIENTNETS = {
    "timm-efficientnet-b0": (1.0, 1.0, (3, 32, 24, 40, 112, 320), {
        "imagenet": "8419e9cc19da0b68dcd7bb12f19b7c92407ad7c4",
        "advprop": "a5870af2d24ce79e0cc7fae2bbd8e0a21fcfa6d8",
        "noisy-student": "bea8b0ff726a50e48774d2d360c5fb1ac4815836"}),
    "timm-efficientnet-b1": (1.0, 1.1, (3, 32, 24, 40, 112, 320), {
        "imagenet": "63bdd65ef6596ef24f1cadc7dd4f46b624442349",
        "advprop": "79b3d102080ef679b16c2748e608a871112233d0",
        "noisy-student": "36856124a699f6032574ceeefab02040daa90a9a"}),
    "timm-efficientnet-b2": (1.1, 1.2, (3, 32, 24, 48, 120, 352), {
        "imagenet": "e693adb39d3cb3847e71e3700a0c2aa58072cff1",
        "advprop": "b58479bf78007cfbb365091d64eeee369bddfa21",
        "noisy-student": "67c558827c6d3e0975ff9b4bce8557bc2ca80931"}),
    "timm-efficientnet-b3": (1.2, 1.4, (3, 40, 32, 48, 136, 384), {
        "imagenet": "1666b835b5151d6bb2067c7cd67e67ada6c39edf",
        "advprop": "70474cdb9f1ff4fcbd7434e66560ead1ab8e506b",
        "noisy-student": "2367bc9f61e79ee97684169a71a87db280bcf4db"}),
    "timm-efficientnet-b4": (1.4, 1.8, (3, 48, 32, 56, 160, 448), {
        "imagenet": "07868c28ab308f4de4cf1e7ec54b33b8b002ccdb",
        "advprop": "8ea1772ee9a2a0d18c1b56dce0dfac8dd33d537d",
        "noisy-student": "faeb77b6e8292a700380c840d39442d7ce4d6443"}),
    "timm-efficientnet-b5": (1.6, 2.2, (3, 48, 40, 64, 176, 512), {
        "imagenet": "004153b4ddd93d30afd9bbf34329d7f57396d413",
        "advprop": "1d1c5f05aab5ed9a1d5052847ddd4024c06a464d",
        "noisy-student": "9bc3a1e5490de92b1af061d5c2c474ab3129e38c"}),
    "timm-efficientnet-b6": (1.8, 2.6, (3, 56, 40, 72, 200, 576), {
        "imagenet": "dbbf28a5c33f021486db4070de693caad6b56c3d",
        "advprop": "3b5d3412047f7711c56ffde997911cfefe79f835",
        "noisy-student": "9b899ea9e8e0ce2ccada0f34a8cb8b5028e9bb36"}),
    "timm-efficientnet-b7": (2.0, 3.1, (3, 64, 48, 80, 224, 640), {
        "imagenet": "8ef7ffccf54dad9baceb21d05b7ef86b6b70f4cc",
        "advprop": "fcbc576ffb939c12d5cd8dad523fdae6eb0177ca",
        "noisy-student": "6b1dd73e61bf934d485d7bd4381dc3e2ab374664"}),
    "timm-efficientnet-b8": (2.2, 3.6, (3, 72, 56, 88, 248, 704), {
        "imagenet": "b5e9dde35605a3a6d17ea2a727382625f9066a37",
        "advprop": "e43f381de72e7467383c2c80bacbb7fcb9572866"}),
    "timm-efficientnet-l2": (4.3, 5.3, (3, 136, 104, 176, 480, 1376), {
        "noisy-student": "cdc711e76d1becdd9197169f1a8bb1b2094e980c",
        "noisy-student-475": "35f5ba667a64bf4f3f0689daf84fc6d0f8e1311b"}),
}

_LITES = {
    "timm-tf_efficientnet_lite0": (1.0, 1.0, (3, 32, 24, 40, 112, 320),
        "f5729249af07e5d923fb8b16922256ce2865d108"),
    "timm-tf_efficientnet_lite1": (1.0, 1.1, (3, 32, 24, 40, 112, 320),
        "7b5e3f8dbb0c13b74101773584bba7523721be72"),
    "timm-tf_efficientnet_lite2": (1.1, 1.2, (3, 32, 24, 48, 120, 352),
        "cc5f6cd4c7409ebacc13292f09d369ae88547f6a"),
    "timm-tf_efficientnet_lite3": (1.2, 1.4, (3, 32, 32, 48, 136, 384),
        "ab29c8402991591d66f813bbb1f061565d9b0cd0"),
    "timm-tf_efficientnet_lite4": (1.4, 1.8, (3, 32, 32, 56, 160, 448),
        "91a822e0f03c255b34dfb7846d3858397e50ba39"),
}


def _setting(name: str, tag: str, revision: str, normalisation: Dict[str, List[float]]) -> Dict[str, object]:
    return {
        "repo_id": f"smp-hub/{name}.{tag}",
        "revision": revision,
        **normalisation,
        "input_space": "RGB",
        "input_range": [0, 1],
    }


timm_efficientnet_encoders: Dict[str, Dict[str, object]] = {}
for _name, (_width, _depth, _channels, _revisions) in _EFFICIENTNETS.items():
    timm_efficientnet_encoders[_name] = {
        "encoder": TimmEfficientNetEncoder,
        "params": {"out_channels": _channels, "channel_multiplier": _width, "depth_multiplier": _depth},
        # AdvProp weights (Xie et al. 2020) expect [-1, 1] inputs; the others ImageNet statistics.
        "pretrained_settings": {
            tag: _setting(_name, tag, revision, _HALF if tag == "advprop" else _IMAGENET)
            for tag, revision in _revisions.items()
        },
        "spatial_dims": (2, 3),
    }
for _name, (_width, _depth, _channels, _revision) in _LITES.items():
    timm_efficientnet_encoders[_name] = {
        "encoder": TimmEfficientNetEncoder,
        "params": {
            "out_channels": _channels,
            "channel_multiplier": _width,
            "depth_multiplier": _depth,
            "lite": True,
        },
        # The TensorFlow Lite checkpoints expect [-1, 1] inputs.
        "pretrained_settings": {"imagenet": _setting(_name, "imagenet", _revision, _HALF)},
        "spatial_dims": (2, 3),
    }
