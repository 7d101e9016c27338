"""ResNet and ResNeXt encoders (He et al. 2016; Xie et al. 2017) as n-d modules.

Module names follow the torchvision layout (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layerN.0.downsample.0`` ...),
so SMP checkpoints and the ``smp-hub/<name>.<tag>`` weights load without renaming.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import as_conv_stride, normalize_stage_strides
from smp_like.encoders._normalization import IMAGENET_SETTINGS


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or projected) shortcut."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        base_width: int = 64,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64")
        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        self.conv1 = conv(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One layer per statement: rebinding `out` frees each input as soon as the next layer has run (nested calls
        # hold it to the end of the statement: +1 activation at the eval peak of a resnet34 PAN, 18.0 vs 16.8 MiB
        # at 2x256x256, benchmarks/vs_smp.py). The shortcut is computed last for the same reason.
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out += x if self.downsample is None else self.downsample(x)  # in place (autograd allows it after BN)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (grouped, strided: "ResNet v1.5") -> 1x1 with expansion 4."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        base_width: int = 64,
        spatial_dims: int = 2,
    ):
        super().__init__()
        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv(inplanes, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = conv(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = norm(width)
        self.conv3 = conv(width, planes * self.expansion, 1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One layer per statement, shortcut last: see BasicBlock.forward.
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNetEncoder(nn.Module, EncoderMixin):
    """ResNet/ResNeXt feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Args:
        out_channels: channels of the six possible features (input first).
        block: ``"basic"`` or ``"bottleneck"``.
        layers: number of blocks in each of the four residual stages.
        depth: number of down-sampling stages to run, 1..5.
        groups: cardinality (ResNeXt).
        width_per_group: bottleneck width per group (ResNeXt).
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors (5 entries, each 1, 2 or one per axis), e.g.
            ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 1..5, an unknown block, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("fc.",)

    def __init__(
        self,
        out_channels: Sequence[int],
        block: str,
        layers: Sequence[int],
        depth: int = 5,
        groups: int = 1,
        width_per_group: int = 64,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(f"`depth` (encoder_depth) of a ResNet encoder must be an int in 1..5, got {depth!r}")
        if block not in BLOCKS:
            raise ValueError(f"`block` must be one of {tuple(BLOCKS)}, got {block!r}")
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        if strides is not None:
            self._stage_strides = normalize_stage_strides(strides, spatial_dims)
        s1, s2, s3, s4, s5 = (as_conv_stride(s) for s in normalize_stage_strides(strides, spatial_dims))
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3
        block_type = BLOCKS[block]
        self._block_kwargs = dict(groups=groups, base_width=width_per_group, spatial_dims=spatial_dims)

        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        self.inplanes = 64
        self.conv1 = conv(3, 64, kernel_size=7, stride=s1, padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nd.maxpool_type(spatial_dims)(kernel_size=3, stride=s2, padding=1)
        # All four stages are built whatever the depth, as SMP does, so checkpoints of any depth share keys.
        self.layer1 = self._make_layer(block_type, 64, layers[0])
        self.layer2 = self._make_layer(block_type, 128, layers[1], stride=s3)
        self.layer3 = self._make_layer(block_type, 256, layers[2], stride=s4)
        self.layer4 = self._make_layer(block_type, 512, layers[3], stride=s5)
        self._init_weights()

    def _make_layer(self, block: type, planes: int, blocks: int, stride: Union[int, Tuple[int, ...]] = 1) -> nn.Sequential:
        spatial_dims = self._block_kwargs["spatial_dims"]
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nd.conv_type(spatial_dims)(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nd.batchnorm_type(spatial_dims)(planes * block.expansion),
            )
        modules = [block(self.inplanes, planes, stride, downsample, **self._block_kwargs)]
        self.inplanes = planes * block.expansion
        modules += [block(self.inplanes, planes, **self._block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_stages(self) -> Dict[int, nn.Module]:
        return {
            1: nn.Sequential(self.conv1, self.bn1, self.relu),
            2: nn.Sequential(self.maxpool, self.layer1),
            3: self.layer2,
            4: self.layer3,
            5: self.layer4,
        }

    # Gradient checkpointing recomputes these one by one (see base/checkpointing.py). The stem and the max-pool
    # are segments too, so that neither the stem's conv output nor the pool's indices are kept until backward.
    checkpoint_segments = ("_stem", "_pool_layer1", "layer2", "layer3", "layer4")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def _pool_layer1(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(x))

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        if self._depth >= 1:
            x = self._stem(x)
            features.append(x)
        if self._depth >= 2:
            x = self._pool_layer1(x)
            features.append(x)
        # Spelled out (not a loop over a slice of stages) so that TorchScript compiles it.
        if self._depth >= 3:
            x = self.layer2(x)
            features.append(x)
        if self._depth >= 4:
            x = self.layer3(x)
            features.append(x)
        if self._depth >= 5:
            x = self.layer4(x)
            features.append(x)
        return features


_IMAGENET = IMAGENET_SETTINGS

# Hub repositories and pinned revisions of the weights SMP publishes (smp-hub/<name>.<tag>); every tag was trained
# with ImageNet normalisation.
_REVISIONS = {
    "resnet18": {
        "imagenet": "3f2325ff978283d47aa6a1d6878ca20565622683",
        "ssl": "d600d5116aac2e6e595f99f40612074c723c00b2",
        "swsl": "0e3a35d4d8e344088c14a96eee502a88ac70eae1",
    },
    "resnet34": {"imagenet": "7a57b34f723329ff020b3f8bc41771163c519d0c"},
    "resnet50": {
        "imagenet": "00cb74e366966d59cd9a35af57e618af9f88efe9",
        "ssl": "d07daf5b4377f3700c6ac61906b0aafbc4eca46b",
        "swsl": "b9520cce124f91c6fe7eee45721a2c7954f0d8c0",
    },
    "resnet101": {"imagenet": "cd7c15e8c51da86ae6a084515fdb962d0c94e7d1"},
    "resnet152": {"imagenet": "951dd835e9d086628e447b484584c8983f9e1dd0"},
    "resnext50_32x4d": {
        "imagenet": "329793c85d62fd340ae42ae39fb905a63df872e7",
        "ssl": "9b67cff77d060c7044493a58c24d1007c1eb06c3",
        "swsl": "52e6e49da61b8e26ca691e1aef2cbb952884057d",
    },
    "resnext101_32x4d": {
        "ssl": "b39796c8459084d13523b7016c3ef13a2e9e472b",
        "swsl": "3f8355b4892a31f001a832b49b2b01484d48516a",
    },
    "resnext101_32x8d": {
        "imagenet": "221af6198d03a4ee88992f78a1ee81b46a52d339",
        "instagram": "44cd927aa6e64673ffe9d31230bad44abc18b823",
        "ssl": "723a95ddeed335c9488c37c6cbef13d779ac8f97",
        "swsl": "58cf0bb65f91365470398080d9588b187d1777c4",
    },
    "resnext101_32x16d": {
        "instagram": "64e8e320eeae6501185b0627b2429a68e52d050c",
        "ssl": "1283fe03fbb6aa2599b2df24095255acb93c3d5c",
        "swsl": "30ba61bbd4d6af0d955c513dbb4f557b84eb094f",
    },
    "resnext101_32x32d": {"instagram": "c9405de121fdaa275a89de470fb19409e3eeaa86"},
    "resnext101_32x48d": {"instagram": "53e61a962b824ad7027409821f9ac3e3336dd024"},
}

_BASIC_CHANNELS = (3, 64, 64, 128, 256, 512)
_BOTTLENECK_CHANNELS = (3, 64, 256, 512, 1024, 2048)

_ARCHITECTURES = {
    "resnet18": dict(out_channels=_BASIC_CHANNELS, block="basic", layers=(2, 2, 2, 2)),
    "resnet34": dict(out_channels=_BASIC_CHANNELS, block="basic", layers=(3, 4, 6, 3)),
    "resnet50": dict(out_channels=_BOTTLENECK_CHANNELS, block="bottleneck", layers=(3, 4, 6, 3)),
    "resnet101": dict(out_channels=_BOTTLENECK_CHANNELS, block="bottleneck", layers=(3, 4, 23, 3)),
    "resnet152": dict(out_channels=_BOTTLENECK_CHANNELS, block="bottleneck", layers=(3, 8, 36, 3)),
}
for _width in (4, 8, 16, 32, 48):
    _ARCHITECTURES[f"resnext101_32x{_width}d"] = dict(
        out_channels=_BOTTLENECK_CHANNELS, block="bottleneck", layers=(3, 4, 23, 3), groups=32, width_per_group=_width
    )
_ARCHITECTURES["resnext50_32x4d"] = dict(
    out_channels=_BOTTLENECK_CHANNELS, block="bottleneck", layers=(3, 4, 6, 3), groups=32, width_per_group=4
)

resnet_encoders = {
    name: {
        "encoder": ResNetEncoder,
        "params": params,
        "pretrained_settings": {
            tag: {"repo_id": f"smp-hub/{name}.{tag}", "revision": revision, **_IMAGENET}
            for tag, revision in _REVISIONS[name].items()
        },
        "spatial_dims": (2, 3),
    }
    for name, params in _ARCHITECTURES.items()
}
