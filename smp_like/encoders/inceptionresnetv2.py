"""Inception-ResNet-v2 encoder (Szegedy et al. 2017, Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning), 2D.

Module names follow the TensorFlow-slim port (``conv2d_1a``, ``mixed_5b``, ``repeat.0.branch1.0.conv``, ...),
which SMP keeps, so SMP checkpoints and the ``smp-hub/inceptionresnetv2.<tag>`` weights load without renaming.

Padding: as in SMP (and unlike the paper's "valid" stem and reductions), every 3x3 convolution and max-pool is
padded by 1, so any input size works and each feature has size ``ceil(size / reduction)``.
"""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from smp_like.encoders._base import EncoderMixin
from smp_like.encoders.inceptionv4 import BasicConv2d, avg_pool, conv1x1, conv3x3, max_pool


class Mixed_5b(nn.Module):
    """Inception block closing the stem (192 -> 320 channels)."""

    def __init__(self):
        super().__init__()
        self.branch0 = conv1x1(192, 96)
        self.branch1 = nn.Sequential(conv1x1(192, 48), BasicConv2d(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(conv1x1(192, 64), conv3x3(64, 96), conv3x3(96, 96))
        self.branch3 = nn.Sequential(avg_pool(), conv1x1(192, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block35(nn.Module):
    """Inception-ResNet-A block at 1/8 resolution (paper Fig. 16): residual scaled by ``scale`` (sec. 3.3)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.branch0 = conv1x1(320, 32)
        self.branch1 = nn.Sequential(conv1x1(320, 32), conv3x3(32, 32))
        self.branch2 = nn.Sequential(conv1x1(320, 32), conv3x3(32, 48), conv3x3(48, 64))
        self.conv2d = nn.Conv2d(128, 320, kernel_size=1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return self.relu(out * self.scale + x)


class Mixed_6a(nn.Module):
    """Reduction-A, 1/8 -> 1/16 (320 -> 1088 channels; paper Fig. 7 with k, l, m, n = 256, 256, 384, 384)."""

    def __init__(self):
        super().__init__()
        self.branch0 = conv3x3(320, 384, stride=2)
        self.branch1 = nn.Sequential(conv1x1(320, 256), conv3x3(256, 256), conv3x3(256, 384, stride=2))
        self.branch2 = max_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Block17(nn.Module):
    """Inception-ResNet-B block at 1/16 resolution (paper Fig. 17), residual scaled by ``scale``."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.branch0 = conv1x1(1088, 192)
        self.branch1 = nn.Sequential(
            conv1x1(1088, 128),
            BasicConv2d(128, 160, (1, 7), padding=(0, 3)),
            BasicConv2d(160, 192, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1088, kernel_size=1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return self.relu(out * self.scale + x)


class Mixed_7a(nn.Module):
    """Reduction-B, 1/16 -> 1/32 (1088 -> 2080 channels; paper Fig. 18)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(conv1x1(1088, 256), conv3x3(256, 384, stride=2))
        self.branch1 = nn.Sequential(conv1x1(1088, 256), conv3x3(256, 288, stride=2))
        self.branch2 = nn.Sequential(conv1x1(1088, 256), conv3x3(256, 288), conv3x3(288, 320, stride=2))
        self.branch3 = max_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Block8(nn.Module):
    """Inception-ResNet-C block at 1/32 resolution (paper Fig. 19), residual scaled by ``scale``.

    Args:
        scale: residual scaling.
        activation: apply the final ReLU (the very last block of the network has none).
    """

    def __init__(self, scale: float = 1.0, activation: bool = True):
        super().__init__()
        self.scale = scale
        self.branch0 = conv1x1(2080, 192)
        self.branch1 = nn.Sequential(
            conv1x1(2080, 192),
            BasicConv2d(192, 224, (1, 3), padding=(0, 1)),
            BasicConv2d(224, 256, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(448, 2080, kernel_size=1)
        self.relu = nn.ReLU(inplace=False) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat((self.branch0(x), self.branch1(x)), 1))
        return self.relu(out * self.scale + x)


class InceptionResNetV2Encoder(nn.Module, EncoderMixin):
    """Inception-ResNet-v2 feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Down-sampling happens in max-pools and in pooling branches concatenated with strided convs, so the network
    cannot be dilated (``output_stride`` 16 or 8 is refused, as in SMP).

    Args:
        out_channels: channels of the six possible features (input first).
        depth: number of down-sampling stages to run, 1..5.

    Raises:
        ValueError: for a depth outside 1..5.
    """

    _ignored_pretrained_prefixes = ("last_linear.",)

    _dilation_refusal = (
        "the Inception-ResNet-v2 encoder",
        "it down-samples with pooling that cannot be dilated",
    )

    def __init__(self, out_channels: Sequence[int] = (3, 64, 192, 320, 1088, 1536), depth: int = 5):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                "`depth` (encoder_depth) of an Inception-ResNet-v2 encoder must be an int in 1..5, "
                f"got {depth!r}"
            )
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3
        self.conv2d_1a = conv3x3(3, 32, stride=2)
        self.conv2d_2a = conv3x3(32, 32)
        self.conv2d_2b = conv3x3(32, 64)
        self.maxpool_3a = max_pool()
        self.conv2d_3b = conv1x1(64, 80)
        self.conv2d_4a = conv3x3(80, 192)
        self.maxpool_5a = max_pool()
        self.mixed_5b = Mixed_5b()
        # Residual scales of the TensorFlow-slim reference model (paper sec. 3.3: scaling by 0.1 to 0.3
        # keeps training stable).
        self.repeat = nn.Sequential(*[Block35(scale=0.17) for _ in range(10)])
        self.mixed_6a = Mixed_6a()
        self.repeat_1 = nn.Sequential(*[Block17(scale=0.10) for _ in range(20)])
        self.mixed_7a = Mixed_7a()
        self.repeat_2 = nn.Sequential(*[Block8(scale=0.20) for _ in range(9)])
        self.block8 = Block8(activation=False)
        self.conv2d_7b = conv1x1(2080, 1536)

    def get_stages(self) -> Dict[int, nn.Module]:
        return {
            1: nn.Sequential(self.conv2d_1a, self.conv2d_2a, self.conv2d_2b),
            2: nn.Sequential(self.maxpool_3a, self.conv2d_3b, self.conv2d_4a),
            3: nn.Sequential(self.maxpool_5a, self.mixed_5b, self.repeat),
            4: nn.Sequential(self.mixed_6a, self.repeat_1),
            5: nn.Sequential(self.mixed_7a, self.repeat_2, self.block8, self.conv2d_7b),
        }


    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        stages = self.get_stages()
        for stage in range(1, self._depth + 1):
            x = stages[stage](x)
            features.append(x)
        return features


_HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_space": "RGB", "input_range": [0, 1]}

inceptionresnetv2_encoders = {
    "inceptionresnetv2": {
        "encoder": InceptionResNetV2Encoder,
        "params": {"out_channels": (3, 64, 192, 320, 1088, 1536)},
        "pretrained_settings": {
            "imagenet": {
                "repo_id": "smp-hub/inceptionresnetv2.imagenet",
                "revision": "120c5afdbb80a1c989db0a7423ebb7a9db9b1e6c",
                **_HALF,
            },
            "imagenet+background": {
                "repo_id": "smp-hub/inceptionresnetv2.imagenet-background",
                "revision": "3ecf3491658dc0f6a76d69c9d1cb36511b1ee56c",
                **_HALF,
            },
        },
        "spatial_dims": (2,),
    }
}
