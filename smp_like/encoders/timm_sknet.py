"""Selective Kernel ResNet / ResNeXt encoders (Li et al. 2019, Selective Kernel Networks), 2D only.

Built from timm's ``ResNet`` with its ``SelectiveKernelBasic`` / ``SelectiveKernelBottleneck`` blocks: the
stem and stages of a timm network become the encoder's own children, so module names (``conv1``, ``bn1``,
``layerN.i.conv1.paths.0.conv`` ...) are timm's, which are also SMP's ``timm-sk*`` keys, and SMP checkpoints and
the ``smp-hub/timm-sk*.imagenet`` weights load without renaming. timm is imported only when one is built, so
``import smp_like`` and native models stay free of it.
"""

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._normalization import IMAGENET_SETTINGS

SK_BLOCKS = ("basic", "bottleneck")


class SkNetEncoder(nn.Module, EncoderMixin):
    """SKNet feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Each 3x3 convolution of a ResNet block is replaced by a Selective Kernel unit: two paths (3x3 and dilated
    3x3) fused by a channel attention that picks the receptive field per channel.

    Args:
        out_channels: channels of the six possible features (input first).
        block: ``"basic"`` (SKNet-18/34) or ``"bottleneck"`` (SK-ResNeXt).
        layers: number of blocks in each of the four residual stages.
        depth: number of down-sampling stages to run, 1..5.
        cardinality: groups of the 3x3 convolutions (ResNeXt).
        base_width: bottleneck width per group (ResNeXt).
        sk_kwargs: options of the Selective Kernel units (e.g. ``rd_ratio``, ``split_input``).
        zero_init_last: zero-initialise the last norm of each block (timm's default is True; SMP uses False).

    Raises:
        ValueError: for a depth outside 1..5 or an unknown block.
    """

    _ignored_pretrained_prefixes = ("fc.",)

    def __init__(
        self,
        out_channels: Sequence[int],
        block: str,
        layers: Sequence[int],
        depth: int = 5,
        cardinality: int = 1,
        base_width: int = 64,
        sk_kwargs: Optional[Dict[str, Any]] = None,
        zero_init_last: bool = False,
    ):
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of an SKNet encoder must be an int in 1..5, got {depth!r}"
            )
        if block not in SK_BLOCKS:
            raise ValueError(f"`block` must be one of {SK_BLOCKS}, got {block!r}")
        super().__init__()
        from timm.models.resnet import ResNet
        from timm.models.sknet import SelectiveKernelBasic, SelectiveKernelBottleneck

        block_type = SelectiveKernelBasic if block == "basic" else SelectiveKernelBottleneck
        block_args = {"sk_kwargs": dict(sk_kwargs)} if sk_kwargs else None
        network = ResNet(
            block=block_type,
            layers=tuple(layers),
            cardinality=cardinality,
            base_width=base_width,
            zero_init_last=zero_init_last,
            block_args=block_args,
        )
        # The stem and the four stages, in timm's order (so state-dict keys and their order are timm's); the
        # classifier is not part of an encoder (SMP's state dicts have no fc keys either).
        for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(network, name))
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

    def get_stages(self) -> Dict[int, Any]:
        return {
            1: nn.Sequential(self.conv1, self.bn1, self.act1),
            2: [self.maxpool, self.layer1],
            3: self.layer2,
            4: self.layer3,
            5: self.layer4,
        }

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        if self._depth >= 1:
            x = self.act1(self.bn1(self.conv1(x)))
            features.append(x)
        if self._depth >= 2:
            x = self.layer1(self.maxpool(x))
            features.append(x)
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

# SMP's Hub repositories (smp-hub/<name>.imagenet) and their pinned revisions.
_REVISIONS = {
    "timm-skresnet18": "6c97652bb744d89177b68274d2fda3923a7d1f95",
    "timm-skresnet34": "2367796924a8182cc835ef6b5dc303917f923f99",
    "timm-skresnext50_32x4d": "50207e407cc4c6ea9e6872963db6844ca7b7b9de",
}

# SKNet-18/34 split the input channels between the two kernel paths and squeeze the attention by 8.
_BASIC_SK = {"rd_ratio": 1 / 8, "split_input": True}

_ARCHITECTURES = {
    "timm-skresnet18": dict(
        out_channels=(3, 64, 64, 128, 256, 512), block="basic", layers=(2, 2, 2, 2), sk_kwargs=_BASIC_SK
    ),
    "timm-skresnet34": dict(
        out_channels=(3, 64, 64, 128, 256, 512), block="basic", layers=(3, 4, 6, 3), sk_kwargs=_BASIC_SK
    ),
    "timm-skresnext50_32x4d": dict(
        out_channels=(3, 64, 256, 512, 1024, 2048),
        block="bottleneck",
        layers=(3, 4, 6, 3),
        cardinality=32,
        base_width=4,
    ),
}

timm_sknet_encoders: Dict[str, Dict[str, Any]] = {
    name: {
        "encoder": SkNetEncoder,
        "params": dict(params, zero_init_last=False),
        "pretrained_settings": {
            "imagenet": {"repo_id": f"smp-hub/{name}.imagenet", "revision": _REVISIONS[name], **_IMAGENET}
        },
        "spatial_dims": (2,),
    }
    for name, params in _ARCHITECTURES.items()
}
