"""Inception-v4 encoder (Szegedy et al. 2017, Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning), 2D.

Module names follow the TensorFlow-slim port (``features.<i>.branch1.0.conv`` ...), which SMP keeps, so SMP
checkpoints and the ``smp-hub/inceptionv4.<tag>`` weights load without renaming.

Padding: the paper's stem and reduction blocks use unpadded ("valid") 3x3 convolutions and poolings. As SMP
does, every 3x3 convolution and max-pool here is padded by 1, so any input size works and each feature has
size ``ceil(size / reduction)``, which is what U-Net-like decoders need to meet their skips.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.encoders._base import EncoderMixin

Size = Union[int, Tuple[int, int]]


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as in the TensorFlow originals) -> ReLU."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: Size, stride: int = 1, padding: Size = 0
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> BasicConv2d:
    """A padded 3x3 BasicConv2d (see the module docstring on padding)."""
    return BasicConv2d(in_planes, out_planes, 3, stride=stride, padding=1)


def conv1x1(in_planes: int, out_planes: int) -> BasicConv2d:
    return BasicConv2d(in_planes, out_planes, 1)


def conv1x7(in_planes: int, out_planes: int) -> BasicConv2d:
    return BasicConv2d(in_planes, out_planes, (1, 7), padding=(0, 3))


def conv7x1(in_planes: int, out_planes: int) -> BasicConv2d:
    return BasicConv2d(in_planes, out_planes, (7, 1), padding=(3, 0))


def max_pool() -> nn.MaxPool2d:
    """The stride-2 3x3 max-pool of the reduction blocks, padded like the convolutions."""
    return nn.MaxPool2d(3, stride=2, padding=1)


def avg_pool() -> nn.AvgPool2d:
    """The 3x3 average pool of the pooling branches; border windows average only real pixels."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Mixed_3a(nn.Module):
    """Stem, first split: max-pool and strided conv side by side (64 -> 160 channels)."""

    def __init__(self):
        super().__init__()
        self.maxpool = max_pool()
        self.conv = conv3x3(64, 96, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.maxpool(x), self.conv(x)), 1)


class Mixed_4a(nn.Module):
    """Stem, second split: a 3x3 branch and a factorised 7x7 branch (160 -> 192 channels)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(conv1x1(160, 64), conv3x3(64, 96))
        self.branch1 = nn.Sequential(conv1x1(160, 64), conv1x7(64, 64), conv7x1(64, 64), conv3x3(64, 96))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x)), 1)


class Mixed_5a(nn.Module):
    """Stem, third split: strided conv and max-pool side by side (192 -> 384 channels)."""

    def __init__(self):
        super().__init__()
        self.conv = conv3x3(192, 192, stride=2)
        self.maxpool = max_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.conv(x), self.maxpool(x)), 1)


class Inception_A(nn.Module):
    """Inception-A block at 1/8 resolution (384 channels; paper Fig. 4)."""

    def __init__(self):
        super().__init__()
        self.branch0 = conv1x1(384, 96)
        self.branch1 = nn.Sequential(conv1x1(384, 64), conv3x3(64, 96))
        self.branch2 = nn.Sequential(conv1x1(384, 64), conv3x3(64, 96), conv3x3(96, 96))
        self.branch3 = nn.Sequential(avg_pool(), conv1x1(384, 96))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Reduction_A(nn.Module):
    """Reduction-A block, 1/8 -> 1/16 (384 -> 1024 channels; paper Fig. 7)."""

    def __init__(self):
        super().__init__()
        self.branch0 = conv3x3(384, 384, stride=2)
        self.branch1 = nn.Sequential(conv1x1(384, 192), conv3x3(192, 224), conv3x3(224, 256, stride=2))
        self.branch2 = max_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Inception_B(nn.Module):
    """Inception-B block at 1/16 resolution (1024 channels; paper Fig. 5)."""

    def __init__(self):
        super().__init__()
        self.branch0 = conv1x1(1024, 384)
        self.branch1 = nn.Sequential(conv1x1(1024, 192), conv1x7(192, 224), conv7x1(224, 256))
        self.branch2 = nn.Sequential(
            conv1x1(1024, 192), conv7x1(192, 192), conv1x7(192, 224), conv7x1(224, 224), conv1x7(224, 256)
        )
        self.branch3 = nn.Sequential(avg_pool(), conv1x1(1024, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


class Reduction_B(nn.Module):
    """Reduction-B block, 1/16 -> 1/32 (1024 -> 1536 channels; paper Fig. 8)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(conv1x1(1024, 192), conv3x3(192, 192, stride=2))
        self.branch1 = nn.Sequential(
            conv1x1(1024, 256), conv1x7(256, 256), conv7x1(256, 320), conv3x3(320, 320, 2)
        )
        self.branch2 = max_pool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1)


class Inception_C(nn.Module):
    """Inception-C block at 1/32 resolution (1536 channels; paper Fig. 6): branches split into 1x3 and 3x1."""

    def __init__(self):
        super().__init__()
        self.branch0 = conv1x1(1536, 256)
        self.branch1_0 = conv1x1(1536, 384)
        self.branch1_1a = BasicConv2d(384, 256, (1, 3), padding=(0, 1))
        self.branch1_1b = BasicConv2d(384, 256, (3, 1), padding=(1, 0))
        self.branch2_0 = conv1x1(1536, 384)
        self.branch2_1 = BasicConv2d(384, 448, (3, 1), padding=(1, 0))
        self.branch2_2 = BasicConv2d(448, 512, (1, 3), padding=(0, 1))
        self.branch2_3a = BasicConv2d(512, 256, (1, 3), padding=(0, 1))
        self.branch2_3b = BasicConv2d(512, 256, (3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(avg_pool(), conv1x1(1536, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch1_0(x)
        x1 = torch.cat((self.branch1_1a(x1), self.branch1_1b(x1)), 1)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        x2 = torch.cat((self.branch2_3a(x2), self.branch2_3b(x2)), 1)
        return torch.cat((self.branch0(x), x1, x2, self.branch3(x)), 1)


class InceptionV4Encoder(nn.Module, EncoderMixin):
    """Inception-v4 feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Down-sampling happens in max-pool branches concatenated with strided convs, so the network cannot be
    dilated (``output_stride`` 16 or 8 is refused, as in SMP).

    Args:
        out_channels: channels of the six possible features (input first).
        depth: number of down-sampling stages to run, 1..5.

    Raises:
        ValueError: for a depth outside 1..5.
    """

    _ignored_pretrained_prefixes = ("last_linear.",)
    # Index in ``features`` where each of the stages 2..5 begins; stage 5 runs to the end. These are SMP's
    # boundaries: the 1/8 feature is taken after the third (not the last) Inception-A block and the 1/16
    # feature after the fourth of seven Inception-B blocks, so features (and trained decoders) stay
    # interchangeable.
    _stage_starts = (3, 5, 9, 15)

    _dilation_refusal = (
        "the Inception-v4 encoder",
        "it down-samples with pooling branches that cannot be dilated",
    )

    def __init__(self, out_channels: Sequence[int] = (3, 64, 192, 384, 1024, 1536), depth: int = 5):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of an Inception-v4 encoder must be an int in 1..5, got {depth!r}"
            )
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3
        self.features = nn.Sequential(
            conv3x3(3, 32, stride=2),
            conv3x3(32, 32),
            conv3x3(32, 64),
            Mixed_3a(),
            Mixed_4a(),
            Mixed_5a(),
            *[Inception_A() for _ in range(4)],
            Reduction_A(),
            *[Inception_B() for _ in range(7)],
            Reduction_B(),
            *[Inception_C() for _ in range(3)],
        )

    def get_stages(self) -> Dict[int, nn.Module]:
        bounds = (0, *self._stage_starts, len(self.features))
        return {stage: self.features[bounds[stage - 1] : bounds[stage]] for stage in range(1, 6)}


    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        stages = self.get_stages()
        for stage in range(1, self._depth + 1):
            x = stages[stage](x)
            features.append(x)
        return features


_HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_space": "RGB", "input_range": [0, 1]}

inceptionv4_encoders = {
    "inceptionv4": {
        "encoder": InceptionV4Encoder,
        "params": {"out_channels": (3, 64, 192, 384, 1024, 1536)},
        "pretrained_settings": {
            "imagenet": {
                "repo_id": "smp-hub/inceptionv4.imagenet",
                "revision": "918fb54f07811d82a4ecde3a51156041d0facba9",
                **_HALF,
            },
            "imagenet+background": {
                "repo_id": "smp-hub/inceptionv4.imagenet-background",
                "revision": "8c2a48e20d2709ee64f8421c61be309f05bfa536",
                **_HALF,
            },
        },
        "spatial_dims": (2,),
    }
}
