"""MeshNet: a stack of dilated convolutions at full resolution (Fedorov et al. 2017, arXiv:1612.00940).

Fedorov, Johnson, Damaraju, Ozerin, Calhoun & Plis, "End-to-end learning of brain tissue segmentation from
imperfect labeling", IJCNN 2017: seven 3x3x3 convolution layers of 21 channels with dilations 1, 1, 1, 2, 4, 8, 1
(each conv -> batch norm -> ReLU -> dropout), then a 1x1x1 classification layer; receptive field 37 per axis. No
pooling, so every layer keeps the input's size (any size, no padding needed). The stacked dilations follow Yu &
Koltun 2016 (arXiv:1511.07122). See docs/meshnet_atrousnet.md.
"""

from collections.abc import Callable, Sequence
from typing import Any, Optional

from smp_like.base import nd
from smp_like.base.checks import argument_named
from smp_like.base.model import SegmentationModel
from smp_like.decoders.meshnet.backbone import (
    DilatedStackEncoder,
    build_dilated_model,
    check_dilations,
    check_encoder_arguments,
)

# Fedorov et al. 2017, Table I: layers 1-7, dilation of each 3x3x3 convolution.
MESHNET_DILATIONS = (1, 1, 1, 2, 4, 8, 1)


class MeshNet(SegmentationModel):
    """Stacked dilated convolutions (MeshNet), 2D or 3D, output of the input's size.

    Layer ``i`` is ``convs_per_layer`` convolutions (``kernel_size``, dilation ``dilations[i]``, ``channels``
    wide), each followed by ``norm``, ``layer_activation`` and channel ``dropout``; a ``head_kernel_size``
    convolution (1x1 by default, as in the paper) maps to ``classes``.

    Receptive field (per axis, :attr:`receptive_field`): ``1 + convs_per_layer · (kernel_size - 1) · Σ dilations``
    — 37 for the default schedule (Fedorov et al.); each extra layer of dilation ``d`` adds ``(kernel_size - 1) · d``.

    Args:
        encoder_name: must be None: MeshNet is its own backbone.
        encoder_weights: must be None (no pretrained weights).
        in_channels: input channels.
        classes: output channels of the mask.
        channels: width of every layer (21 in the paper).
        dilations: the dilation schedule, one entry per layer (default ``(1, 1, 1, 2, 4, 8, 1)``). cassetta's
            MeshNet defaults to ``(1, 2, 4, 8, 16)`` (``dilation=1, mul_dilation=2``).
        kernel_size: odd kernel size of the layers (3).
        convs_per_layer: convolutions per layer, all of the layer's dilation (1 in the paper, 2 in cassetta).
        norm: ``"batch"``, ``"group"``, ``"instance"``, ``"layer"``, ``"rms"``, an int (GroupNorm groups) or None.
        layer_activation: activation inside the layers (a ``torch.nn`` name, e.g. ``"relu"``) or None.
        dropout: channel-dropout probability after every layer, in [0, 1).
        head_kernel_size: odd kernel size of the segmentation head (1).
        activation: activation of the output mask (``"sigmoid"``, ``"softmax"``, ... or None).
        aux_params: optional classification head on the backbone's output (keys classes, pooling, dropout,
            activation); ``forward`` then returns ``(mask, label)``.
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.

    Raises:
        ValueError: for a bad ``dilations`` (empty, non-positive), ``channels``, ``kernel_size``,
            ``convs_per_layer``, ``dropout``, ``classes``, ``spatial_dims`` or ``encoder_weights``.
    """

    requires_divisible_input_shape = False
    __jit_unused_properties__ = SegmentationModel.__jit_unused_properties__ + ["receptive_field"]

    def __init__(
        self,
        encoder_name: str | None = None,
        encoder_weights: str | None = None,
        in_channels: int = 3,
        classes: int = 1,
        channels: int = 21,
        dilations: Sequence[int] = MESHNET_DILATIONS,
        kernel_size: int = 3,
        convs_per_layer: int = 1,
        norm: str | int | None = "batch",
        layer_activation: str | None = "relu",
        dropout: float = 0.0,
        head_kernel_size: int = 1,
        activation: str | Callable | None = None,
        aux_params: dict[str, Any] | None = None,
        spatial_dims: int = 2,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
    ):
        super().__init__()
        nd.check_spatial_dims(spatial_dims)
        check_encoder_arguments("MeshNet", encoder_name, encoder_weights)
        schedule = check_dilations(dilations)
        with argument_named("layer_activation", "activation"):
            encoder = DilatedStackEncoder(
                in_channels,
                channels,
                [(d,) for d in schedule],
                kernel_size=kernel_size,
                convs_per_layer=convs_per_layer,
                norm=norm,
                activation=layer_activation,
                dropout=dropout,
                spatial_dims=spatial_dims,
            )
        build_dilated_model(self, encoder, classes, activation, head_kernel_size, aux_params, spatial_dims)
        self.dilations = schedule
        self.name = "meshnet"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    @property
    def receptive_field(self) -> int:
        """Per-axis receptive field: ``1 + convs_per_layer · (kernel_size - 1) · Σ dilations`` (the head is 1x1;
        a larger ``head_kernel_size`` adds ``head_kernel_size - 1``)."""
        head = self.segmentation_head[0].kernel_size[0]
        return self.encoder.receptive_field + head - 1
