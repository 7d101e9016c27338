"""EncoderMixin: the contract every encoder satisfies (see DESIGN.md, "Contracts").

Subclasses set ``_out_channels`` (input channels first), ``_depth`` and ``_in_channels`` and implement
``forward(x) -> list[Tensor]`` returning ``depth + 1`` features, finest first. That is all SMP asks of a custom
encoder, so SMP-style encoders work unchanged; the mixin derives the rest (reductions, output stride, dilation,
input-channel adaptation).
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.encoders._utils import StageStrides, patch_first_conv, replace_strides_with_dilation

# Stages dilated (and their rates) to reach an output stride, as in DeepLab: keep stride 2 in earlier stages,
# replace it by dilation in the last one (16) or two (8).
_DILATION_PLAN = {16: {5: 2}, 8: {4: 2, 5: 4}}


class EncoderMixin:
    """Adds the smp_like encoder contract to an ``nn.Module`` that sets ``_out_channels``, ``_depth``, ``_in_channels``."""

    _output_stride: int = 32
    _spatial_dims: int = 2
    # Key prefixes of classification checkpoints that the encoder deliberately does not have (e.g. the fc layer).
    _ignored_pretrained_prefixes: Tuple[str, ...] = ()
    supports_time_embedding: bool = False
    # Python-side bookkeeping that TorchScript need not (and cannot) compile.
    __jit_unused_properties__ = ["out_channels", "depth", "in_channels", "spatial_dims", "reductions", "output_stride"]
    # Per-stage, per-axis down-sampling factors when an encoder was built with anisotropic ``strides``
    # (see ``normalize_stage_strides``); None means factor 2 on every axis of every stage.
    _stage_strides: Optional[StageStrides] = None
    # (who, why) for encoders that cannot be dilated (as SMP refuses them): make_dilated raises, naming both.
    _dilation_refusal: Optional[Tuple[str, str]] = None
    _dilated_stages: Tuple[int, ...] = ()

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each returned feature, input first; length ``depth + 1``."""
        return tuple(self._out_channels[: self._depth + 1])

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def in_channels(self) -> int:
        return self._in_channels

    @property
    def spatial_dims(self) -> int:
        return getattr(self, "_spatial_dims", 2)

    @property
    def reductions(self) -> Tuple[Union[int, Tuple[int, ...]], ...]:
        """Stride of each returned feature relative to the input (1, 2, 4, ... capped by dilation).

        Encoders built with anisotropic ``strides`` give one tuple per feature (one stride per spatial axis).
        """
        custom = getattr(self, "_reductions", None)
        if custom is not None:
            return tuple(custom[: self._depth + 1])
        stage_strides = self._stage_strides
        if stage_strides is None or all(set(s) == {2} for s in stage_strides):
            return tuple(min(2**i, self._output_stride) for i in range(self._depth + 1))
        current = (1,) * len(stage_strides[0])
        per_axis = [current]
        for stage in range(1, self._depth + 1):
            if stage not in self._dilated_stages:
                current = tuple(c * s for c, s in zip(current, stage_strides[stage - 1]))
            per_axis.append(current)
        if all(len(set(r)) == 1 for r in per_axis):
            return tuple(r[0] for r in per_axis)
        return tuple(per_axis)

    @property
    def output_stride(self) -> Union[int, Tuple[int, ...]]:
        """Stride of the deepest returned feature (a per-axis tuple for anisotropic ``strides``)."""
        return self.reductions[-1]

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Adapt the first convolution to ``in_channels`` input channels.

        Pretrained kernels are kept meaningful: 1 channel sums the RGB kernels, ``n`` channels repeat them
        cyclically and scale by ``3 / n`` (so a constant image gives the same activations); random kernels
        are re-initialised.
        """
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive int, got {in_channels!r}")
        if in_channels == self._in_channels:
            return
        previous = self._in_channels
        self._in_channels = in_channels
        if self._out_channels[0] == previous:
            self._out_channels = (in_channels, *tuple(self._out_channels)[1:])
        patch_first_conv(self, previous, in_channels, pretrained=pretrained)

    def get_stages(self) -> Dict[int, Union[nn.Module, Sequence[nn.Module]]]:
        """Map stage index (1..5) to the module(s) that reduce the resolution at that stage."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its stages, so it cannot be dilated")

    def make_dilated(self, output_stride: int) -> None:
        """Replace the last strides by dilation so the deepest feature has stride ``output_stride`` (8 or 16)."""
        if self._dilation_refusal is not None:
            if output_stride == 32:
                return
            who, why = self._dilation_refusal
            raise ValueError(
                f"`output_stride`={output_stride!r} (dilated mode) is not supported by {who}: {why}; "
                "use output_stride=32"
            )
        if output_stride not in _DILATION_PLAN:
            raise ValueError(f"`output_stride` must be one of (8, 16, 32), got {output_stride!r}")
        stages = self.get_stages()
        for stage_index, rate in _DILATION_PLAN[output_stride].items():
            if stage_index in stages:
                replace_strides_with_dilation(stages[stage_index], rate)
        self._output_stride = output_stride
        self._dilated_stages = tuple(_DILATION_PLAN[output_stride])

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Give every block an :class:`~smp_like.base.embedding.EmbeddingInjection` of width ``embedding_dim``, so
        ``forward(x, time_emb)`` injects ``time_emb`` (N, embedding_dim) by ``mode`` (``gate_bias``, ``gate``,
        ``bias`` or ``cross_attention``). Time-aware encoders (``supports_time_embedding = True``) override this.

        Raises:
            ValueError: for an encoder that cannot take a time embedding.
        """
        raise ValueError(
            f"{type(self).__name__} cannot take a time embedding (supports_time_embedding=False); a diffusion model "
            "built on it injects the embedding into its decoder blocks only"
        )

    def _check_time_embedding(self, time_emb: Optional[torch.Tensor]) -> None:
        # TorchScript sees no class attributes: scripted encoders that take embeddings override this method.
        if torch.jit.is_scripting():
            if time_emb is not None:
                raise ValueError("this scripted encoder does not take a time embedding")
        elif time_emb is not None and not self.supports_time_embedding:
            raise ValueError(f"{type(self).__name__} does not take a time embedding (supports_time_embedding=False)")

