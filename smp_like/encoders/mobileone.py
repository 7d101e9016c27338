"""MobileOne encoders (Vasu et al. 2023, "MobileOne: An Improved One millisecond Mobile Backbone"), 2D only.

Every block is trained with several parallel branches (``num_conv_branches`` k x k conv+BN, a 1x1 conv+BN
"scale" branch and a BN "skip" branch) and re-parameterised for inference into one k x k convolution with bias
(structural re-parameterisation, Ding et al. 2021, RepVGG): BN folds into its conv, the 1x1 kernel is padded
to k x k, the identity becomes a centred one-hot kernel, and branch kernels and biases add up.

Module names follow SMP's ``mobileone_s*`` encoders (``stageN.i.rbr_conv.j.conv``, ``rbr_scale``,
``rbr_skip``, ``reparam_conv``, ``se.reduce``), so SMP checkpoints and the ``smp-hub/mobileone_s*.imagenet``
weights load in the training form, and SMP's inference-form checkpoints in the inference form. An
inference-form encoder also accepts a training-form checkpoint: the branches are fused while loading.
"""

import copy
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.conv import _ConvNd

from smp_like.encoders._base import EncoderMixin
from smp_like.encoders._utils import patch_first_conv
from smp_like.encoders._normalization import IMAGENET_SETTINGS


class SEBlock(nn.Module):
    """Squeeze-and-Excitation channel gate (Hu et al. 2018) as used by MobileOne-S4.

    Args:
        in_channels: channels of the gated tensor.
        rd_ratio: squeeze ratio of the hidden layer.
    """

    def __init__(self, in_channels: int, rd_ratio: float = 0.0625):
        super().__init__()
        hidden = int(in_channels * rd_ratio)
        self.reduce = nn.Conv2d(in_channels, hidden, kernel_size=1, bias=True)
        self.expand = nn.Conv2d(hidden, in_channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.avg_pool2d(
            x, kernel_size=x.shape[2:]
        )  # global average over the whole map, whatever its size
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(gate))))
        return x * gate


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
) -> nn.Sequential:
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=False,
    )
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels)))


def _fold_batchnorm(
    kernel: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of ``BN(conv(x, kernel))`` as one convolution (eval-mode BN is affine per channel)."""
    scale = gamma / torch.sqrt(var + eps)
    return kernel * scale.reshape(-1, 1, 1, 1), beta - mean * scale


def _identity_kernel(channels: int, groups: int, kernel_size: int, like: torch.Tensor) -> torch.Tensor:
    """A grouped k x k kernel whose convolution is the identity (one-hot at the centre of its own channel)."""
    per_group = channels // groups
    kernel = torch.zeros(
        (channels, per_group, kernel_size, kernel_size), dtype=like.dtype, device=like.device
    )
    centre = kernel_size // 2
    kernel[torch.arange(channels), torch.arange(channels) % per_group, centre, centre] = 1
    return kernel


class MobileOneBlock(nn.Module):
    """One MobileOne block: over-parameterised branches at training time, a single conv at inference time.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: size of the main kernels (3 for depthwise blocks, 1 for pointwise blocks).
        stride: convolution stride.
        padding: padding of the main kernels.
        dilation: dilation of the main kernels.
        groups: convolution groups (``in_channels`` for depthwise blocks).
        inference_mode: build the re-parameterised single-conv form directly.
        use_se: gate the output with a Squeeze-and-Excitation block.
        num_conv_branches: parallel k x k conv+BN branches (the paper's over-parameterisation factor k).
    """

    # BatchNorm eps of the training-form branches, used when a training-form checkpoint is folded on load.
    branch_eps = 1e-5

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        inference_mode: bool = False,
        use_se: bool = False,
        num_conv_branches: int = 1,
    ):
        super().__init__()
        if num_conv_branches < 1:
            raise ValueError(f"`num_conv_branches` must be >= 1, got {num_conv_branches!r}")
        self.inference_mode = inference_mode
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.num_conv_branches = num_conv_branches
        self.se = SEBlock(out_channels) if use_se else nn.Identity()
        self.activation = nn.ReLU()
        if inference_mode:
            self.reparam_conv: nn.Module = nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=True,
            )
            return
        self.reparam_conv = nn.Identity()
        # The skip branch exists only where the block keeps the shape.
        self.rbr_skip = nn.BatchNorm2d(in_channels) if out_channels == in_channels and stride == 1 else None
        self.rbr_conv = nn.ModuleList(
            _conv_bn(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
            for _ in range(num_conv_branches)
        )
        self.rbr_scale = (
            _conv_bn(in_channels, out_channels, 1, stride, 0, 1, groups) if kernel_size > 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inference_mode:
            return self.activation(self.se(self.reparam_conv(x)))
        out = 0
        if self.rbr_scale is not None:
            out = self.rbr_scale(x)
        if self.rbr_skip is not None:
            out = out + self.rbr_skip(x)
        for branch in self.rbr_conv:
            out = out + branch(x)
        return self.activation(self.se(out))

    def _fused_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single conv equal (in eval mode) to the sum of all branches."""
        return _fuse_branches(
            {name: tensor for name, tensor in self.state_dict().items() if name.startswith("rbr_")},
            kernel_size=self.kernel_size,
            groups=self.groups,
            eps=self.rbr_conv[0].bn.eps,
        )

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every branch into ``reparam_conv`` in place and drop the branches (no-op if already done)."""
        if self.inference_mode:
            return
        kernel, bias = self._fused_kernel_bias()
        template: nn.Conv2d = self.rbr_conv[0].conv  # carries any dilation applied by make_dilated
        conv = nn.Conv2d(
            template.in_channels,
            template.out_channels,
            template.kernel_size,
            stride=template.stride,
            padding=template.padding,
            dilation=template.dilation,
            groups=template.groups,
            bias=True,
            device=kernel.device,
            dtype=kernel.dtype,
        )
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.reparam_conv = conv
        for name in ("rbr_conv", "rbr_scale", "rbr_skip"):
            delattr(self, name)
        self.inference_mode = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # An inference-form block also takes a training-form checkpoint: fold its branches while loading.
        if self.inference_mode and prefix + "reparam_conv.weight" not in state_dict:
            branch_keys = [k for k in state_dict if k.startswith(prefix + "rbr_")]
            if any(k.startswith(prefix + "rbr_conv.") for k in branch_keys):
                branches = {k[len(prefix) :]: state_dict.pop(k) for k in branch_keys}
                kernel, bias = _fuse_branches(
                    branches, kernel_size=self.kernel_size, groups=self.groups, eps=self.branch_eps
                )
                state_dict[prefix + "reparam_conv.weight"] = kernel
                state_dict[prefix + "reparam_conv.bias"] = bias
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _fuse_branches(
    branches: Dict[str, torch.Tensor], kernel_size: int, groups: int, eps: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fuse a block's training-form tensors (keys ``rbr_conv.i.conv.weight``, ``rbr_scale.bn.bias``, ...).

    Returns:
        The kernel (k x k) and bias of one convolution equal to the sum of the branches in eval mode.
    """

    def bn(prefix: str) -> Tuple[torch.Tensor, ...]:
        return tuple(branches[f"{prefix}.{n}"] for n in ("running_mean", "running_var", "weight", "bias"))

    kernel = bias = None
    index = 0
    while f"rbr_conv.{index}.conv.weight" in branches:
        k, b = _fold_batchnorm(branches[f"rbr_conv.{index}.conv.weight"], *bn(f"rbr_conv.{index}.bn"), eps)
        kernel, bias = (k, b) if kernel is None else (kernel + k, bias + b)
        index += 1
    if kernel is None:
        raise ValueError(
            "a MobileOne block's training-form weights must contain at least one rbr_conv branch"
        )
    if "rbr_scale.conv.weight" in branches:
        k, b = _fold_batchnorm(branches["rbr_scale.conv.weight"], *bn("rbr_scale.bn"), eps)
        pad = kernel_size // 2
        kernel, bias = kernel + F.pad(k, [pad, pad, pad, pad]), bias + b
    if "rbr_skip.weight" in branches:
        identity = _identity_kernel(kernel.shape[0], groups, kernel_size, like=kernel)
        mean, var, gamma, beta = (
            branches[f"rbr_skip.{n}"] for n in ("running_mean", "running_var", "weight", "bias")
        )
        k, b = _fold_batchnorm(identity, mean, var, gamma, beta, eps)
        kernel, bias = kernel + k, bias + b
    return kernel, bias


class MobileOneEncoder(nn.Module, EncoderMixin):
    """MobileOne feature extractor returning ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``.

    Stage 0 is one 3x3 block (stride 2); stages 1-4 repeat a depthwise 3x3 block followed by a pointwise 1x1
    block, the first pair of each stage with stride 2 (Vasu et al. 2023).

    Args:
        out_channels: channels of the six possible features (input first).
        num_blocks_per_stage: depthwise/pointwise pairs in stages 1-4.
        width_multipliers: width of stages 1-4 relative to (64, 128, 256, 512).
        inference_mode: build the re-parameterised (single conv per block) form directly.
        use_se: Squeeze-and-Excitation in the last half of stage 3 and in stage 4 (MobileOne-S4).
        depth: number of down-sampling stages to run, 1..5.
        in_channels: input channels of the stem.
        output_stride: 32, or 16 / 8 to dilate the last stages.
        num_conv_branches: parallel k x k branches per block in stages 1-4 (the stem always has one).

    Raises:
        ValueError: for a depth outside 1..5 or wrong width multipliers.
    """

    _ignored_pretrained_prefixes = ("linear.", "gap.")

    def __init__(
        self,
        out_channels: Sequence[int],
        num_blocks_per_stage: Sequence[int] = (2, 8, 10, 1),
        width_multipliers: Optional[Sequence[float]] = None,
        inference_mode: bool = False,
        use_se: bool = False,
        depth: int = 5,
        in_channels: int = 3,
        output_stride: int = 32,
        num_conv_branches: int = 1,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a MobileOne encoder must be an int in 1..5, got {depth!r}"
            )
        if width_multipliers is None or len(width_multipliers) != 4:
            raise ValueError(
                f"`width_multipliers` must give 4 values (stages 1-4), got {width_multipliers!r}"
            )
        if len(num_blocks_per_stage) != 4:
            raise ValueError(f"`num_blocks_per_stage` must give 4 values, got {num_blocks_per_stage!r}")
        self._out_channels = tuple(out_channels)
        self._depth = depth
        self._in_channels = in_channels
        self.inference_mode = inference_mode
        self.use_se = use_se
        self.num_conv_branches = num_conv_branches

        self.in_planes = min(64, int(64 * width_multipliers[0]))
        self.stage0 = MobileOneBlock(
            in_channels, self.in_planes, kernel_size=3, stride=2, padding=1, inference_mode=inference_mode
        )
        # S4 puts SE in the last half of stage 3 and everywhere in stage 4.
        se_blocks = (
            0,
            0,
            num_blocks_per_stage[2] // 2 if use_se else 0,
            num_blocks_per_stage[3] if use_se else 0,
        )
        for index, (base, blocks) in enumerate(zip((64, 128, 256, 512), num_blocks_per_stage)):
            stage = self._make_stage(int(base * width_multipliers[index]), blocks, se_blocks[index])
            self.add_module(f"stage{index + 1}", stage)
        if output_stride != 32:
            self.make_dilated(output_stride)

    def _make_stage(self, planes: int, num_blocks: int, num_se_blocks: int) -> nn.Sequential:
        blocks = []
        for index in range(num_blocks):
            stride = 2 if index == 0 else 1
            options = dict(
                inference_mode=self.inference_mode,
                use_se=index >= num_blocks - num_se_blocks,
                num_conv_branches=self.num_conv_branches,
            )
            blocks.append(
                MobileOneBlock(
                    self.in_planes,
                    self.in_planes,
                    3,
                    stride=stride,
                    padding=1,
                    groups=self.in_planes,
                    **options,
                )
            )
            blocks.append(MobileOneBlock(self.in_planes, planes, 1, **options))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def get_stages(self) -> Dict[int, nn.Module]:
        return {1: self.stage0, 2: self.stage1, 3: self.stage2, 4: self.stage3, 5: self.stage4}

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Adapt every stem convolution (the k x k and the 1x1 branch alike) to ``in_channels``."""
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive int, got {in_channels!r}")
        if in_channels == self._in_channels:
            return
        previous = self._in_channels
        for module in list(self.stage0.modules()):
            if isinstance(module, _ConvNd) and module.in_channels == previous:
                patch_first_conv(module, previous, in_channels, pretrained=pretrained)
        self.stage0.in_channels = in_channels
        self._in_channels = in_channels
        if self._out_channels[0] == previous:
            self._out_channels = (in_channels, *self._out_channels[1:])

    def reparameterize(self) -> "MobileOneEncoder":
        """Switch every block to the inference form in place (same outputs in eval mode); returns ``self``."""
        for module in self.modules():
            if isinstance(module, MobileOneBlock):
                module.reparameterize()
        self.inference_mode = True
        return self

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = [x]
        for stage in (self.stage0, self.stage1, self.stage2, self.stage3, self.stage4)[: self._depth]:
            x = stage(x)
            features.append(x)
        return features


def reparameterize_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every MobileOne block in the inference form; ``model`` is left unchanged."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, MobileOneBlock):
            module.reparameterize()
        elif isinstance(module, MobileOneEncoder):
            module.inference_mode = True
    return model


_IMAGENET = IMAGENET_SETTINGS

# SMP's Hub repositories (smp-hub/<name>.imagenet) and their pinned revisions.
_REVISIONS = {
    "mobileone_s0": "f52815cf0ad29278a9860c9cd5fabf19f904bedf",
    "mobileone_s1": "5707a98852b762cd8e0c43b5c8c729cd28496677",
    "mobileone_s2": "ddc3db8fa40d271902c7a8c95cee6691f617d551",
    "mobileone_s3": "da89b84a91b7400c366c358bfbf8dd0b2fa4dde2",
    "mobileone_s4": "16197c55d599076b6aae67a83d3b3f70c31b097c",
}

# Width multipliers of MobileOne-S0..S4 (Vasu et al. 2023); S0 is trained with 4 branches, S4 adds SE.
_ARCHITECTURES = {
    "mobileone_s0": dict(
        out_channels=(3, 48, 48, 128, 256, 1024), width_multipliers=(0.75, 1.0, 1.0, 2.0), num_conv_branches=4
    ),
    "mobileone_s1": dict(out_channels=(3, 64, 96, 192, 512, 1280), width_multipliers=(1.5, 1.5, 2.0, 2.5)),
    "mobileone_s2": dict(out_channels=(3, 64, 96, 256, 640, 2048), width_multipliers=(1.5, 2.0, 2.5, 4.0)),
    "mobileone_s3": dict(out_channels=(3, 64, 128, 320, 768, 2048), width_multipliers=(2.0, 2.5, 3.0, 4.0)),
    "mobileone_s4": dict(
        out_channels=(3, 64, 192, 448, 896, 2048), width_multipliers=(3.0, 3.5, 3.5, 4.0), use_se=True
    ),
}

mobileone_encoders: Dict[str, Dict[str, Any]] = {
    name: {
        "encoder": MobileOneEncoder,
        "params": dict(params, inference_mode=False),
        "pretrained_settings": {
            "imagenet": {"repo_id": f"smp-hub/{name}.imagenet", "revision": _REVISIONS[name], **_IMAGENET}
        },
        "spatial_dims": (2,),
    }
    for name, params in _ARCHITECTURES.items()
}
