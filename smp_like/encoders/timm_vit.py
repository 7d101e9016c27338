"""Plain (non-hierarchical) timm vision transformers as encoders, two ways.

* :class:`TimmViTEncoder` — the encoder of :class:`~smp_like.DPT`, with SMP 0.6's constructor, attributes,
  ``state_dict`` keys (``model.*``: the whole timm model) and outputs: ``forward(x)`` returns ``(features,
  prefix_tokens)``, one channels-first token map per chosen block (all at the patch stride) and that block's
  prefix tokens (class / register tokens, or None). It serves any timm model with ``forward_intermediates``,
  hierarchical ones included, as SMP's does.
* :class:`TimmViTPyramidEncoder` — what ``get_encoder("tu-<plain ViT>")`` returns for every other architecture
  (Unet, FPN, ...). It turns the stride-16 token maps of a few blocks into a multi-scale pyramid with ViTDet's
  *simple feature pyramid* (Li et al. 2022, "Exploring Plain Vision Transformer Backbones for Object Detection",
  sec. 3): transposed convolutions up to strides 4 and 8, identity at 16, max-pooling down to 32, plus
  the 0-channel stride-2 placeholder every transformer encoder has. The pyramid's layers are new (randomly
  initialised) on top of the (pretrained) ViT.

Both create the ViT with timm's ``dynamic_img_size=True`` unless told otherwise, wherever the model supports it:
the position embeddings are then resampled to the input's token grid, so any (padded) input size works. SMP leaves
timm's default (fixed size for most ViTs); the weights are the same either way.

timm is imported lazily, inside the constructors.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base.exportable import dense_when_exporting
from smp_like.base.modules import ChannelLayerNorm
from smp_like.base.strides import crop_to_shape, pad_to_stride
from smp_like.encoders.timm_universal import TimmUniversalEncoder, _timm, is_plain_vit, resolve_timm_name

# Token stride the pyramid is laid out from (ViTDet's ViT-B/16): token maps of other strides are resampled to it
# when their stride is not a power of two (e.g. DINOv2's 14).
PYRAMID_BASE_STRIDE = 16
# Strides of the pyramid levels after the stride-2 placeholder (depth 5 -> all four).
PYRAMID_STRIDES = (4, 8, 16, 32)


def uniform_block_indices(num_blocks: int, count: int) -> List[int]:
    """``count`` block indices spread evenly over ``num_blocks``, ending at the last block (SMP's DPT default).

    Index ``k`` is ``floor((k + 1) * num_blocks / count) - 1``: for 12 blocks and 4 levels, (2, 5, 8, 11); for
    20 blocks, (4, 9, 14, 19). Computed in integers, so no rounding surprises.

    Raises:
        ValueError: if ``count`` is not in ``1..num_blocks``.
    """
    if not 1 <= count <= num_blocks:
        raise ValueError(
            f"Depth of the encoder cannot exceed the number of blocks in the model: got {count} levels, the model "
            f"has {num_blocks} blocks"
        )
    return [(k + 1) * num_blocks // count - 1 for k in range(count)]


def _normalise_indices(indices: Sequence[int], num_blocks: int, count: int, what: str) -> List[int]:
    if not isinstance(indices, (list, tuple)) or any(isinstance(i, bool) or not isinstance(i, int) for i in indices):
        raise ValueError(f"`{what}` must be a sequence of ints, got {indices!r}")
    indices = list(indices)
    if len(indices) != count:
        raise ValueError(
            f"Length of `{what}` must equal the encoder depth: got {len(indices)} indices {indices}, "
            f"encoder depth {count}"
        )
    for i in indices:
        if not -num_blocks <= i < num_blocks:
            raise ValueError(
                f"`{what}` must be in range [{-num_blocks}, {num_blocks}) because the model has {num_blocks} "
                f"blocks, got index {i}"
            )
    # Features always come shallow to deep, whatever order the indices were given in (as in SMP).
    return sorted(i % num_blocks for i in indices)


def _create_vit(name: str, pretrained: Union[bool, str, None], in_channels: int, kwargs: Dict[str, Any]) -> nn.Module:
    """``timm.create_model`` with weights resolved the smp_like way and ``dynamic_img_size=True`` by default."""
    timm = _timm()
    if pretrained is True:
        pretrained = "imagenet"
    elif pretrained is False:
        pretrained = None
    resolved = resolve_timm_name(name, pretrained)
    # As SMP: keyword arguments set to None are left to timm's defaults.
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    reserved = sorted({"pretrained", "in_chans", "features_only"} & set(kwargs))
    if reserved:
        raise ValueError(f"arguments {reserved} are set by smp_like; use encoder_weights / in_channels instead")
    common = dict(pretrained=pretrained is not None, in_chans=in_channels)
    if "dynamic_img_size" in kwargs:
        return timm.create_model(resolved, **common, **kwargs)
    try:
        return timm.create_model(resolved, **common, dynamic_img_size=True, **kwargs)
    except TypeError as err:  # the architecture has no dynamic_img_size option: keep its own input size rule
        if "dynamic_img_size" not in str(err):
            raise
    return timm.create_model(resolved, **common, **kwargs)


def _fixed_input_size(model: nn.Module) -> Optional[Tuple[int, int]]:
    """The (H, W) a model insists on (strict patch embedding, no dynamic size), or None when any size works."""
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is None or getattr(model, "dynamic_img_size", False):
        return None
    if getattr(patch_embed, "strict_img_size", False) and getattr(patch_embed, "img_size", None) is not None:
        return tuple(int(s) for s in patch_embed.img_size)  # type: ignore[return-value]
    return None


def _check_forward_intermediates(model: nn.Module, name: str) -> None:
    if not hasattr(model, "forward_intermediates"):
        raise ValueError(
            f"timm model {name!r} has no `forward_intermediates`, so its blocks' features cannot be taken; "
            "choose a model that has it (every timm ViT does)"
        )


class TimmViTEncoder(nn.Module):
    """A timm model read at chosen blocks, with prefix tokens: SMP 0.6's ``TimmViTEncoder`` (used by DPT).

    Args:
        name: timm model name, optionally with a pretrained tag (``"vit_base_patch16_224.augreg_in21k"``).
        pretrained: True / ``"imagenet"`` for timm's default (or the named) tag, a timm tag, or False / None for
            random weights.
        in_channels: input channels (timm adapts pretrained patch embeddings itself).
        depth: how many blocks to read (>= 1, at most the number of blocks).
        output_indices: which blocks (negative counts from the end); default :func:`uniform_block_indices`.
            Features come shallow to deep whatever the order given. A block may be listed twice (SMP then
            silently returns fewer features; smp_like returns it twice).
        **kwargs: passed to ``timm.create_model`` (None values dropped). ``dynamic_img_size`` defaults to True
            where the architecture has it.

    Attributes:
        out_channels: channels of each returned feature (list, as in SMP).
        output_strides: stride of each feature; ``output_stride`` is the largest.
        has_prefix_tokens: whether the model has class / register tokens.
        input_size, is_fixed_input_size: from timm's pretrained config, as in SMP.
        fixed_input_size: the (H, W) the model insists on, or None when any multiple of the patch size works.

    Returns (forward):
        ``(features, prefix_tokens)``: ``depth`` tensors (N, C, H/s, W/s) and, per feature, its prefix tokens
        (N, T, C) or None.

    Raises:
        ValueError: for an unknown model or tag, a bad depth / index, a model without ``forward_intermediates``.
    """

    def __init__(
        self,
        name: str,
        pretrained: Union[bool, str, None] = True,
        in_channels: int = 3,
        depth: int = 4,
        output_indices: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"`encoder_depth` must be an int >= 1, got {depth!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive int, got {in_channels!r}")
        self.model = _create_vit(name, pretrained, in_channels, kwargs)
        _check_forward_intermediates(self.model, name)
        info = list(self.model.feature_info)
        if output_indices is None:
            indices = uniform_block_indices(len(info), depth)
        else:
            indices = _normalise_indices(output_indices, len(info), depth, "encoder_output_indices")
        self.name = name
        self._depth = depth
        self._in_channels = in_channels
        self._output_indices = indices
        # timm returns each block once and in block order; _gather maps that back onto the (sorted) request.
        self._take = sorted(set(indices))
        self._gather = [self._take.index(i) for i in indices]
        self._num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        self.has_prefix_tokens = self._num_prefix_tokens > 0
        self.out_channels = [int(info[i]["num_chs"]) for i in indices]
        self.output_strides = [int(info[i]["reduction"]) for i in indices]
        self.output_stride = max(self.output_strides)
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        self.input_size = cfg.get("input_size")
        self.is_fixed_input_size = bool(cfg.get("fixed_input_size", False))
        self.fixed_input_size = _fixed_input_size(self.model)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def in_channels(self) -> int:
        return self._in_channels

    @property
    def spatial_dims(self) -> int:
        return 2

    @property
    def output_indices(self) -> List[int]:
        """The blocks read, shallow to deep (negative indices resolved)."""
        return list(self._output_indices)

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[Optional[torch.Tensor]]]:
        if self.has_prefix_tokens:
            pairs = self.model.forward_intermediates(
                x, indices=self._take, return_prefix_tokens=True, norm=False, stop_early=True,
                output_fmt="NCHW", intermediates_only=True,
            )
            # timm's NCHW maps are permuted views of (N, H, W, C) tokens: contiguous copies while exporting spare
            # torch.export stride guards it cannot prove for dynamic sizes (eager keeps SMP's exact rounding).
            features = [dense_when_exporting(pairs[j][0]) for j in self._gather]
            prefix_tokens: List[Optional[torch.Tensor]] = [pairs[j][1] for j in self._gather]
            return features, prefix_tokens
        maps = self.model.forward_intermediates(
            x, indices=self._take, norm=False, stop_early=True, output_fmt="NCHW", intermediates_only=True
        )
        return [dense_when_exporting(maps[j]) for j in self._gather], [None for _ in self._gather]


def _ceil_div(n: int, d: int) -> int:
    return (n + d - 1) // d


def _up_block(channels: int, steps: int) -> Tuple[nn.Module, int]:
    """``steps`` x2 transposed convs halving the channels, LayerNorm + GELU between them (Li et al. 2022, sec. 3)."""
    layers: List[nn.Module] = []
    for step in range(steps):
        if step > 0:
            layers += [ChannelLayerNorm(channels), nn.GELU()]
        out = max(1, channels // 2)
        layers.append(nn.ConvTranspose2d(channels, out, kernel_size=2, stride=2))
        channels = out
    return nn.Sequential(*layers), channels


class TimmViTPyramidEncoder(TimmUniversalEncoder):
    """A plain timm ViT as a multi-scale encoder: ViTDet's simple feature pyramid (Li et al. 2022, sec. 3).

    ``get_encoder("tu-<name>")`` (and so ``Unet("tu-vit_small_patch16_224")``) returns this for timm models whose
    features all have one stride (plain ViTs, DeiT, EVA, BEiT, DINOv2, ...). It keeps the encoder contract:
    ``depth + 1`` features ``[x, placeholder, f/4, f/8, f/16, f/32]``, each of size ``ceil(input / reduction)``.

    How the levels are made. Level ``k`` (stride 4, 8, 16, 32) reads its own block — blocks spread evenly over the
    depth as in DPT (Ranftl et al. 2021, sec. 3), shallow blocks for fine levels; ``output_indices`` chooses
    others, e.g. ``[-1] * 4`` for ViTDet's last-block-only pyramid. The token map (the ViT's final LayerNorm
    applied, as DINOv2 / Depth Anything read intermediate blocks) is then resampled from the token stride ``s``:
    ``log2(s / t)`` stride-2 transposed convs for finer strides ``t`` (LayerNorm + GELU between two of them),
    identity at ``s``, a ``t / s`` max-pool for coarser ones.

    Channels follow ViTDet: each x2 up-sampling halves them, so with embedding width ``D`` and 16-pixel patches
    the levels have ``(in_channels, 0, D/4, D/2, D, D)`` channels — a CNN-like pyramid rather than ``D`` at every
    level, which keeps the stride-4 level affordable (a ViT-B's 768 channels at 1/4 resolution would dominate
    the decoder's cost).

    Weights: the ViT is timm's (pretrained or not); the pyramid's transposed convs and LayerNorms are new and
    randomly initialised (PyTorch defaults), so train them. ``freeze_encoder()`` freezes them too; to fine-tune
    only the pyramid, set ``requires_grad`` back on ``encoder.pyramid.parameters()``.

    Inputs of any size: the input is padded at its end to a multiple of the patch size, the token grid is what
    ``dynamic_img_size=True`` (the default where timm has it) allows, and each level is cropped to
    ``ceil(input / stride)``. Token strides that are not powers of two (DINOv2's 14) are first resized
    (bilinearly) to the stride-16 grid. Models without a dynamic size accept only their ``img_size``.

    Args:
        name: timm model name, optionally with a pretrained tag.
        pretrained: None (random), ``"imagenet"`` (timm's default / named tag) or a timm tag.
        in_channels: input channels.
        depth: 2..5 (the pyramid starts at stride 4, as every transformer encoder).
        output_stride: 32, or 16 / 8: the coarser levels then stay at that stride (no pooling past it).
        spatial_dims: must be 2.
        **kwargs: ``output_indices`` (one block per level, ``depth - 1`` of them), else passed to
            ``timm.create_model`` (e.g. ``dynamic_img_size=False``, ``drop_path_rate``).

    Raises:
        ValueError: for 3D, a depth outside 2..5, bad ``output_indices``, an unknown model or tag.
    """

    # TimmUniversalEncoder("<plain ViT>") builds this class (see TimmUniversalEncoder.__new__).
    handles_timm_name = staticmethod(is_plain_vit)

    def __init__(
        self,
        name: str,
        pretrained: Optional[str] = None,
        in_channels: int = 3,
        depth: int = 5,
        output_stride: int = 32,
        spatial_dims: int = 2,
        **kwargs: Any,
    ):
        # TimmUniversalEncoder.__init__ builds a features_only model; this class builds its own, so it starts
        # from nn.Module's initialiser and keeps the rest of TimmUniversalEncoder's behaviour.
        nn.Module.__init__(self)
        if spatial_dims != 2:
            raise ValueError(
                f"timm encoders ('tu-{name}') are 2D only, got spatial_dims={spatial_dims!r}; for volumes use a "
                "native encoder that supports spatial_dims=3 (see smp_like.encoders.encoders entries)"
            )
        if isinstance(depth, bool) or not isinstance(depth, int) or not 2 <= depth <= 5:
            raise ValueError(
                f"`depth` (encoder_depth) of a plain-ViT encoder must be an int in 2..5 (its pyramid starts at "
                f"stride 4), got {depth!r}"
            )
        if output_stride not in (8, 16, 32):
            raise ValueError(f"`output_stride` must be one of (8, 16, 32), got {output_stride!r}")
        output_indices = kwargs.pop("output_indices", None)
        self.model = _create_vit(name, pretrained, in_channels, kwargs)
        _check_forward_intermediates(self.model, name)
        # The classifier is never used here (no SMP checkpoint to match): drop it, so no parameter idles.
        if hasattr(self.model, "reset_classifier"):
            self.model.reset_classifier(0)
        info = list(self.model.feature_info)
        token_strides = {int(i["reduction"]) for i in info}
        if len(token_strides) != 1:
            raise ValueError(
                f"timm model {name!r} is hierarchical (strides {sorted(token_strides)}), not a plain ViT"
            )
        patch = token_strides.pop()
        levels = depth - 1
        if output_indices is None:
            indices = uniform_block_indices(len(info), levels)
        else:
            indices = _normalise_indices(output_indices, len(info), levels, "output_indices")
        self._take = sorted(set(indices))
        self._gather = [self._take.index(i) for i in indices]
        self._output_indices = indices
        self._patch = patch
        # Power-of-two token strides build the pyramid from themselves; others are resized to stride 16 first.
        self._grid_stride = patch if patch & (patch - 1) == 0 else PYRAMID_BASE_STRIDE
        self._resize_tokens = self._grid_stride != patch
        widths = [int(info[i]["num_chs"]) for i in indices]
        blocks: List[nn.Module] = []
        channels: List[int] = []
        self._level_strides = [min(t, output_stride) for t in PYRAMID_STRIDES[:levels]]
        for width, stride in zip(widths, self._level_strides):
            block, out = self._level(width, self._grid_stride, stride)
            blocks.append(block)
            channels.append(out)
        self.pyramid = nn.ModuleList(blocks)
        self._out_channels = (in_channels, 0, *channels)
        self._reductions = tuple(min(r, output_stride) for r in (1, 2, *PYRAMID_STRIDES[:levels]))
        self._style = "vit_pyramid"
        self._channels_last = False
        self._name = name
        self._depth = depth
        self._in_channels = in_channels
        self._output_stride = output_stride
        self.fixed_input_size = _fixed_input_size(self.model)

    @staticmethod
    def _level(channels: int, source: int, target: int) -> Tuple[nn.Module, int]:
        if target == source:
            return nn.Identity(), channels
        if target < source:
            return _up_block(channels, int(math.log2(source // target)))
        factor = target // source
        return nn.MaxPool2d(kernel_size=factor, stride=factor, ceil_mode=True), channels

    @property
    def output_indices(self) -> List[int]:
        """The block read by each pyramid level, finest level first."""
        return list(self._output_indices)

    @property
    def patch_size(self) -> int:
        """Stride of the ViT's tokens; inputs are padded to a multiple of it."""
        return self._patch

    def _check_fixed_size(self, padded: Sequence[int]) -> None:
        if self.fixed_input_size is not None and tuple(padded) != tuple(self.fixed_input_size):
            raise ValueError(
                f"timm model {self._name!r} takes only {tuple(self.fixed_input_size)} inputs (no dynamic image "
                f"size), got {tuple(padded)} after padding to its patch size {self._patch}; resize the input, or "
                "use a model that supports dynamic_img_size"
            )

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        height, width = x.shape[2], x.shape[3]
        padded, _ = pad_to_stride(x, self._patch)
        if self.fixed_input_size is not None:
            self._check_fixed_size(padded.shape[2:])
        maps = self.model.forward_intermediates(
            padded, indices=self._take, norm=True, stop_early=True, output_fmt="NCHW", intermediates_only=True
        )
        # Ceilings as (n + s - 1) // s: exporters (ONNX) divide integers truncating, which breaks -(-n // s).
        features = [x, x.new_empty((x.shape[0], 0, (height + 1) // 2, (width + 1) // 2))]
        for j, block, stride in zip(self._gather, self.pyramid, self._level_strides):
            tokens = maps[j]
            if self._resize_tokens:
                grid = [_ceil_div(height, self._grid_stride), _ceil_div(width, self._grid_stride)]
                tokens = F.interpolate(tokens, size=grid, mode="bilinear", align_corners=False)
            level = block(tokens)
            features.append(crop_to_shape(level, (_ceil_div(height, stride), _ceil_div(width, stride))))
        return features
