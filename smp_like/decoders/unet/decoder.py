"""U-Net decoder (Ronneberger et al. 2015): upsample, concatenate the skip of the same stride, two convs.

The default block (:class:`UnetDecoderBlock`, ``decoder_block="conv"`` with ``decoder_skip="cat"``) is SMP's, with
SMP's state-dict keys and outputs. Flemme-style variants (:class:`FlemmeDecoderBlock`) let the decoder mirror the
encoder: ``decoder_block`` one of :data:`DECODER_BLOCKS` (``conv``, ``res_conv``, ``swin``, ``vmamba``) and
``decoder_skip`` one of :data:`DECODER_SKIPS` (``cat``, ``add``, ``none``; ``none`` ignores the encoder skips, the
decoder of an auto-encoder). See ``docs/unet_decoder_blocks.md``.
"""

import inspect
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.blocks import SkipFusion, build_block
from smp_like.base.modules import Attention, ConvNormReLU, parse_norm
from smp_like.base.norms import NORM_ALIASES

DECODER_BLOCKS = ("conv", "res_conv", "swin", "vmamba")
DECODER_SKIPS = ("cat", "add", "none")


class UnetCenterBlock(nn.Sequential):
    """Two 3x3 conv-norm-ReLU blocks (children 0, 1) on the deepest feature, before the first decoder block.

    SMP's Unet builds and applies it for VGG encoders (``add_center_block``); same keys (``decoder.center.*``)
    and outputs, so SMP's VGG-Unet checkpoints load.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        spatial_dims: int = 2,
    ):
        super().__init__(
            ConvNormReLU(in_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims),
            ConvNormReLU(out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims),
        )


class UnetDecoderBlock(nn.Module):
    """Resize to the skip's size, concatenate it, attend, conv-norm-relu twice, attend."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        attention_type: Optional[str] = None,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        merged = in_channels + skip_channels
        self.conv1 = ConvNormReLU(merged, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims)
        self.attention1 = Attention(attention_type, in_channels=merged, spatial_dims=spatial_dims)
        self.conv2 = ConvNormReLU(out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims)
        self.attention2 = Attention(attention_type, in_channels=out_channels, spatial_dims=spatial_dims)

    def forward(
        self,
        x: torch.Tensor,
        size: List[int],
        skip: Optional[torch.Tensor] = None,
        time_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if time_emb is not None:  # a diffusion model injects into this block through a hook instead
            raise ValueError("UnetDecoderBlock does not take an embedding")
        # Two statements: the up-sampled input is freed (returned from _merge) before conv2 runs, as in SMP's
        # block (a nested conv2(conv1(x)) held it to the end: +8 MiB of forward peak for a resnet34 Unet at
        # 2x256x256, counted by benchmarks/tensor_memory.py).
        x = self._merge(x, size, skip)
        return self._refine(x)

    # Gradient checkpointing recomputes the two halves one at a time (see base/checkpointing.py).
    checkpoint_segments = ("_merge", "_refine")

    def _merge(self, x: torch.Tensor, size: List[int], skip: Optional[torch.Tensor]) -> torch.Tensor:
        """Resize, concatenate the skip, attend, first conv-norm-relu."""
        # Resizing to the skip's exact size (rather than x2) is what lets any input size through.
        x = F.interpolate(x, size=size, mode=self.interpolation_mode)
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], dim=1))
        return self.conv1(x)

    def _refine(self, x: torch.Tensor) -> torch.Tensor:
        """Second conv-norm-relu, attend."""
        return self.attention2(self.conv2(x))


# decoder_use_norm names -> ConvBlock norm names (for decoder_block="res_conv").
# Arguments the decoder sets itself; never accepted from decoder_block_kwargs (time goes through the model's
# time_embedding_dim, which hooks every block).
_RESERVED_KWARGS = ("in_channels", "out_channels", "channels", "spatial_dims", "stride", "time_embedding_dim",
                    "time_injection", "self", "kwargs")


def _parameter_names(function: Any) -> List[str]:
    return [
        name
        for name, p in inspect.signature(function).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in _RESERVED_KWARGS
    ]


def decoder_block_options(decoder_block: str) -> Tuple[str, ...]:
    """The keys ``decoder_block_kwargs`` accepts for ``decoder_block`` (empty for ``"conv"``).

    Raises:
        ValueError: for an unknown ``decoder_block``.
    """
    check_decoder_options(decoder_block, "cat", None)
    if decoder_block == "conv":
        return ()
    if decoder_block == "res_conv":
        from smp_like.base.blocks import ConvBlock

        return tuple(_parameter_names(ConvBlock.__init__))
    if decoder_block == "swin":
        from smp_like.encoders.transformer_blocks import SwinStage

        return tuple(_parameter_names(SwinStage.__init__))
    from smp_like.encoders._vmamba_blocks import VMambaStage, check_block_kwargs

    names = _parameter_names(VMambaStage.__init__) + _parameter_names(check_block_kwargs)
    return tuple(dict.fromkeys(names))


def check_decoder_options(decoder_block: Any, decoder_skip: Any, decoder_block_kwargs: Any) -> Dict[str, Any]:
    """Validate ``decoder_block``, ``decoder_skip`` and the *type* of ``decoder_block_kwargs``; return the kwargs.

    Raises:
        ValueError: naming the argument, the value and the valid choices.
        TypeError: if ``decoder_block_kwargs`` is neither None nor a dict with string keys.
    """
    if not isinstance(decoder_block, str) or decoder_block not in DECODER_BLOCKS:
        raise ValueError(f"`decoder_block` must be one of {DECODER_BLOCKS}, got {decoder_block!r}")
    if not isinstance(decoder_skip, str) or decoder_skip not in DECODER_SKIPS:
        raise ValueError(f"`decoder_skip` must be one of {DECODER_SKIPS}, got {decoder_skip!r}")
    if decoder_block_kwargs is None:
        return {}
    if not isinstance(decoder_block_kwargs, dict) or not all(isinstance(k, str) for k in decoder_block_kwargs):
        raise TypeError(
            f"`decoder_block_kwargs` must be None or a dict of keyword arguments, got {decoder_block_kwargs!r}"
        )
    return dict(decoder_block_kwargs)


def check_decoder_block_kwargs(decoder_block: str, kwargs: Dict[str, Any]) -> None:
    """Raise ValueError naming the keys of ``kwargs`` that ``decoder_block`` does not take, and the valid ones."""
    valid = decoder_block_options(decoder_block)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        shown = valid or "(none: the conv block is set by decoder_use_norm / decoder_attention_type)"
        raise ValueError(
            f"`decoder_block_kwargs` has {unknown}, which decoder_block={decoder_block!r} does not take; "
            f"valid keys: {shown}"
        )


def _conv_block_norm(use_norm: Union[bool, str, Dict[str, Any]]) -> Optional[str]:
    spec = parse_norm(use_norm)
    kind = spec.pop("type")
    if kind not in NORM_ALIASES or spec:
        raise ValueError(
            f"decoder_block='res_conv' maps `decoder_use_norm` to one of {tuple(NORM_ALIASES)} (no extra "
            f"parameters), got {use_norm!r}; pass decoder_block_kwargs={{'norm': ...}} instead"
        )
    return kind  # SMP's name: an alias in make_norm_layer's vocabulary


class FlemmeDecoderBlock(nn.Module):
    """A decoder block mirroring a Flemme encoder: resize, fuse the skip, a conv / residual / Swin / VMamba body.

    ``forward(x, size, skip)``: ``x`` is resized (``interpolation_mode``) to ``size`` (the skip's size, so any input
    size works), fused with ``skip`` by :class:`~smp_like.base.blocks.SkipFusion` (``cat``; ``add`` with a 1x1
    projection of the skip when widths differ; ``none`` ignores it — as does every mode for a block without skip or
    with a 0-channel placeholder skip), passed through ``attention1`` (``decoder_attention_type``), the body, and
    ``attention2``. Bodies:

    * ``conv``: conv-norm-ReLU twice (as :class:`UnetDecoderBlock`, ``use_norm``);
    * ``res_conv``: :func:`~smp_like.base.blocks.build_block` ``("res_conv", fused, out)`` (He et al. 2016),
      norm from ``use_norm`` unless ``block_kwargs`` sets ``norm``;
    * ``swin``: a 1x1 conv projection to ``out_channels`` then
      :class:`~smp_like.encoders.transformer_blocks.SwinStage` (Liu et al. 2021) at ``out_channels``;
    * ``vmamba``: the same projection then :class:`~smp_like.encoders._vmamba_blocks.VMambaStage` (Liu et al. 2024).

    Args:
        in_channels: channels of ``x``.
        skip_channels: channels of the skip (0: no skip).
        out_channels: output channels.
        decoder_block: one of :data:`DECODER_BLOCKS`.
        decoder_skip: one of :data:`DECODER_SKIPS`.
        use_norm: ``decoder_use_norm`` (``conv`` and ``res_conv`` bodies).
        attention_type: None or ``"scse"``, before and after the body.
        interpolation_mode: up-sampling mode.
        spatial_dims: 2 or 3.
        block_kwargs: options of the body (see :func:`decoder_block_options`), e.g. ``num_heads``, ``window_size``,
            ``num_blocks`` for ``swin``; ``state_channel``, ``num_blocks`` for ``vmamba``; ``norm``, ``activation``,
            ``order`` for ``res_conv``.

    Raises:
        ValueError: for bad options (named).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        decoder_block: str = "conv",
        decoder_skip: str = "cat",
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        attention_type: Optional[str] = None,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
        block_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        block_kwargs = check_decoder_options(decoder_block, decoder_skip, block_kwargs)
        check_decoder_block_kwargs(decoder_block, block_kwargs)
        self.interpolation_mode = nd.interpolation_mode(interpolation_mode, spatial_dims)
        self.decoder_block, self.decoder_skip = decoder_block, decoder_skip
        # A missing or 0-channel (placeholder) skip has nothing to fuse, whatever the mode.
        mode = decoder_skip if skip_channels > 0 else "none"
        self.fusion = SkipFusion(mode, in_channels, skip_channels if mode != "none" else None, spatial_dims)
        fused = self.fusion.out_channels
        self.attention1 = Attention(attention_type, in_channels=fused, spatial_dims=spatial_dims)
        if decoder_block == "conv":
            self.body: nn.Module = nn.Sequential(
                ConvNormReLU(fused, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims),
                ConvNormReLU(
                    out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims
                ),
            )
        elif decoder_block == "res_conv":
            options = dict(block_kwargs)
            if "norm" not in options:
                options["norm"] = _conv_block_norm(use_norm)
            self.body = build_block("res_conv", fused, out_channels, spatial_dims, **options)
        else:
            conv = nd.conv_type(spatial_dims)
            projection = conv(fused, out_channels, 1) if fused != out_channels else nn.Identity()
            if decoder_block == "swin":
                from smp_like.encoders.transformer_blocks import SwinStage

                stage: nn.Module = SwinStage(out_channels, spatial_dims, **block_kwargs)
            else:
                from smp_like.encoders._vmamba_blocks import VMambaStage

                stage = VMambaStage(out_channels, spatial_dims, **block_kwargs)
            self.body = nn.Sequential(projection, stage)
        self.attention2 = Attention(attention_type, in_channels=out_channels, spatial_dims=spatial_dims)

    @property
    def takes_time_embedding(self) -> bool:
        """The res_conv, swin and vmamba bodies inject an embedding inside every block (the conv body does not)."""
        return self.decoder_block != "conv"

    def _time_aware_body(self) -> nn.Module:
        if self.decoder_block == "conv":
            raise ValueError(
                "decoder_block='conv' takes no embedding inside its body; a diffusion model injects after the block"
            )
        # res_conv: the block itself; swin / vmamba: the stage after the 1x1 projection.
        return self.body if self.decoder_block == "res_conv" else self.body[1]

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Add an embedding injection to every block of the body (see :mod:`smp_like.base.embedding`).

        Raises:
            ValueError: for ``decoder_block="conv"``.
        """
        self._time_aware_body().enable_time_embedding(embedding_dim, mode)

    def forward(
        self,
        x: torch.Tensor,
        size: List[int],
        skip: Optional[torch.Tensor] = None,
        time_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode=self.interpolation_mode)
        if self.fusion.mode != "none":
            x = self.fusion(x, skip)
        x = self.attention1(x)
        if time_emb is None:
            x = self.body(x)
        elif self.decoder_block == "res_conv":
            x = self.body(x, time_emb)
        else:
            x = self.body[1](self.body[0](x), time_emb)
        return self.attention2(x)


class UnetDecoder(nn.Module):
    """Stack of :class:`UnetDecoderBlock`, deepest feature first, one block per encoder stage.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        decoder_channels: output channels of each block; its length is the number of blocks.
        n_blocks: number of blocks (must equal ``len(decoder_channels)``; kept for SMP compatibility).
        use_norm, attention_type, interpolation_mode: per-block options (see :class:`UnetDecoderBlock`).
        spatial_dims: 2 or 3.
        decoder_block: one of :data:`DECODER_BLOCKS`; with ``decoder_skip="cat"``, ``"conv"`` builds SMP's
            :class:`UnetDecoderBlock`, anything else a :class:`FlemmeDecoderBlock`.
        decoder_skip: one of :data:`DECODER_SKIPS`.
        block_kwargs: options of the block body (see :func:`decoder_block_options`).
        add_center_block: apply a :class:`UnetCenterBlock` to the deepest feature first (SMP does for VGG).

    Raises:
        ValueError: if the number of blocks and ``decoder_channels`` disagree, or for a bad block option.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("blocks.*",)
    # Python-side only: TorchScript would otherwise compile the property.
    __jit_unused_properties__ = ["blocks_take_time_embedding"]

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        n_blocks: int = 5,
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        attention_type: Optional[str] = None,
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
        decoder_block: str = "conv",
        decoder_skip: str = "cat",
        block_kwargs: Optional[Dict[str, Any]] = None,
        add_center_block: bool = False,
    ):
        super().__init__()
        block_kwargs = check_decoder_options(decoder_block, decoder_skip, block_kwargs)
        check_decoder_block_kwargs(decoder_block, block_kwargs)
        if n_blocks != len(decoder_channels):
            raise ValueError(
                f"`decoder_channels` must have one entry per encoder stage (encoder_depth={n_blocks}), "
                f"got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        # Deepest first; the stride-1 feature (the input itself) is never a skip.
        deep_to_shallow = list(encoder_channels[1:])[::-1]
        in_channels = [deep_to_shallow[0]] + list(decoder_channels[:-1])
        skip_channels = deep_to_shallow[1:] + [0]
        self.center = (
            UnetCenterBlock(deep_to_shallow[0], deep_to_shallow[0], use_norm, spatial_dims)
            if add_center_block
            else nn.Identity()
        )
        if decoder_block == "conv" and decoder_skip == "cat":
            # SMP's block: same modules and state-dict keys as segmentation_models_pytorch.
            self.blocks = nn.ModuleList(
                UnetDecoderBlock(i, s, o, use_norm, attention_type, interpolation_mode, spatial_dims)
                for i, s, o in zip(in_channels, skip_channels, decoder_channels)
            )
        else:
            self.blocks = nn.ModuleList(
                FlemmeDecoderBlock(
                    i, s, o, decoder_block, decoder_skip, use_norm, attention_type, interpolation_mode,
                    spatial_dims, block_kwargs,
                )
                for i, s, o in zip(in_channels, skip_channels, decoder_channels)
            )

    @property
    def blocks_take_time_embedding(self) -> bool:
        """True when every block injects a time embedding inside its body (decoder_block res_conv, swin or vmamba);
        SMP's conv blocks get it from the model's hooks after each block instead."""
        return all(getattr(block, "takes_time_embedding", False) for block in self.blocks)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Give every block's body its embedding injections; ``forward(features, time_emb)`` then passes them on.

        Raises:
            ValueError: when a block cannot take one (SMP's conv block).
        """
        if not self.blocks_take_time_embedding:
            raise ValueError("UnetDecoder with decoder_block='conv' takes no time embedding inside its blocks")
        for block in self.blocks:
            block.enable_time_embedding(embedding_dim, mode)
        self.time_embedding_enabled = True

    @torch.jit.unused
    def _check_time_emb(self, time_emb: Optional[torch.Tensor]) -> None:
        if time_emb is not None and not getattr(self, "time_embedding_enabled", False):
            raise ValueError("UnetDecoder does not take a time embedding (call enable_time_embedding first)")

    def forward(self, features: List[torch.Tensor], time_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_time_emb(time_emb)
        return self._run(features, keep_stages=False, time_emb=time_emb)[0]

    def forward_stages(
        self, features: List[torch.Tensor], time_emb: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Return the output and every block's output, coarse to fine (for deep supervision)."""
        self._check_time_emb(time_emb)
        return self._run(features, keep_stages=True, time_emb=time_emb)

    def _run(
        self, features: List[torch.Tensor], keep_stages: bool, time_emb: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        sizes = [list(f.shape[2:]) for f in features][::-1]
        deep_to_shallow = features[1:][::-1]
        skips = deep_to_shallow[1:]
        x = self.center(deep_to_shallow[0])
        # Only kept when asked: holding every block's output would raise the peak memory of a plain forward.
        stages: List[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            skip = skips[i] if i < len(skips) else None
            x = block(x, sizes[i + 1], skip, time_emb)
            if keep_stages:
                stages.append(x)
        return x, stages
