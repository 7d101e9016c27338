"""StackedHourglass (Newell et al. 2016, with SLEAP's stride conventions) built from smp_like encoders and the
U-Net decoder; 2D and 3D.

Stack 1 is an encoder (any registered encoder or ``tu-<timm model>``) and a U-Net decoder that stops at
``output_stride``. Every later stack is a fresh encoder-decoder that works on the stride-``output_stride`` features
and reaches the same maximum stride. Each stack has its own 1x1 output head (intermediate supervision), and the
input of stack ``i + 1`` is ``x_i + F(h_i) + G(y_i)`` (Newell et al. 2016, Fig. 4; see
:class:`~smp_like.decoders.hourglass.decoder.StackReinjection`).
"""

from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.checks import argument_named
from smp_like.base.heads import SegmentationHead
from smp_like.base.initialization import initialize_decoder, initialize_head
from smp_like.base.model import SegmentationModel
from smp_like.decoders.hourglass.decoder import StackReinjection, TruncatedUnetDecoder, plan_strides
from smp_like.encoders import get_encoder

DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class StackedHourglass(SegmentationModel):
    """Stacked hourglass: ``num_stacks`` encoder-decoders, each with its own output.

    Strides (as in SLEAP): the stack-1 encoder reaches the *maximum stride* ``encoder.reductions[-1]``
    (``input_stride``); inputs of any size are padded at their end to a multiple of it inside ``forward`` and the
    outputs are cropped back (``input_padding=None`` raises instead). Outputs have stride ``output_stride``: size
    ``ceil(input size / output_stride)``. ``output_stride`` must be one of the encoder's feature strides below the
    maximum stride, and every later stack's encoder must reach ``max_stride / output_stride`` from its input;
    otherwise the constructor raises a ``ValueError`` naming the valid strides.

    Args:
        num_stacks: number of encoder-decoder stacks (>= 1).
        encoder_name: encoder of stack 1 (registered name or ``tu-<timm model>``).
        encoder_depth: number of stack-1 encoder stages.
        encoder_weights: pretrained tag for the stack-1 encoder (later stacks always start from random weights:
            their inputs are features, not images).
        stack_encoder_name: encoder of stacks 2..N (default: ``encoder_name``); a lightweight one keeps them cheap.
        decoder_channels: channels of each decoder block, deepest first, one per stage above ``output_stride``
            (default: the first entries of ``(256, 128, 64, 32, 16)``). The last entry is the width of the features
            passed between stacks.
        decoder_use_norm: norm of the decoder blocks (see :class:`~smp_like.decoders.unet.model.Unet`).
        decoder_interpolation: up-sampling mode of the decoder blocks.
        in_channels: input channels.
        classes: output channels of every stack (e.g. one heatmap per keypoint).
        activation: activation applied to every output (None: raw outputs).
        output_stride: stride of the outputs relative to the input (e.g. 1, 2 or 4).
        input_padding: ``F.pad`` mode for inputs not divisible by ``input_stride``, or None to raise instead.
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.

    Returns (forward):
        In training mode, the list of the ``num_stacks`` outputs (for intermediate supervision), first stack first;
        in eval mode, the last stack's output only. Each has shape (N, classes, *ceil(spatial / output_stride)).

    Raises:
        ValueError: for bad arguments, or strides that cannot match.
    """

    requires_divisible_input_shape = True
    # Its stacks re-inject intermediate outputs; no decoder blocks are named for a diffusion time embedding.
    accepts_time_embedding = False

    def __init__(
        self,
        num_stacks: int = 2,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = None,
        stack_encoder_name: Optional[str] = None,
        decoder_channels: Optional[Sequence[int]] = None,
        decoder_use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        decoder_interpolation: str = "nearest",
        in_channels: int = 3,
        classes: int = 1,
        activation: Optional[str] = None,
        output_stride: int = 4,
        input_padding: Optional[str] = "constant",
        spatial_dims: int = 2,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
    ):
        super().__init__()
        nd.check_spatial_dims(spatial_dims)
        for name, value in (("num_stacks", num_stacks), ("classes", classes), ("encoder_depth", encoder_depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        self.set_input_padding(input_padding)
        self.encoder = get_encoder(
            encoder_name, in_channels=in_channels, depth=encoder_depth, weights=encoder_weights, spatial_dims=spatial_dims
        )
        skip_level, max_stride = plan_strides(self.encoder.reductions, output_stride, who=f"encoder {encoder_name!r}")
        n_blocks = encoder_depth - skip_level
        if decoder_channels is None:
            decoder_channels = DEFAULT_DECODER_CHANNELS[:n_blocks]
        if not isinstance(decoder_channels, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in decoder_channels
        ):
            raise ValueError(f"`decoder_channels` must be a sequence of positive ints, got {decoder_channels!r}")
        decoder_channels = tuple(decoder_channels)
        if len(decoder_channels) != n_blocks:
            raise ValueError(
                f"`decoder_channels` must have {n_blocks} entries (encoder_depth={encoder_depth} stages, "
                f"{skip_level} of them below output_stride={output_stride}), got {decoder_channels}"
            )
        width = decoder_channels[-1]
        decoder_args = dict(use_norm=decoder_use_norm, interpolation_mode=decoder_interpolation, spatial_dims=spatial_dims)
        self.decoder = TruncatedUnetDecoder(self.encoder.out_channels, decoder_channels, skip_level, **decoder_args)

        stack_encoder_name = encoder_name if stack_encoder_name is None else stack_encoder_name
        self.stack_encoders = nn.ModuleList()
        self.stack_decoders = nn.ModuleList()
        for _ in range(num_stacks - 1):
            with argument_named("stack_encoder_name", "encoder_name"):
                encoder = get_encoder(
                    stack_encoder_name, in_channels=width, depth=n_blocks, weights=None, spatial_dims=spatial_dims
                )
            reached = encoder.reductions[-1]
            if not isinstance(reached, int) or output_stride * reached != max_stride:
                raise ValueError(
                    f"stack encoder {stack_encoder_name!r} with depth {n_blocks} reaches stride {reached} from its "
                    f"input at output_stride={output_stride}, i.e. {output_stride} x {reached}, but stack 1 reaches "
                    f"the maximum stride {max_stride}; every stack must reach the same maximum stride. Use a "
                    "stack_encoder_name whose stages each halve the size, or another output_stride."
                )
            self.stack_encoders.append(encoder)
            self.stack_decoders.append(TruncatedUnetDecoder(encoder.out_channels, decoder_channels, 0, **decoder_args))
        self.reinjections = nn.ModuleList(
            StackReinjection(width, classes, spatial_dims) for _ in range(num_stacks - 1)
        )
        # One 1x1 output head per stack (Newell et al. 2016: intermediate supervision).
        self.segmentation_head = nn.ModuleList(
            SegmentationHead(width, classes, kernel_size=1, activation=activation, spatial_dims=spatial_dims)
            for _ in range(num_stacks)
        )
        self.classification_head = None
        self._output_stride = output_stride
        self._max_stride = max_stride
        self.num_stacks = num_stacks
        self.name = f"hourglass-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    def initialize(self) -> None:
        initialize_decoder(self.decoder)
        initialize_decoder(self.stack_decoders)
        initialize_decoder(self.reinjections)
        initialize_head(self.segmentation_head)

    @property
    def output_stride(self) -> int:
        """Stride of the outputs relative to the input (SLEAP's ``output_stride``; not the encoder's)."""
        return self._output_stride

    @property
    def input_stride(self) -> int:
        """The maximum stride (SLEAP's ``maximum_stride``): inputs are padded to a multiple of it."""
        return self._max_stride

    @property
    def mask_scale(self) -> Fraction:
        return Fraction(1, self._output_stride)

    def _forward_stacks(self, x: torch.Tensor) -> List[torch.Tensor]:
        h = self.decoder(self.encoder(x))
        outputs = [self.segmentation_head[0](h)]
        stack_input = h
        for i in range(self.num_stacks - 1):
            stack_input = self.reinjections[i](stack_input, h, outputs[-1])
            h = self.stack_decoders[i](self.stack_encoders[i](stack_input))
            outputs.append(self.segmentation_head[i + 1](h))
        return outputs

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # type: ignore[override]
        """All stack outputs (a list, first stack first) in training mode; the last stack's output in eval mode."""
        self.check_input_shape(x)
        padded, spatial = self._pad_input(x)
        outputs = [self._crop_mask(y, padded, spatial) for y in self._forward_stacks(padded)]
        return outputs if self.training else outputs[-1]

    def predict_padded(self, x: torch.Tensor, mode: str = "constant") -> torch.Tensor:
        raise NotImplementedError(
            "StackedHourglass pads inputs itself (see `input_padding`); call `predict` with inputs of any size"
        )
