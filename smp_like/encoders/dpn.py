"""Dual Path Network encoders (Chen et al. 2017, Dual Path Networks), 2D.

A dual path block keeps two streams: a residual path (summed, as in ResNet) and a densely connected path
(concatenated, as in DenseNet), both fed by the same grouped bottleneck. Module names follow the original
MXNet ports (``features.conv2_1.c1x1_a.bn`` ...), which SMP keeps, so SMP checkpoints and the
``smp-hub/<name>.<tag>`` weights load without renaming.
"""

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.encoders._base import EncoderMixin

DualPath = Tuple[torch.Tensor, torch.Tensor]

# The MXNet originals use BatchNorm with eps 1e-3.
_BN_EPS = 1e-3


def _merge(x: Union[torch.Tensor, DualPath]) -> torch.Tensor:
    return torch.cat(x, dim=1) if isinstance(x, tuple) else x


class BnActConv2d(nn.Module):
    """Pre-activation conv: BatchNorm -> ReLU -> Conv (no bias)."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int = 0, groups: int = 1
    ):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_chs, eps=_BN_EPS)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.bn(x)))


class CatBnAct(nn.Module):
    """Concatenate the two paths (if given as a pair), then BatchNorm -> ReLU."""

    def __init__(self, in_chs: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_chs, eps=_BN_EPS)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Union[torch.Tensor, DualPath]) -> torch.Tensor:
        return self.act(self.bn(_merge(x)))


class InputBlock(nn.Module):
    """Stem: strided conv -> BatchNorm -> ReLU -> 3x3 max-pool (stride 2)."""

    def __init__(self, num_init_features: int, kernel_size: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(3, num_init_features, kernel_size, stride=2, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(num_init_features, eps=_BN_EPS)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class DualPathBlock(nn.Module):
    """One dual path block (Chen et al. 2017, Fig. 2e).

    Args:
        in_chs: input channels (both paths concatenated).
        num_1x1_a: width of the first 1x1 conv.
        num_3x3_b: width of the grouped 3x3 conv.
        num_1x1_c: channels of the residual path.
        inc: channels the block adds to the dense path.
        groups: groups of the 3x3 conv.
        block_type: ``"proj"`` (first block: project the input onto both paths), ``"down"`` (the same with
            stride 2) or ``"normal"``.
        b: DPN "b" variant: the last 1x1 conv is split in two convs after a shared BatchNorm-ReLU.
    """

    def __init__(
        self,
        in_chs: int,
        num_1x1_a: int,
        num_3x3_b: int,
        num_1x1_c: int,
        inc: int,
        groups: int,
        block_type: str = "normal",
        b: bool = False,
    ):
        super().__init__()
        if block_type not in ("proj", "down", "normal"):
            raise ValueError(f"`block_type` must be 'proj', 'down' or 'normal', got {block_type!r}")
        self.num_1x1_c = num_1x1_c
        self.b = b
        stride = 2 if block_type == "down" else 1
        self.has_proj = block_type != "normal"
        if self.has_proj:
            projection = BnActConv2d(in_chs, num_1x1_c + 2 * inc, kernel_size=1, stride=stride)
            # The key names the projection's stride, as in the pretrained checkpoints.
            self.proj_name = "c1x1_w_s2" if stride == 2 else "c1x1_w_s1"
            self.add_module(self.proj_name, projection)
        self.c1x1_a = BnActConv2d(in_chs, num_1x1_a, kernel_size=1, stride=1)
        self.c3x3_b = BnActConv2d(
            num_1x1_a, num_3x3_b, kernel_size=3, stride=stride, padding=1, groups=groups
        )
        if b:
            self.c1x1_c = CatBnAct(num_3x3_b)
            self.c1x1_c1 = nn.Conv2d(num_3x3_b, num_1x1_c, kernel_size=1, bias=False)
            self.c1x1_c2 = nn.Conv2d(num_3x3_b, inc, kernel_size=1, bias=False)
        else:
            self.c1x1_c = BnActConv2d(num_3x3_b, num_1x1_c + inc, kernel_size=1, stride=1)

    def forward(self, x: Union[torch.Tensor, DualPath]) -> DualPath:
        x_in = _merge(x)
        if self.has_proj:
            projected = getattr(self, self.proj_name)(x_in)
            residual, dense = projected[:, : self.num_1x1_c], projected[:, self.num_1x1_c :]
        else:
            residual, dense = x
        out = self.c3x3_b(self.c1x1_a(x_in))
        if self.b:
            out = self.c1x1_c(out)
            out_residual, out_dense = self.c1x1_c1(out), self.c1x1_c2(out)
        else:
            out = self.c1x1_c(out)
            out_residual, out_dense = out[:, : self.num_1x1_c], out[:, self.num_1x1_c :]
        return residual + out_residual, torch.cat([dense, out_dense], dim=1)


class DPNEncoder(nn.Module, EncoderMixin):
    """DPN feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Stage outputs that are still two paths are concatenated and passed through a ReLU, as SMP does; the last
    stage ends with the network's final BatchNorm-ReLU.

    Args:
        out_channels: channels of the six possible features (input first).
        num_init_features: channels of the stem conv.
        k_r: width of the bottleneck per 64 residual channels.
        groups: groups of the 3x3 convs.
        k_sec: number of blocks in each of the four dual path stages.
        inc_sec: channels each block of a stage adds to the dense path.
        small: DPN-68 stem (3x3 conv) and widths (no 4x bottleneck factor).
        b: DPN "b" variant blocks.
        depth: number of down-sampling stages to run, 1..5.

    Raises:
        ValueError: for a depth outside 1..5.
    """

    _ignored_pretrained_prefixes = ("last_linear.", "classifier.")

    def __init__(
        self,
        out_channels: Sequence[int],
        num_init_features: int,
        k_r: int,
        groups: int,
        k_sec: Sequence[int],
        inc_sec: Sequence[int],
        small: bool = False,
        b: bool = False,
        depth: int = 5,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a DPN encoder must be an int in 1..5, got {depth!r}"
            )
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = 3

        bw_factor = 1 if small else 4
        blocks = OrderedDict()
        blocks["conv1_1"] = InputBlock(
            num_init_features, kernel_size=3 if small else 7, padding=1 if small else 3
        )
        in_chs = num_init_features
        self._stage_ends = []
        for stage, (num_blocks, inc) in enumerate(zip(k_sec, inc_sec), start=2):
            # Residual-path channels: 64, 128, 256, 512 (x4 unless small).
            bw = (64 << (stage - 2)) * bw_factor
            r = (k_r * bw) // (64 * bw_factor)
            block_type = "proj" if stage == 2 else "down"
            blocks[f"conv{stage}_1"] = DualPathBlock(in_chs, r, r, bw, inc, groups, block_type, b)
            in_chs = bw + 3 * inc
            for i in range(2, num_blocks + 1):
                blocks[f"conv{stage}_{i}"] = DualPathBlock(in_chs, r, r, bw, inc, groups, "normal", b)
                in_chs += inc
            self._stage_ends.append(len(blocks))
        blocks["conv5_bn_ac"] = CatBnAct(in_chs)
        self._stage_ends[-1] += 1
        self.features = nn.Sequential(blocks)

    def _stage_slices(self) -> List[nn.Sequential]:
        ends = self._stage_ends
        return [
            self.features[1 : ends[0]],
            self.features[ends[0] : ends[1]],
            self.features[ends[1] : ends[2]],
            self.features[ends[2] : ends[3]],
        ]

    def get_stages(self) -> Dict[int, nn.Module]:
        stem = self.features[0]
        stage2, stage3, stage4, stage5 = self._stage_slices()
        return {
            1: nn.Sequential(stem.conv, stem.bn, stem.act),
            2: nn.Sequential(stem.pool, stage2),
            3: stage3,
            4: stage4,
            5: stage5,
        }

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        stem = self.features[0]
        x = stem.act(stem.bn(stem.conv(x)))
        features.append(x)
        if self._depth >= 2:
            x = stem.pool(x)
        for stage in self._stage_slices()[: self._depth - 1]:
            x = stage(x)
            # Dual path features leave the stage as one tensor: both paths, rectified.
            features.append(F.relu(torch.cat(x, dim=1)) if isinstance(x, tuple) else x)
        return features


# Normalisation of the MXNet originals: mean (124, 117, 104) / 255 and a scale of 0.0167 on 0..255 inputs.
_DPN_NORMALISATION = {
    "mean": [124 / 255, 117 / 255, 104 / 255],
    "std": [1 / (0.0167 * 255)] * 3,
    "input_space": "RGB",
    "input_range": [0, 1],
}

# Weights tag -> (Hub repository, pinned revision) as SMP publishes them.
_WEIGHTS = {
    "dpn68": {"imagenet": ("smp-hub/dpn68.imagenet", "c209aefdeae6bc93937556629e974b44d4e58535")},
    "dpn68b": {"imagenet+5k": ("smp-hub/dpn68b.imagenet-5k", "6c6615e77688e390ae0eaa81e26821fbd83cee4b")},
    "dpn92": {"imagenet+5k": ("smp-hub/dpn92.imagenet-5k", "d231f51ce4ad2c84ed5fcaf4ef0cfece6814a526")},
    "dpn98": {"imagenet": ("smp-hub/dpn98.imagenet", "b2836c86216c1ddce980d832f7deaa4ca22babd3")},
    "dpn107": {"imagenet+5k": ("smp-hub/dpn107.imagenet-5k", "dab4cd6b8b79de3db970f2dbff85359a8847db05")},
    "dpn131": {"imagenet": ("smp-hub/dpn131.imagenet", "04bbb9f415ca2bb59f3d8227857967b74698515e")},
}

_ARCHITECTURES = {
    "dpn68": dict(
        out_channels=(3, 10, 144, 320, 704, 832),
        num_init_features=10,
        k_r=128,
        groups=32,
        k_sec=(3, 4, 12, 3),
        inc_sec=(16, 32, 32, 64),
        small=True,
    ),
    "dpn68b": dict(
        out_channels=(3, 10, 144, 320, 704, 832),
        num_init_features=10,
        k_r=128,
        groups=32,
        k_sec=(3, 4, 12, 3),
        inc_sec=(16, 32, 32, 64),
        small=True,
        b=True,
    ),
    "dpn92": dict(
        out_channels=(3, 64, 336, 704, 1552, 2688),
        num_init_features=64,
        k_r=96,
        groups=32,
        k_sec=(3, 4, 20, 3),
        inc_sec=(16, 32, 24, 128),
    ),
    "dpn98": dict(
        out_channels=(3, 96, 336, 768, 1728, 2688),
        num_init_features=96,
        k_r=160,
        groups=40,
        k_sec=(3, 6, 20, 3),
        inc_sec=(16, 32, 32, 128),
    ),
    "dpn107": dict(
        out_channels=(3, 128, 376, 1152, 2432, 2688),
        num_init_features=128,
        k_r=200,
        groups=50,
        k_sec=(4, 8, 20, 3),
        inc_sec=(20, 64, 64, 128),
    ),
    "dpn131": dict(
        out_channels=(3, 128, 352, 832, 1984, 2688),
        num_init_features=128,
        k_r=160,
        groups=40,
        k_sec=(4, 8, 28, 3),
        inc_sec=(16, 32, 32, 128),
    ),
}

dpn_encoders = {
    name: {
        "encoder": DPNEncoder,
        "params": params,
        "pretrained_settings": {
            tag: {"repo_id": repo_id, "revision": revision, **_DPN_NORMALISATION}
            for tag, (repo_id, revision) in _WEIGHTS[name].items()
        },
        "spatial_dims": (2,),
    }
    for name, params in _ARCHITECTURES.items()
}
