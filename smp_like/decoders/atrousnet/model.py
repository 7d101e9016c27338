"""ATrousNet: levels of parallel dilated convolutions whose branches are summed, at full resolution.

The design of cassetta's ATrousNet: level ``i`` runs one branch per dilation of its group on the same input and sums
them — atrous convolutions at several rates in parallel, as DeepLab's atrous spatial pyramid (Chen et al. 2017,
"DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
TPAMI, arXiv:1606.00915, Sec. 3.3, fusion by sum) — but stacked over levels and without any down-sampling. With five
levels and dilations doubling, the groups grow then shrink: ``(1,), (1, 2), (1, 2, 4), (1, 2), (1,)``. See
docs/meshnet_atrousnet.md.
"""

from collections.abc import Callable, Sequence
from typing import Any, Optional

from smp_like.base import nd
from smp_like.base.checks import argument_named
from smp_like.base.model import SegmentationModel
from smp_like.decoders.meshnet.backbone import (
    DilatedStackEncoder,
    build_dilated_model,
    check_dilation_groups,
    check_encoder_arguments,
)

# cassetta's default (nb_levels=5, dilation=1, mul_dilation=2): the branches of each level.
ATROUSNET_DILATION_GROUPS = ((1,), (1, 2), (1, 2, 4), (1, 2), (1,))


class ATrousNet(SegmentationModel):
    """Stacked levels of parallel, summed dilated convolutions (ATrousNet), 2D or 3D, output of the input's size.

    Level ``i`` has one branch per dilation ``d`` in ``dilation_groups[i]``; a branch is ``convs_per_layer``
    convolutions (``kernel_size``, dilation ``d``, ``channels`` wide), each followed by ``norm``,
    ``layer_activation`` and channel ``dropout``; the level's output is the sum of its branches. A
    ``head_kernel_size`` convolution (1x1 by default) maps to ``classes``.

    Receptive field (per axis, :attr:`receptive_field`): the sum of parallel branches reaches as far as its widest
    branch, so ``1 + convs_per_layer · (kernel_size - 1) · Σ_levels max(group)`` — 41 for the defaults
    (2 convolutions per branch, Σ max = 10).

    Args:
        encoder_name: must be None: ATrousNet is its own backbone.
        encoder_weights: must be None (no pretrained weights).
        in_channels: input channels.
        classes: output channels of the mask.
        channels: width of every branch (21, cassetta's default).
        dilation_groups: one group of dilations per level (default ``((1,), (1, 2), (1, 2, 4), (1, 2), (1,))``).
        kernel_size: odd kernel size of the branches (3).
        convs_per_layer: convolutions per branch (2, cassetta's ``nb_conv_per_level``).
        norm: ``"batch"``, ``"group"``, ``"instance"``, ``"layer"``, ``"rms"``, an int (GroupNorm groups) or None.
        layer_activation: activation inside the branches (a ``torch.nn`` name) or None.
        dropout: channel-dropout probability after every convolution, in [0, 1).
        head_kernel_size: odd kernel size of the segmentation head (1).
        activation: activation of the output mask (``"sigmoid"``, ``"softmax"``, ... or None).
        aux_params: optional classification head on the backbone's output; ``forward`` then returns
            ``(mask, label)``.
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.

    Raises:
        ValueError: for a bad ``dilation_groups`` (empty, an empty group, non-positive), ``channels``,
            ``kernel_size``, ``convs_per_layer``, ``dropout``, ``classes``, ``spatial_dims`` or ``encoder_weights``.
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
        dilation_groups: Sequence[Sequence[int]] = ATROUSNET_DILATION_GROUPS,
        kernel_size: int = 3,
        convs_per_layer: int = 2,
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
        check_encoder_arguments("ATrousNet", encoder_name, encoder_weights)
        groups = check_dilation_groups(dilation_groups)
        with argument_named("layer_activation", "activation"):
            encoder = DilatedStackEncoder(
                in_channels,
                channels,
                groups,
                kernel_size=kernel_size,
                convs_per_layer=convs_per_layer,
                norm=norm,
                activation=layer_activation,
                dropout=dropout,
                spatial_dims=spatial_dims,
            )
        build_dilated_model(self, encoder, classes, activation, head_kernel_size, aux_params, spatial_dims)
        self.dilation_groups = groups
        self.name = "atrousnet"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    @property
    def receptive_field(self) -> int:
        """Per-axis receptive field: ``1 + convs_per_layer · (kernel_size - 1) · Σ_levels max(group)`` (plus
        ``head_kernel_size - 1`` for a head larger than 1x1)."""
        head = self.segmentation_head[0].kernel_size[0]
        return self.encoder.receptive_field + head - 1
