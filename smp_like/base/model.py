"""SegmentationModel: encoder -> decoder -> segmentation head (+ optional classification head)."""

import contextlib
from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base.checks import check_image_batch
from smp_like.base.hub import HubMixin
from smp_like.base.initialization import initialize_decoder, initialize_head
from smp_like.base.registry import MODEL_REGISTRY, classes_with
from smp_like.base.strides import PAD_MODES, crop_to_shape, pad_to_size, padded_size
from smp_like.base.time_conditioning import attach_time_embedding, decoder_time_scope

__all__ = ["MODEL_REGISTRY", "SegmentationModel", "check_image_batch"]


def _store_divisibility_declaration(cls: type) -> None:
    """Move a subclass's SMP-style ``requires_divisible_input_shape = <bool>`` class attribute to
    ``decoder_needs_divisible_input``, so the instance property keeps SMP's meaning (see SegmentationModel)."""
    declared = cls.__dict__.get("requires_divisible_input_shape")
    if isinstance(declared, bool):
        delattr(cls, "requires_divisible_input_shape")
        cls.decoder_needs_divisible_input = declared


class _DivisibleInputFlag:
    """SMP's ``requires_divisible_input_shape``: whether ``forward`` raises on spatial sizes not divisible by
    ``input_stride``.

    On an instance: True only for an architecture that needs divisible sizes with ``input_padding=None``; while
    padding is on, any size is accepted, so False. On the class (no padding setting to consult): whether the
    architecture needs divisible sizes, as SMP's class attribute says. Assigning it declares that need.
    """

    def __get__(self, model: Any, owner: type) -> bool:
        if model is None:
            return bool(owner.decoder_needs_divisible_input)
        return bool(model.decoder_needs_divisible_input and model.input_padding is None)

    def __set__(self, model: Any, value: bool) -> None:
        model.decoder_needs_divisible_input = bool(value)


class SegmentationModel(nn.Module, HubMixin):
    """Base class of every segmentation architecture.

    Subclasses build ``self.encoder``, ``self.decoder``, ``self.segmentation_head`` and
    ``self.classification_head`` (None without ``aux_params``) and call ``self.initialize()``. The constructor
    arguments of the concrete class are recorded automatically for ``save_pretrained`` / ``from_pretrained``.

    Input sizes: an architecture whose decoder needs sizes divisible by its stride declares it, SMP's way, with
    the class attribute ``requires_divisible_input_shape = True`` (stored as ``decoder_needs_divisible_input``).
    Such a model pads the input at its end to a multiple of ``input_stride`` inside ``forward`` and crops the
    mask back (``input_padding`` = an ``F.pad`` mode, default ``"constant"``); with ``input_padding=None`` it
    raises SMP's error instead, naming the size to pad to. On an instance, ``requires_divisible_input_shape``
    keeps SMP's meaning, "forward raises on sizes not divisible by the stride": False while padding is on.
    """

    _abstract_model = True  # not itself registered; SegmentationModel.from_pretrained loads any saved class
    decoder_needs_divisible_input: bool = True
    # SMP's flag: whether forward raises on sizes not divisible by input_stride (False while padding is on).
    requires_divisible_input_shape = _DivisibleInputFlag()
    # Python-side bookkeeping that TorchScript need not (and cannot) compile; see __prepare_scriptable__.
    __jit_unused_properties__ = [
        "input_stride", "pads_input", "output_stride", "spatial_dims", "mask_scale", "min_input_size",
        "requires_divisible_input_shape",
    ]
    # Decoders that resize every feature to its skip's size work with per-axis encoder strides (e.g. (1, 2, 2)).
    supports_anisotropic_strides: bool = False
    input_padding: Optional[str] = "constant"
    # Saved settings that a constructor without such an argument receives after the build via set_<name>.
    _settings_after_build: Tuple[str, ...] = ("input_padding",)
    # Whether ``time_embedding_dim`` can turn the architecture into a diffusion eps-model (see
    # base/time_conditioning.py); the decoder must also name its ``time_injection_points`` or have blocks that take
    # the vector (``blocks_take_time_embedding``). Encoders say whether their own blocks take it with
    # ``supports_time_embedding``.
    accepts_time_embedding: bool = True
    _model_config: Dict[str, Any]
    # Set by __prepare_scriptable__ (the annotations give TorchScript their types, even for empty lists).
    _scripted_pad_stride: List[int]
    _scripted_pad_mode: str
    _scripted_min_size: int
    _scripted_scale: List[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _store_divisibility_declaration(cls)

    def _post_init(self) -> None:
        """Runs after the outermost constructor (see HubMixin): check the encoder's strides fit the decoder."""
        self._check_anisotropic_strides()

    def enable_time_embedding(self, time_embedding_dim: Optional[int], time_injection: str = "gate_bias") -> None:
        """Make the model a time-conditioned network (a diffusion eps-model); every architecture's constructor
        calls this last with its ``time_embedding_dim`` / ``time_injection`` arguments.

        With ``time_embedding_dim=None`` nothing changes (``time_injection`` must then stay at its default).
        Otherwise the model gets a time MLP and injections in its decoder (and encoder) blocks, see
        :func:`~smp_like.base.time_conditioning.attach_time_embedding`; for a decoder whose injections are forward
        hooks, one dry forward pass at the smallest accepted input measures the blocks' output widths.

        Raises:
            ValueError: for ``time_injection`` without ``time_embedding_dim``, a bad mode or width, or an
                architecture that cannot take a time embedding.
        """
        if time_embedding_dim is None:
            if time_injection != "gate_bias":
                raise ValueError("`time_injection` needs `time_embedding_dim` (the width of the time embedding)")
            return
        self._check_anisotropic_strides()
        attach_time_embedding(self, time_embedding_dim, time_injection)

    def _check_anisotropic_strides(self) -> None:
        encoder = getattr(self, "encoder", None)
        reductions = getattr(encoder, "reductions", ())
        if not self.supports_anisotropic_strides and any(isinstance(r, tuple) for r in reductions):
            capable = classes_with("supports_anisotropic_strides")
            raise ValueError(
                f"{type(self).__name__} needs the same encoder stride on every axis, but the encoder was built with "
                f"anisotropic `strides` (reductions {reductions}); architectures that accept them: {capable}"
            )

    def initialize(self) -> None:
        initialize_decoder(self.decoder)
        initialize_head(self.segmentation_head)
        if self.classification_head is not None:
            initialize_head(self.classification_head)

    def set_input_padding(self, input_padding: Optional[str]) -> None:
        """Choose how inputs of any size are handled: an ``F.pad`` mode, or None for SMP's strict check.

        Raises:
            ValueError: for a mode not in :data:`~smp_like.base.strides.PAD_MODES`.
        """
        if input_padding is not None and input_padding not in PAD_MODES:
            raise ValueError(f"`input_padding` must be None or one of {PAD_MODES}, got {input_padding!r}")
        self.input_padding = input_padding

    def _config_overrides(self) -> Dict[str, Any]:
        """Save the padding chosen last (``set_input_padding`` after construction included), for architectures
        whose constructor takes ``input_padding``; at its default it stays out of config.json as before."""
        overrides = dict(super()._config_overrides())
        recorded = getattr(self, "_model_config", {})
        # A constructor argument: save the current value. Otherwise only a change from the class default is
        # saved (applied by from_pretrained with set_input_padding, see ``_settings_after_build``), so the
        # config.json of an SMP architecture at its defaults gains no key.
        if "input_padding" in recorded or self.input_padding != type(self).input_padding:
            overrides["input_padding"] = self.input_padding
        return overrides

    @property
    def input_stride(self) -> Union[int, Tuple[int, ...]]:
        """Spatial sizes must be multiples of this for the decoder; padding targets it."""
        return self.output_stride

    @property
    def pads_input(self) -> bool:
        return self.decoder_needs_divisible_input and self.input_padding is not None

    @property
    def output_stride(self) -> Union[int, Tuple[int, ...]]:
        """Stride of the deepest encoder feature (per axis for anisotropic encoders): sizes divisible by it need
        no padding."""
        return self.encoder.output_stride

    @property
    def spatial_dims(self) -> int:
        return getattr(self.encoder, "spatial_dims", 2)

    def check_input_shape(self, x: torch.Tensor) -> None:
        """Validate rank, channel count and (if required) divisibility of the spatial sizes.

        Raises:
            TypeError: if ``x`` is not a tensor.
            ValueError: naming what is wrong and, for sizes, the size to pad to.
        """
        check_image_batch(x, self.spatial_dims, self.encoder.in_channels, dtype=self._input_dtype(x))
        if self.requires_divisible_input_shape:
            stride = self.input_stride
            sizes = tuple(x.shape[2:])
            per_axis = (stride,) * len(sizes) if isinstance(stride, int) else tuple(stride)
            if any(s % a for s, a in zip(sizes, per_axis)):
                padded = tuple(-(-s // a) * a for s, a in zip(sizes, per_axis))
                raise ValueError(
                    f"Wrong input shape {sizes}: spatial sizes must be divisible by the output stride {stride}. "
                    f"Pad the input to {padded} (smp_like.pad_to_stride(x, {stride}) does it)."
                )

    def _input_dtype(self, x: torch.Tensor) -> Optional[torch.dtype]:
        """The dtype an input must have: that of the weights, or None (any float) under autocast, which casts."""
        # The meta device (used to size a model before allocating it) has no autocast.
        if isinstance(x, torch.Tensor) and x.device.type != "meta" and torch.is_autocast_enabled(x.device.type):
            return None
        parameter = next(self.parameters(), None)
        return None if parameter is None or not parameter.is_floating_point() else parameter.dtype

    @property
    def mask_scale(self) -> Fraction:
        """Mask size over (padded) input size: 1, unless the head's fixed ``upsampling`` says otherwise (e.g. SMP's
        FPN at encoder depth 3 returns a mask 4x its input)."""
        return Fraction(1)

    @property
    def min_input_size(self) -> int:
        """Smallest spatial size the decoder handles; smaller inputs are padded up to it (1 = no minimum)."""
        return 1

    def forward(
        self, x: torch.Tensor, timesteps: Optional[torch.Tensor] = None, embedding: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Return ``mask`` of shape (N, classes, *spatial · mask_scale), or ``(mask, label)`` with ``aux_params``.

        A model built with ``time_embedding_dim`` (a diffusion eps-model) needs ``timesteps`` (N,), and may take
        an extra conditioning ``embedding`` (N, time_embedding_dim) that is added to the time embedding.
        """
        if torch.jit.is_scripting():
            return self._forward_scripted(x)
        else:
            return self._forward_explained(x, timesteps, embedding)

    @torch.jit.unused
    def _forward_explained(
        self, x: torch.Tensor, timesteps: Optional[torch.Tensor] = None, embedding: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """``_forward_eager`` with torch's BatchNorm error for a batch of one explained (TorchScript cannot
        compile try/except, hence its own unused method)."""
        try:
            return self._forward_eager(x, timesteps, embedding)
        except ValueError as error:
            raise self._explain_batch_norm_error(error, x) from error

    @torch.jit.unused
    def _explain_batch_norm_error(self, error: ValueError, x: torch.Tensor) -> ValueError:
        """torch's terse BatchNorm error for a batch of one meeting a 1x1 map, with its cause and remedies (as
        SMP's DeepLabV3 words it); any other error unchanged."""
        message = str(error)
        if not message.startswith("Expected more than 1 value per channel when training, got input size"):
            return error
        return ValueError(
            f"{message}. {type(self).__name__} in training mode got a batch of {x.shape[0]} with spatial size "
            f"{tuple(x.shape[2:])}: a BatchNorm layer met a 1x1 feature map (the deepest features are the input "
            f"size / output stride {self.output_stride}, and pooling branches reduce to 1x1), where one sample "
            "gives no batch statistics. Use a batch of at least 2 samples, a larger input, or call model.eval() "
            "for inference."
        )

    def __prepare_scriptable__(self) -> "SegmentationModel":
        """Freeze the Python-side size bookkeeping into plain attributes TorchScript can read (torch.jit.script
        calls this first); change ``input_padding`` before scripting, not after."""
        if self._modules.get("time_embedding") is not None:
            raise ValueError(
                f"torch.jit.script does not support {type(self).__name__} built with `time_embedding_dim` (its "
                "injections are forward hooks); use torch.compile or torch.export"
            )
        if self.pads_input:
            stride = self.input_stride
            self._scripted_pad_stride = [stride] * self.spatial_dims if isinstance(stride, int) else list(stride)
        else:
            self._scripted_pad_stride = []
        self._scripted_pad_mode = self.input_padding or "constant"
        self._scripted_min_size = self.min_input_size
        self._scripted_scale = [self.mask_scale.numerator, self.mask_scale.denominator]
        return self

    def _forward_scripted(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` under TorchScript: the same padding, cropping and outputs, without the Python-side checks."""
        spatial: List[int] = x.shape[2:]
        padding = len(self._scripted_pad_stride) > 0
        if padding:
            flat: List[int] = []
            for axis in range(len(spatial) - 1, -1, -1):
                stride = self._scripted_pad_stride[axis]
                target = max(-(-spatial[axis] // stride) * stride, self._scripted_min_size)
                flat += [0, target - spatial[axis]]
            if self._scripted_pad_mode == "constant":
                x = F.pad(x, flat, mode="constant", value=0.0)
            else:
                x = F.pad(x, flat, mode=self._scripted_pad_mode)
        features = self.encoder(x)
        masks = self.segmentation_head(self.decoder(features))
        if padding:
            numerator, denominator = self._scripted_scale[0], self._scripted_scale[1]
            first = masks.dim() - len(spatial)
            for axis in range(len(spatial)):
                size = -(-spatial[axis] * numerator // denominator)
                masks = masks.narrow(first + axis, 0, min(size, masks.shape[first + axis]))
        if self.classification_head is not None:
            return masks, self.classification_head(features[-1])
        return masks

    @torch.jit.unused
    def _time_vector(
        self, x: torch.Tensor, timesteps: Optional[torch.Tensor], embedding: Optional[torch.Tensor]
    ) -> Optional[torch.Tensor]:
        """The (N, time_embedding_dim) vector every block receives, or None for a model without time input."""
        time_embedding = self._modules.get("time_embedding")
        if time_embedding is None:
            if timesteps is not None or embedding is not None:
                raise ValueError(
                    f"{type(self).__name__} was built without `time_embedding_dim`, so it takes no `timesteps` or "
                    "`embedding`; build it with time_embedding_dim=<width> to make a diffusion eps-model"
                )
            return None
        if timesteps is None:
            raise ValueError(
                f"{type(self).__name__} was built with time_embedding_dim={time_embedding.dim}: call it as "
                "model(x, timesteps) with one timestep per sample"
            )
        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(x.shape[0])
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"`timesteps` must have shape ({x.shape[0]},) (one per sample), got {tuple(timesteps.shape)}")
        vector = time_embedding(timesteps.to(x.device))
        if embedding is not None:
            if embedding.shape != vector.shape:
                raise ValueError(
                    f"`embedding` must have shape {tuple(vector.shape)} (N, time_embedding_dim), got "
                    f"{tuple(embedding.shape)}"
                )
            vector = vector + embedding.to(vector.dtype)
        return vector.to(x.dtype)

    @torch.jit.unused
    def _encode(self, x: torch.Tensor, time_emb: Optional[torch.Tensor]) -> Any:
        """Run the encoder, giving it the time vector when it takes one (time-aware encoders)."""
        if time_emb is not None and getattr(self.encoder, "supports_time_embedding", False):
            return self.encoder(x, time_emb)
        return self.encoder(x)

    @torch.jit.unused
    def _decode(self, features: Any, time_emb: Optional[torch.Tensor], stages: bool = False) -> Any:
        """``decoder(features)`` (or ``decoder.forward_stages``) for this call's time vector: as an argument for a
        decoder whose blocks take it, else seen by the injection hooks for the duration of this call only."""
        run = self.decoder.forward_stages if stages else self.decoder
        if time_emb is None:
            return run(features)
        if getattr(self.decoder, "time_embedding_enabled", False):
            return run(features, time_emb)
        with self._decoder_time(time_emb):
            return run(features)

    @torch.jit.unused
    def _decoder_time(self, time_emb: Optional[torch.Tensor]) -> Any:
        """A context in which the decoder's injection hooks see ``time_emb``, for this call (and thread) only."""
        if time_emb is None or self._modules.get("time_injections") is None:
            return contextlib.nullcontext()
        return decoder_time_scope(self.time_injections, time_emb)

    @torch.jit.unused
    def _returns_side_outputs(self) -> bool:
        """Whether ``forward`` returns ``(main, side outputs)`` (deep supervision in training mode; see
        :class:`~smp_like.base.deep_supervision.DeepSupervisionMixin`). False here."""
        return False

    @torch.jit.unused
    def _forward_eager(
        self, x: torch.Tensor, timesteps: Optional[torch.Tensor] = None, embedding: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        self.check_input_shape(x)
        time_emb = self._time_vector(x, timesteps, embedding)
        padded, spatial = self._pad_input(x)
        features = self._encode(padded, time_emb)
        sides = self._returns_side_outputs()
        if sides:
            decoded, stages = self._decode(features, time_emb, stages=True)
        else:
            decoded = self._decode(features, time_emb)
        masks = self._crop_mask(self.segmentation_head(decoded), padded, spatial)
        main: Any = masks
        if self.classification_head is not None:
            main = (masks, self.classification_head(features[-1]))
        if sides:
            return main, self.side_outputs(stages, spatial)  # type: ignore[attr-defined]
        return main

    def _pad_input(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
        """Pad ``x`` at its end to a multiple of ``input_stride`` and to at least ``min_input_size`` per axis
        (when the model pads), returning the padded input and the original spatial shape.

        Raises:
            ValueError: in strict mode (``input_padding=None``), for inputs smaller than ``min_input_size``.
        """
        spatial = list(x.shape[2:])
        min_size = self.min_input_size
        if min_size > 1 and self.input_padding is None and any(s < min_size for s in spatial):
            raise ValueError(
                f"Wrong input shape {tuple(spatial)}: {type(self).__name__} needs spatial sizes of at least "
                f"{min_size} here. Pad the input to {tuple(max(s, min_size) for s in spatial)}."
            )
        if not self.pads_input:
            return x, spatial
        return self._pad_to_stride(x, self.input_padding), spatial

    def _pad_to_stride(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        """Pad ``x`` at its end to a multiple of ``input_stride`` and to at least ``min_input_size`` per axis: the
        one padding rule of ``forward`` and ``predict_padded`` (crop with :meth:`_crop_to_input`)."""
        spatial = list(x.shape[2:])
        min_size = self.min_input_size
        target = list(padded_size(spatial, self.input_stride))
        # A branch on sizes (a shape guard when traced): an exported graph covers either inputs below the
        # minimum or inputs above it, whose size arithmetic then stays simple enough for torch.export.
        if min_size > 1 and any(t < min_size for t in target):
            target = [max(t, min_size) for t in target]
        return pad_to_size(x, target, mode)

    def _crop_mask(self, masks: torch.Tensor, padded: torch.Tensor, spatial: List[int]) -> torch.Tensor:
        """Keep the part of the mask that covers the unpadded input: ``ceil(size · mask_scale)`` per axis."""
        if not self.pads_input:
            return masks
        return self._crop_to_input(masks, list(padded.shape[2:]), spatial)

    def _crop_to_input(self, masks: torch.Tensor, padded: List[int], spatial: List[int]) -> torch.Tensor:
        """Crop a mask computed for an input padded to ``padded`` back to the part that covers the original
        ``spatial`` size, at the model's ``mask_scale``: ``ceil(size · mask_scale)`` per axis.

        Raises:
            RuntimeError: if the mask is not ``mask_scale`` x the padded size (a wrong ``mask_scale``).
        """
        scale = self.mask_scale
        tracing = torch.compiler.is_compiling()
        # Trailing axes: an argmax activation drops the channel axis.
        mask_spatial = list(masks.shape[masks.dim() - len(spatial):])
        if not tracing:
            expected = [p * scale.numerator // scale.denominator for p in padded]
            if mask_spatial != expected:
                raise RuntimeError(
                    f"{type(self).__name__}: mask size {tuple(mask_spatial)} is not {scale} x the padded input "
                    f"size {tuple(padded)}; the model's `mask_scale` must say how its head up-samples"
                )
        if scale == 1:
            # The input size itself: a crop size free of the network's size arithmetic, which torch.export
            # could not simplify.
            out = spatial
        else:
            # ceil covers a partial output pixel; sym_min keeps it inside the mask for fractional up-sampling.
            out = [
                torch.sym_min(-(-s * scale.numerator // scale.denominator), m) for s, m in zip(spatial, mask_spatial)
            ]
        if tracing or mask_spatial != list(out):
            masks = crop_to_shape(masks, out)
        return masks

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Inference: switch to eval mode and run ``forward`` without gradients."""
        if self.training:
            self.eval()
        return self(x)

    def predict_padded(self, x: torch.Tensor, mode: str = "constant") -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """``predict`` for any input size: pad to ``input_stride`` (and ``min_input_size``) with ``mode``, run, and
        crop the mask back to ``ceil(size · mask_scale)`` per axis, the same rule ``forward`` uses when it pads.

        Raises:
            ValueError: for a ``mode`` not in :data:`~smp_like.base.strides.PAD_MODES` or a bad input.
        """
        if mode not in PAD_MODES:
            raise ValueError(f"`mode` must be one of {PAD_MODES}, got {mode!r}")
        check_image_batch(x, self.spatial_dims, self.encoder.in_channels)
        spatial = list(x.shape[2:])
        padded = self._pad_to_stride(x, mode)
        out = self.predict(padded)
        if isinstance(out, tuple):
            return (self._crop_to_input(out[0], list(padded.shape[2:]), spatial),) + tuple(out[1:])
        return self._crop_to_input(out, list(padded.shape[2:]), spatial)

    def freeze_encoder(self) -> None:
        """Stop training the encoder: no gradients, and its norm layers keep their running statistics."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad = False
        self._encoder_frozen = True
        self._set_encoder_norm_eval()

    def unfreeze_encoder(self) -> None:
        """Undo :meth:`freeze_encoder`."""
        for parameter in self.encoder.parameters():
            parameter.requires_grad = True
        self._encoder_frozen = False
        self.encoder.train(self.training)

    def _set_encoder_norm_eval(self) -> None:
        for module in self.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.eval()

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if getattr(self, "_encoder_frozen", False):
            self._set_encoder_norm_eval()
        return self
