"""SENet, SE-ResNet and SE-ResNeXt encoders (Hu et al. 2018, Squeeze-and-Excitation Networks) as n-d modules.

Module names follow the layout of the original Caffe ports (``layer0.conv1``, ``layerN.M.se_module.fc1``,
...), which SMP keeps, so SMP checkpoints and the ``smp-hub/<name>.imagenet`` weights load without renaming.
In 3D, 2D weights are inflated by the registry (see ``inflate_state_dict``).
"""

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import as_conv_stride, normalize_stage_strides
from smp_like.encoders._normalization import IMAGENET_SETTINGS

Stride = Union[int, Tuple[int, ...]]


class SEModule(nn.Module):
    """Squeeze (global average pool) and excitation (bottleneck of two 1x1 convs, sigmoid) channel gate.

    Args:
        channels: channels of the gated feature map.
        reduction: bottleneck ratio of the excitation (16 in the paper).
        spatial_dims: 2 for images, 3 for volumes.
    """

    def __init__(self, channels: int, reduction: int, spatial_dims: int = 2):
        super().__init__()
        conv = nd.conv_type(spatial_dims)
        self.avg_pool = nd.adaptive_avgpool_type(spatial_dims)(1)
        self.fc1 = conv(channels, channels // reduction, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = conv(channels // reduction, channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class _SEBottleneckBase(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck whose output is gated by an SE module before the shortcut is added."""

    expansion = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.se_module(out) + shortcut
        return self.relu(out)

    def _build(
        self,
        inplanes: int,
        width1: int,
        width2: int,
        planes: int,
        groups: int,
        reduction: int,
        stride1: Stride,
        stride2: Stride,
        downsample: Optional[nn.Module],
        spatial_dims: int,
    ) -> None:
        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        self.conv1 = conv(inplanes, width1, kernel_size=1, stride=stride1, bias=False)
        self.bn1 = norm(width1)
        self.conv2 = conv(width1, width2, kernel_size=3, stride=stride2, padding=1, groups=groups, bias=False)
        self.bn2 = norm(width2)
        self.conv3 = conv(width2, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEModule(planes * self.expansion, reduction, spatial_dims)
        self.downsample = downsample


class SEBottleneck(_SEBottleneckBase):
    """SENet-154 bottleneck: widths 2x / 4x ``planes``, grouped strided 3x3 conv."""

    def __init__(
        self, inplanes, planes, groups, reduction, stride=1, downsample=None, base_width=64, spatial_dims=2
    ):
        super().__init__()
        self._build(
            inplanes, planes * 2, planes * 4, planes, groups, reduction, 1, stride, downsample, spatial_dims
        )


class SEResNetBottleneck(_SEBottleneckBase):
    """SE-ResNet bottleneck: the stride sits in the first 1x1 conv, as in the original Caffe models."""

    def __init__(
        self, inplanes, planes, groups, reduction, stride=1, downsample=None, base_width=64, spatial_dims=2
    ):
        super().__init__()
        self._build(inplanes, planes, planes, planes, groups, reduction, stride, 1, downsample, spatial_dims)


class SEResNeXtBottleneck(_SEBottleneckBase):
    """SE-ResNeXt bottleneck: grouped strided 3x3 conv, ``floor(planes * base_width / 64) * groups`` wide."""

    def __init__(
        self, inplanes, planes, groups, reduction, stride=1, downsample=None, base_width=4, spatial_dims=2
    ):
        super().__init__()
        width = (planes * base_width // 64) * groups
        self._build(inplanes, width, width, planes, groups, reduction, 1, stride, downsample, spatial_dims)


BLOCKS = {
    "se_bottleneck": SEBottleneck,
    "se_resnet_bottleneck": SEResNetBottleneck,
    "se_resnext_bottleneck": SEResNeXtBottleneck,
}


def _stem_pool_padding(stride: Tuple[int, ...]) -> Tuple[int, ...]:
    # The 3x3 max-pool is unpadded with ceil_mode, as in the Caffe models; an axis that is not down-sampled
    # (anisotropic strides) gets padding 1 so that it keeps its size.
    return tuple(1 if s == 1 else 0 for s in stride)


class SENetEncoder(nn.Module, EncoderMixin):
    """SENet feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    As in SMP, the stem max-pool has no padding and rounds up (``ceil_mode``), so for sizes that are not
    multiples of 32 the features from f/4 on are at most one pixel smaller than ``ceil(size / reduction)``.

    Args:
        out_channels: channels of the six possible features (input first).
        block: ``"se_bottleneck"`` (SENet-154), ``"se_resnet_bottleneck"`` or ``"se_resnext_bottleneck"``.
        layers: number of blocks in each of the four residual stages.
        groups: cardinality of the 3x3 convs.
        reduction: SE bottleneck ratio.
        inplanes: channels of the stem output.
        input_3x3: stem of three 3x3 convs (SENet-154) instead of one 7x7 conv.
        downsample_kernel_size: kernel of the projection shortcut in stages 2-4 (stage 1 always uses 1).
        downsample_padding: padding of that projection.
        base_width: bottleneck width per group (SE-ResNeXt).
        depth: number of down-sampling stages to run, 1..5.
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors (5 entries, each 1, 2 or one per axis), e.g.
            ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 1..5, an unknown block, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("last_linear.",)

    def __init__(
        self,
        out_channels: Sequence[int],
        block: str,
        layers: Sequence[int],
        groups: int,
        reduction: int = 16,
        inplanes: int = 128,
        input_3x3: bool = True,
        downsample_kernel_size: int = 3,
        downsample_padding: int = 1,
        base_width: int = 4,
        depth: int = 5,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a SENet encoder must be an int in 1..5, got {depth!r}"
            )
        if block not in BLOCKS:
            raise ValueError(f"`block` must be one of {tuple(BLOCKS)}, got {block!r}")
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        stage_strides = normalize_stage_strides(strides, spatial_dims)
        if strides is not None:
            self._stage_strides = stage_strides
        s1, s2, s3, s4, s5 = (as_conv_stride(s) for s in stage_strides)
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        if input_3x3:
            stem = [
                ("conv1", conv(3, 64, 3, stride=s1, padding=1, bias=False)),
                ("bn1", norm(64)),
                ("relu1", nn.ReLU(inplace=True)),
                ("conv2", conv(64, 64, 3, stride=1, padding=1, bias=False)),
                ("bn2", norm(64)),
                ("relu2", nn.ReLU(inplace=True)),
                ("conv3", conv(64, inplanes, 3, stride=1, padding=1, bias=False)),
                ("bn3", norm(inplanes)),
                ("relu3", nn.ReLU(inplace=True)),
            ]
        else:
            stem = [
                ("conv1", conv(3, inplanes, 7, stride=s1, padding=3, bias=False)),
                ("bn1", norm(inplanes)),
                ("relu1", nn.ReLU(inplace=True)),
            ]
        self.layer0 = nn.Sequential(OrderedDict(stem))
        # Kept outside layer0 so that the stride-2 feature is taken before pooling.
        self.maxpool = nd.maxpool_type(spatial_dims)(
            kernel_size=3,
            stride=s2,
            padding=as_conv_stride(_stem_pool_padding(stage_strides[1])),
            ceil_mode=True,
        )

        self.inplanes = inplanes
        block_type = BLOCKS[block]
        common = dict(groups=groups, reduction=reduction, base_width=base_width, spatial_dims=spatial_dims)
        # All four stages are built whatever the depth, as SMP does, so checkpoints of any depth share keys.
        self.layer1 = self._make_layer(block_type, 64, layers[0], 1, 1, 0, **common)
        shortcut = dict(downsample_kernel_size=downsample_kernel_size, downsample_padding=downsample_padding)
        self.layer2 = self._make_layer(block_type, 128, layers[1], s3, **shortcut, **common)
        self.layer3 = self._make_layer(block_type, 256, layers[2], s4, **shortcut, **common)
        self.layer4 = self._make_layer(block_type, 512, layers[3], s5, **shortcut, **common)

    def _make_layer(
        self,
        block: type,
        planes: int,
        blocks: int,
        stride: Stride,
        downsample_kernel_size: int,
        downsample_padding: int,
        spatial_dims: int,
        **block_kwargs,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nd.conv_type(spatial_dims)(
                    self.inplanes,
                    planes * block.expansion,
                    kernel_size=downsample_kernel_size,
                    stride=stride,
                    padding=downsample_padding,
                    bias=False,
                ),
                nd.batchnorm_type(spatial_dims)(planes * block.expansion),
            )
        modules = [
            block(
                self.inplanes,
                planes,
                stride=stride,
                downsample=downsample,
                spatial_dims=spatial_dims,
                **block_kwargs,
            )
        ]
        self.inplanes = planes * block.expansion
        modules += [
            block(self.inplanes, planes, spatial_dims=spatial_dims, **block_kwargs) for _ in range(1, blocks)
        ]
        return nn.Sequential(*modules)

    def get_stages(self) -> Dict[int, nn.Module]:
        return {
            1: self.layer0,
            2: nn.Sequential(self.maxpool, self.layer1),
            3: self.layer2,
            4: self.layer3,
            5: self.layer4,
        }

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        if self._depth >= 1:
            x = self.layer0(x)
            features.append(x)
        if self._depth >= 2:
            x = self.layer1(self.maxpool(x))
            features.append(x)
        for layer in (self.layer2, self.layer3, self.layer4)[: max(self._depth - 2, 0)]:
            x = layer(x)
            features.append(x)
        return features


# Hub repositories and pinned revisions of the weights SMP publishes; all trained with ImageNet normalisation.
_IMAGENET = IMAGENET_SETTINGS
_REVISIONS = {
    "senet154": "249f45efc9881ba560a0c480128edbc34ab87e40",
    "se_resnet50": "e6b4bc2dc85226c3d3474544410724a485455459",
    "se_resnet101": "71fe95cc0a27f444cf83671f354de02dc741b18b",
    "se_resnet152": "e79fc3d9d76f197bd76a2593c2054edf1083fe32",
    "se_resnext50_32x4d": "73246406d879a2b0e3fdfe6fddd56347d38f38ae",
    "se_resnext101_32x4d": "18808a4276f46421d358a9de554e0b93c2795df4",
}

_RESNET_LIKE = dict(
    out_channels=(3, 64, 256, 512, 1024, 2048),
    reduction=16,
    inplanes=64,
    input_3x3=False,
    downsample_kernel_size=1,
    downsample_padding=0,
)

_ARCHITECTURES = {
    "senet154": dict(
        out_channels=(3, 128, 256, 512, 1024, 2048),
        block="se_bottleneck",
        layers=(3, 8, 36, 3),
        groups=64,
        reduction=16,
        inplanes=128,
        input_3x3=True,
        downsample_kernel_size=3,
        downsample_padding=1,
    ),
    "se_resnet50": dict(block="se_resnet_bottleneck", layers=(3, 4, 6, 3), groups=1, **_RESNET_LIKE),
    "se_resnet101": dict(block="se_resnet_bottleneck", layers=(3, 4, 23, 3), groups=1, **_RESNET_LIKE),
    "se_resnet152": dict(block="se_resnet_bottleneck", layers=(3, 8, 36, 3), groups=1, **_RESNET_LIKE),
    "se_resnext50_32x4d": dict(
        block="se_resnext_bottleneck", layers=(3, 4, 6, 3), groups=32, base_width=4, **_RESNET_LIKE
    ),
    "se_resnext101_32x4d": dict(
        block="se_resnext_bottleneck", layers=(3, 4, 23, 3), groups=32, base_width=4, **_RESNET_LIKE
    ),
}

senet_encoders = {
    name: {
        "encoder": SENetEncoder,
        "params": params,
        "pretrained_settings": {
            "imagenet": {"repo_id": f"smp-hub/{name}.imagenet", "revision": _REVISIONS[name], **_IMAGENET}
        },
        "spatial_dims": (2, 3),
    }
    for name, params in _ARCHITECTURES.items()
}
