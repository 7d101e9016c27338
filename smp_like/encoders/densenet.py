"""DenseNet encoders (Huang et al. 2017, "Densely Connected Convolutional Networks") as n-d modules.

Module names follow the torchvision layout (``features.conv0``, ``features.denseblockN.denselayerM.norm1``,
``features.transitionN.conv``, ``features.norm5`` ...), so SMP checkpoints and the ``smp-hub/<name>.imagenet``
weights load without renaming. As in SMP, the skip features of stages 2-4 are taken inside the transitions,
after their batch norm and ReLU (before the 1x1 conv and the pooling), and the last feature is ``norm5``'s
output.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import as_conv_stride, normalize_stage_strides
from smp_like.encoders._normalization import IMAGENET_SETTINGS


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3) producing ``growth_rate`` new channels from all previous ones."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, spatial_dims: int = 2):
        super().__init__()
        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        self.norm1 = norm(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv(in_channels, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = norm(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, previous: List[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(previous, dim=1)  # a fresh tensor, so the in-place ReLU leaves the inputs untouched
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed the concatenation of the block input and all earlier outputs."""

    def __init__(
        self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int, spatial_dims: int = 2
    ):
        super().__init__()
        for i in range(num_layers):
            width = in_channels + i * growth_rate
            self[f"denselayer{i + 1}"] = DenseLayer(width, growth_rate, bn_size, spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv(1x1)-AvgPool between dense blocks; halves the channels and down-samples by ``stride``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: Union[int, Tuple[int, ...]] = 2,
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.norm = nd.batchnorm_type(spatial_dims)(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nd.conv_type(spatial_dims)(in_channels, out_channels, kernel_size=1, bias=False)
        # kernel = stride: a factor-1 axis is left untouched by the pool.
        self.pool = nd.avgpool_type(spatial_dims)(kernel_size=stride, stride=stride)

    def forward_with_skip(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(skip, output)``: the normalised activation SMP exposes as a feature, and the output."""
        skip = self.relu(self.norm(x))
        return skip, self.pool(self.conv(skip))


class DenseNetEncoder(nn.Module, EncoderMixin):
    """DenseNet feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Args:
        out_channels: channels of the six possible features (input first).
        num_init_features: channels of the stem convolution.
        growth_rate: channels each dense layer adds (k in the paper).
        block_config: number of dense layers in each of the four blocks.
        bn_size: bottleneck width factor of the 1x1 convs (4 in the paper).
        depth: number of down-sampling stages to run, 1..5.
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors (5 entries, each 1, 2 or one per axis), e.g.
            ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 1..5, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("classifier.",)

    _dilation_refusal = (
        "DenseNet encoders",
        "they down-sample with pooling in the transitions, which cannot be replaced by dilation",
    )

    def __init__(
        self,
        out_channels: Sequence[int],
        num_init_features: int = 64,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        bn_size: int = 4,
        depth: int = 5,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a DenseNet encoder must be an int in 1..5, got {depth!r}"
            )
        if len(block_config) != 4:
            raise ValueError(
                f"`block_config` of a DenseNet encoder must have 4 entries, got {block_config!r}"
            )
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        if strides is not None:
            self._stage_strides = normalize_stage_strides(strides, spatial_dims)
        s1, s2, s3, s4, s5 = (as_conv_stride(s) for s in normalize_stage_strides(strides, spatial_dims))
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        features = nn.Sequential()
        stem_conv = conv(3, num_init_features, kernel_size=7, stride=s1, padding=3, bias=False)
        features.add_module("conv0", stem_conv)
        features.add_module("norm0", norm(num_init_features))
        features.add_module("relu0", nn.ReLU(inplace=True))
        features.add_module("pool0", nd.maxpool_type(spatial_dims)(kernel_size=3, stride=s2, padding=1))
        channels = num_init_features
        for i, (num_layers, stride) in enumerate(zip(block_config, (s3, s4, s5, None)), start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, spatial_dims=spatial_dims)
            features.add_module(f"denseblock{i}", block)
            channels += num_layers * growth_rate
            if stride is not None:
                transition = Transition(channels, channels // 2, stride=stride, spatial_dims=spatial_dims)
                features.add_module(f"transition{i}", transition)
                channels //= 2
        features.add_module("norm5", norm(channels))
        self.features = features
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


    def _check_input_size(self, x: torch.Tensor) -> None:
        # The stem (conv + max-pool) rounds sizes up, the transitions' average pools round them down: an axis
        # of size n keeps a non-empty last feature iff ceil(n / r2) >= rd / r2, i.e. n >= rd - r2 + 1, where
        # r2 and rd are the reductions after the stem and at the deepest stage.
        sizes = tuple(x.shape[2:])

        def per_axis(r: Union[int, Tuple[int, ...]]) -> Tuple[int, ...]:
            return (r,) * len(sizes) if isinstance(r, int) else tuple(r)

        stem = per_axis(self.reductions[min(2, self._depth)])
        deepest = per_axis(self.reductions[self._depth])
        minimum = tuple(d - s + 1 for d, s in zip(deepest, stem))
        if len(sizes) != self.spatial_dims or any(n < m for n, m in zip(sizes, minimum)):
            raise ValueError(
                f"input of spatial size {sizes} is too small for a depth-{self._depth} DenseNet encoder: "
                f"each axis needs at least {minimum} (its average pools round sizes down); pad the input"
            )

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        self._check_input_size(x)
        f = self.features
        features = [x]
        if self._depth >= 1:
            x = f.relu0(f.norm0(f.conv0(x)))
            features.append(x)
        x = f.pool0(x) if self._depth >= 2 else x
        for stage in range(2, min(self._depth, 4) + 1):
            x = f.get_submodule(f"denseblock{stage - 1}")(x)
            skip, x = f.get_submodule(f"transition{stage - 1}").forward_with_skip(x)
            features.append(skip)
        if self._depth >= 5:
            features.append(f.norm5(f.denseblock4(x)))
        return features


_IMAGENET = IMAGENET_SETTINGS

# Hub repositories and pinned revisions of the weights SMP publishes (smp-hub/<name>.imagenet).
_REVISIONS = {
    "densenet121": "a17c96896a265b61338f66f61d3887b24f61995a",
    "densenet169": "8facfba9fc72f7750879dac9ac6ceb3ab990de8d",
    "densenet201": "ed5deb355d71659391d46fae5e7587460fbb5f84",
    "densenet161": "9afe0fec51ab2a627141769d97d6f83756d78446",
}

_ARCHITECTURES = {
    "densenet121": dict(
        out_channels=(3, 64, 256, 512, 1024, 1024),
        num_init_features=64,
        growth_rate=32,
        block_config=(6, 12, 24, 16),
    ),
    "densenet169": dict(
        out_channels=(3, 64, 256, 512, 1280, 1664),
        num_init_features=64,
        growth_rate=32,
        block_config=(6, 12, 32, 32),
    ),
    "densenet201": dict(
        out_channels=(3, 64, 256, 512, 1792, 1920),
        num_init_features=64,
        growth_rate=32,
        block_config=(6, 12, 48, 32),
    ),
    "densenet161": dict(
        out_channels=(3, 96, 384, 768, 2112, 2208),
        num_init_features=96,
        growth_rate=48,
        block_config=(6, 12, 36, 24),
    ),
}

densenet_encoders: Dict[str, Dict[str, Any]] = {
    name: {
        "encoder": DenseNetEncoder,
        "params": params,
        "pretrained_settings": {
            "imagenet": {"repo_id": f"smp-hub/{name}.imagenet", "revision": _REVISIONS[name], **_IMAGENET}
        },
        "spatial_dims": (2, 3),
    }
    for name, params in _ARCHITECTURES.items()
}
