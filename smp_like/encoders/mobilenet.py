"""MobileNetV2 encoder (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks") as n-d
modules.

Module names follow the torchvision layout (``features.0.0`` stem conv, ``features.N.conv.M`` inverted
residuals, ``features.18`` the final 1x1 conv), so SMP checkpoints and the ``smp-hub/mobilenet_v2.imagenet``
weights load without renaming.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import as_conv_stride, normalize_stage_strides
from smp_like.encoders._normalization import IMAGENET_SETTINGS

Stride = Union[int, Tuple[int, ...]]

# (expansion t, output channels c, repeats n, stride of the first repeat s): Table 2 of the paper.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Indices in ``features`` where stages 1..5 start: the stem, then the first block of each stride-2 group.
_STAGE_STARTS = (0, 2, 4, 7, 14)


class ConvNormReLU6(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU6, with "same" padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: Stride = 1,
        groups: int = 1,
        spatial_dims: int = 2,
    ):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nd.conv_type(spatial_dims)(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                groups=groups,
                bias=False,
            ),
            nd.batchnorm_type(spatial_dims)(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expansion -> 3x3 depthwise (strided) -> linear 1x1 projection; shortcut when shapes agree."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: Stride, expand_ratio: int, spatial_dims: int = 2
    ):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        strides = (stride,) if isinstance(stride, int) else tuple(stride)
        self.use_res_connect = all(s == 1 for s in strides) and in_channels == out_channels
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormReLU6(in_channels, hidden, kernel_size=1, spatial_dims=spatial_dims))
        layers += [
            ConvNormReLU6(hidden, hidden, stride=stride, groups=hidden, spatial_dims=spatial_dims),
            nd.conv_type(spatial_dims)(hidden, out_channels, 1, bias=False),
            nd.batchnorm_type(spatial_dims)(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Encoder(nn.Module, EncoderMixin):
    """MobileNetV2 (width 1.0) feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Args:
        out_channels: channels of the six possible features (input first).
        depth: number of down-sampling stages to run, 1..5.
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors (5 entries, each 1, 2 or one per axis), e.g.
            ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 1..5, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("classifier.",)

    def __init__(
        self,
        out_channels: Sequence[int] = (3, 16, 24, 32, 96, 1280),
        depth: int = 5,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
        last_channels: int = 1280,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a MobileNetV2 encoder must be an int in 1..5, got {depth!r}"
            )
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        if strides is not None:
            self._stage_strides = normalize_stage_strides(strides, spatial_dims)
        stage_strides = [as_conv_stride(s) for s in normalize_stage_strides(strides, spatial_dims)]
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        layers: List[nn.Module] = [ConvNormReLU6(3, 32, stride=stage_strides[0], spatial_dims=spatial_dims)]
        channels = 32
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                stride: Stride = 1
                if i == 0 and s == 2:
                    stride = stage_strides[_STAGE_STARTS.index(len(layers))]
                block = InvertedResidual(channels, c, stride, expand_ratio=t, spatial_dims=spatial_dims)
                layers.append(block)
                channels = c
        layers.append(ConvNormReLU6(channels, last_channels, kernel_size=1, spatial_dims=spatial_dims))
        self.features = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage_slices(self) -> List[slice]:
        bounds = (*_STAGE_STARTS, len(self.features))
        return [slice(bounds[i], bounds[i + 1]) for i in range(5)]

    def get_stages(self) -> Dict[int, nn.Module]:
        return {i: self.features[s] for i, s in enumerate(self._stage_slices(), start=1)}

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        for stage in self._stage_slices()[: self._depth]:
            for layer in self.features[stage]:
                x = layer(x)
            features.append(x)
        return features


_IMAGENET = IMAGENET_SETTINGS

mobilenet_encoders: Dict[str, Dict[str, Any]] = {
    "mobilenet_v2": {
        "encoder": MobileNetV2Encoder,
        "params": {"out_channels": (3, 16, 24, 32, 96, 1280)},
        "pretrained_settings": {
            "imagenet": {
                # Hub repository and pinned revision of the weights SMP publishes.
                "repo_id": "smp-hub/mobilenet_v2.imagenet",
                "revision": "e67aa804e17f7b404b629127eabbd224c4e0690b",
                **_IMAGENET,
            }
        },
        "spatial_dims": (2, 3),
    }
}
