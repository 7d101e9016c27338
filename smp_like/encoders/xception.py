"""Xception encoder (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions"), 2D only.

Module names follow the layout of the Keras-to-PyTorch port SMP uses (``conv1``/``bn1``, ``block1`` ...
``block12`` with ``rep``/``skip``/``skipbn``, ``conv3``/``bn3``, ``conv4``/``bn4``), so SMP checkpoints and
the ``smp-hub/xception.imagenet`` weights load without renaming. As in SMP, the two stem convolutions are
padded (so feature 1 is exactly half the input size) and the last feature is ``bn4``'s output, without a final
ReLU.
"""

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from smp_like.encoders._base import EncoderMixin


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 conv followed by a pointwise 1x1 conv, both without bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=padding, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """``reps`` x (ReLU, separable conv, BN), then a 3x3 max-pool if strided; residual over the whole block.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        reps: number of separable convolutions.
        stride: 1, or 2 to end with a stride-2 max-pool (the shortcut then is a strided 1x1 conv + BN).
        start_with_relu: begin with a ReLU (False only for the first block, whose input is already activated).
        grow_first: change the width in the first separable conv (else in the last).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
        widths = [in_channels] + [out_channels if grow_first else in_channels] * (reps - 1) + [out_channels]
        layers: List[nn.Module] = []
        for i in range(reps):
            # The first ReLU must not be in place: the block input is still needed by the shortcut.
            layers.append(nn.ReLU(inplace=i > 0))
            layers.append(SeparableConv2d(widths[i], widths[i + 1]))
            layers.append(nn.BatchNorm2d(widths[i + 1]))
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + shortcut


class XceptionEncoder(nn.Module, EncoderMixin):
    """Xception feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]`` (2D only).

    Args:
        out_channels: channels of the six possible features (input first).
        depth: number of down-sampling stages to run, 1..5.

    Raises:
        ValueError: for a depth outside 1..5.
    """

    _ignored_pretrained_prefixes = ("fc.", "last_linear.")

    _dilation_refusal = (
        "the Xception encoder",
        "it down-samples with max-pooling, which cannot be replaced by dilation",
    )

    def __init__(self, out_channels: Sequence[int] = (3, 64, 128, 256, 728, 2048), depth: int = 5):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of an Xception encoder must be an int in 1..5, got {depth!r}"
            )
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        # Entry flow.
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.block1 = Block(64, 128, 2, stride=2, start_with_relu=False)
        self.block2 = Block(128, 256, 2, stride=2)
        self.block3 = Block(256, 728, 2, stride=2)
        # Middle flow: eight identical residual blocks.
        for i in range(4, 12):
            self.add_module(f"block{i}", Block(728, 728, 3))
        # Exit flow.
        self.block12 = Block(728, 1024, 2, stride=2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        stages = [
            [self.conv1, self.bn1, self.relu1, self.conv2, self.bn2, self.relu2],
            [self.block1],
            [self.block2],
            [getattr(self, f"block{i}") for i in range(3, 12)],
            [self.block12, self.conv3, self.bn3, self.relu3, self.conv4, self.bn4],
        ]
        features = [x]
        for stage in stages[: self._depth]:
            for layer in stage:
                x = layer(x)
            features.append(x)
        return features


xception_encoders: Dict[str, Dict[str, Any]] = {
    "xception": {
        "encoder": XceptionEncoder,
        "params": {"out_channels": (3, 64, 128, 256, 728, 2048)},
        "pretrained_settings": {
            "imagenet": {
                # Hub repository and pinned revision of the weights SMP publishes; the Keras port was
                # trained on inputs scaled to [-1, 1].
                "repo_id": "smp-hub/xception.imagenet",
                "revision": "01cfaf27c11353b1f0c578e7e26d2c000ea91049",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.5, 0.5, 0.5],
                "input_space": "RGB",
                "input_range": [0, 1],
            }
        },
        "spatial_dims": (2,),
    }
}
