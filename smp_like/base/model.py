"""SegmentationModel: encoder -> decoder -> segmentation head (+ optional classification head)."""

import functools
import inspect
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base.hub import HubMixin
from smp_like.base.initialization import initialize_decoder, initialize_head
from smp_like.base.strides import PAD_MODES, crop_to_shape, pad_to_stride

# Registered model classes by lower-cased name, for create_model / from_pretrained dispatch.
MODEL_REGISTRY: Dict[str, type] = {}


class SegmentationModel(nn.Module, HubMixin):
    """Base class of every segmentation architecture.

    Subclasses build ``self.encoder``, ``self.decoder``, ``self.segmentation_head`` and
    ``self.classification_head`` (None without ``aux_params``) and call ``self.initialize()``. The constructor
    arguments of the concrete class are recorded automatically for ``save_pretrained`` / ``from_pretrained``.

    Input sizes: an architecture whose decoder needs sizes divisible by its stride sets
    ``requires_divisible_input_shape = True``. Such a model pads the input at its end to a multiple of
    ``input_stride`` inside ``forward`` and crops the mask back (``input_padding`` = an ``F.pad`` mode, default
    ``"constant"``); with ``input_padding=None`` it raises SMP's error instead, naming the size to pad to.
    """

    requires_divisible_input_shape: bool = True
    # Decoders that resize every feature to its skip's size work with per-axis encoder strides (e.g. (1, 2, 2)).
    supports_anisotropic_strides: bool = False
    input_padding: Optional[str] = "constant"
    _model_config: Dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        MODEL_REGISTRY[cls.__name__.lower()] = cls
        original_init = cls.__dict__["__init__"]
        signature = inspect.signature(original_init)

        @functools.wraps(original_init)
        def init_and_record(self: "SegmentationModel", *args: Any, **kw: Any) -> None:
            original_init(self, *args, **kw)
            if type(self) is cls:  # only the most derived class records its arguments
                self._check_anisotropic_strides()
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = {}
                for name, value in list(bound.arguments.items())[1:]:
                    if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                        config.update(value)
                    else:
                        config[name] = value
                self._model_config = config

        cls.__init__ = init_and_record  # type: ignore[method-assign]

    def _check_anisotropic_strides(self) -> None:
        encoder = getattr(self, "encoder", None)
        reductions = getattr(encoder, "reductions", ())
        if not self.supports_anisotropic_strides and any(isinstance(r, tuple) for r in reductions):
            capable = sorted(c.__name__ for c in MODEL_REGISTRY.values() if c.supports_anisotropic_strides)
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

    @property
    def input_stride(self) -> Union[int, Tuple[int, ...]]:
        """Spatial sizes must be multiples of this for the decoder; padding targets it."""
        return self.output_stride

    @property
    def pads_input(self) -> bool:
        return self.requires_divisible_input_shape and self.input_padding is not None

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
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        dims = self.spatial_dims
        layout = "(N, C, H, W)" if dims == 2 else "(N, C, D, H, W)"
        if x.dim() != dims + 2:
            raise ValueError(
                f"input must have {dims + 2} dims {layout} for a model with spatial_dims={dims}, "
                f"got shape {tuple(x.shape)}"
            )
        expected = self.encoder.in_channels
        if x.shape[1] != expected:
            raise ValueError(f"input must have {expected} channels (in_channels={expected}), got shape {tuple(x.shape)}")
        if self.requires_divisible_input_shape and self.input_padding is None:
            stride = self.input_stride
            sizes = tuple(x.shape[2:])
            per_axis = (stride,) * len(sizes) if isinstance(stride, int) else tuple(stride)
            if any(s % a for s, a in zip(sizes, per_axis)):
                padded = tuple(-(-s // a) * a for s, a in zip(sizes, per_axis))
                raise ValueError(
                    f"Wrong input shape {sizes}: spatial sizes must be divisible by the output stride {stride}. "
                    f"Pad the input to {padded} (smp_like.pad_to_stride(x, {stride}) does it)."
                )

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Return ``mask`` of shape (N, classes, *spatial), or ``(mask, label)`` with ``aux_params``."""
        self.check_input_shape(x)
        if self.pads_input:
            x, spatial_shape = pad_to_stride(x, self.input_stride, mode=self.input_padding)
        features = self.encoder(x)
        decoder_output = self.decoder(features)
        masks = self.segmentation_head(decoder_output)
        if self.pads_input:
            masks = crop_to_shape(masks, spatial_shape)
        if self.classification_head is not None:
            labels = self.classification_head(features[-1])
            return masks, labels
        return masks

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Inference: switch to eval mode and run ``forward`` without gradients."""
        if self.training:
            self.eval()
        return self(x)

    def predict_padded(self, x: torch.Tensor, mode: str = "constant") -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        """``predict`` for any input size: pad to ``input_stride``, run, crop the mask back."""
        padded, shape = pad_to_stride(x, self.input_stride, mode=mode)
        out = self.predict(padded)
        if isinstance(out, tuple):
            return (crop_to_shape(out[0], shape),) + tuple(out[1:])
        return crop_to_shape(out, shape)

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
