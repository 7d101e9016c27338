"""VGG encoders (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition") as n-d modules.

Module names follow the torchvision layout (one ``features`` Sequential: conv, [batchnorm,] ReLU ...
max-pool), so SMP checkpoints and the ``smp-hub/<name>.imagenet`` weights load without renaming. As in SMP,
the features are the activations just before each max-pool plus the output of the last pool: feature 0 is the
64-channel full-resolution map of the first block, not the input.
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import as_conv_stride, normalize_stage_strides
from smp_like.encoders._normalization import IMAGENET_SETTINGS

# "M" marks a 2x max-pool; numbers are 3x3 conv widths (configurations A, B, D, E of the paper, Table 1).
_CONFIGS: Dict[str, List[Union[int, str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"] + [512, 512, 512, 512, "M"] * 2,
}


class VGGEncoder(nn.Module, EncoderMixin):
    """VGG feature extractor returning ``[block1, block2, block3, block4, block5, pool5][: depth + 1]``.

    ``block_i`` is the activation before the i-th max-pool (stride ``2 ** (i - 1)``) and ``pool5`` the output
    of the last pool (stride 32), as in SMP; so ``out_channels`` starts with 64, not with the input channels.

    Args:
        out_channels: channels of the six features.
        config: layer list, ints for 3x3 conv widths and ``"M"`` for a max-pool (five pools).
        batch_norm: put a batch norm after every conv (the ``*_bn`` variants).
        depth: number of down-sampling stages to run, 1..5.
        spatial_dims: 2 for images, 3 for volumes.
        strides: optional per-stage down-sampling factors of the five max-pools (each 1, 2 or one per axis),
            e.g. ``[(1, 2, 2), (1, 2, 2), 2, 2, 2]`` for thick-slice volumes; default 2 everywhere.

    Raises:
        ValueError: for a depth outside 1..5, a config without five pools, bad spatial_dims or bad strides.
    """

    _ignored_pretrained_prefixes = ("classifier.",)

    _dilation_refusal = (
        "VGG encoders",
        "they down-sample with max-pooling, which cannot be replaced by dilation",
    )

    def __init__(
        self,
        out_channels: Sequence[int],
        config: Sequence[Union[int, str]],
        batch_norm: bool = False,
        depth: int = 5,
        spatial_dims: int = 2,
        strides: Optional[Sequence] = None,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a VGG encoder must be an int in 1..5, got {depth!r}"
            )
        if list(config).count("M") != 5:
            raise ValueError(
                f"`config` of a VGG encoder must contain five 'M' (max-pool) entries, got {config!r}"
            )
        self._spatial_dims = nd.check_spatial_dims(spatial_dims)
        if strides is not None:
            self._stage_strides = normalize_stage_strides(strides, spatial_dims)
        pool_strides = iter(as_conv_stride(s) for s in normalize_stage_strides(strides, spatial_dims))
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        conv, norm = nd.conv_type(spatial_dims), nd.batchnorm_type(spatial_dims)
        layers: List[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                stride = next(pool_strides)
                # kernel = stride: the pool tiles the input, and a factor-1 axis is left untouched.
                layers.append(nd.maxpool_type(spatial_dims)(kernel_size=stride, stride=stride))
                continue
            layers.append(conv(channels, int(item), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(norm(int(item)))
            layers.append(nn.ReLU(inplace=True))
            channels = int(item)
        self.features = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


    def _check_input_size(self, x: torch.Tensor) -> None:
        # The max-pools floor odd sizes: each axis needs at least its total reduction, or the last is empty.
        deepest = self.reductions[self._depth]
        minimum = (deepest,) * self.spatial_dims if isinstance(deepest, int) else tuple(deepest)
        sizes = tuple(x.shape[2:])
        if len(sizes) != len(minimum) or any(s < m for s, m in zip(sizes, minimum)):
            raise ValueError(
                f"input of spatial size {sizes} is too small for a depth-{self._depth} VGG encoder: each "
                f"axis needs at least {minimum} (its max-pools round sizes down); pad the input"
            )

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        self._check_input_size(x)
        features: List[torch.Tensor] = []
        for layer in self.features:
            if isinstance(layer, (nn.MaxPool2d, nn.MaxPool3d)):
                features.append(x)
                if len(features) == self._depth + 1:
                    return features
            x = layer(x)
        features.append(x)
        return features


_IMAGENET = IMAGENET_SETTINGS

# Hub repositories and pinned revisions of the weights SMP publishes (smp-hub/<name>.imagenet).
_REVISIONS = {
    "vgg11": "ad8b90e1051c38fdbf399cf5016886a1be357390",
    "vgg11_bn": "59757f9215032c9f092977092d57d26a9df7fd9c",
    "vgg13": "1b70ff2580f101a8007a48b51e2b5d1e5925dc42",
    "vgg13_bn": "9be454515193af6612261b7614fe90607e27b143",
    "vgg16": "49d74b799006ee252b86e25acd6f1fd8ac9a99c1",
    "vgg16_bn": "2c186d02fb519e93219a99a1c2af6295aef0bf0d",
    "vgg19": "2853d00d7bca364dbb98be4d6afa347e5aeec1f6",
    "vgg19_bn": "f09a924cb0d201ea6f61601df9559141382271d7",
}

_NAME_TO_CONFIG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def _entry(name: str) -> Dict[str, Any]:
    base = name.replace("_bn", "")
    return {
        "encoder": VGGEncoder,
        "params": {
            "out_channels": (64, 128, 256, 512, 512, 512),
            "config": _CONFIGS[_NAME_TO_CONFIG[base]],
            "batch_norm": name.endswith("_bn"),
        },
        "pretrained_settings": {
            "imagenet": {"repo_id": f"smp-hub/{name}.imagenet", "revision": _REVISIONS[name], **_IMAGENET}
        },
        "spatial_dims": (2, 3),
    }


vgg_encoders: Dict[str, Dict[str, Any]] = {name: _entry(name) for name in _REVISIONS}
