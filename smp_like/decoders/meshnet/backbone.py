"""Dilated-convolution backbones without down-sampling, shared by :class:`MeshNet` and :class:`ATrousNet`.

Two layouts of dilated convolutions (Yu & Koltun 2016, "Multi-Scale Context Aggregation by Dilated Convolutions",
arXiv:1511.07122), both at stride 1 (every feature map keeps the input's size):

* **stacked** (MeshNet, Fedorov et al. 2017, arXiv:1612.00940): layer ``i`` is ``convs_per_layer`` convolutions of
  dilation ``dilations[i]``, run one after the other;
* **parallel groups** (ATrousNet, after DeepLab's atrous pyramid, Chen et al. 2017, arXiv:1606.00915): level ``i``
  runs one branch per dilation of ``dilation_groups[i]`` on the same input (each branch ``convs_per_layer``
  convolutions) and sums the branches.

Receptive field (the extent, per axis, of the input pixels that can influence one output pixel): a convolution of
kernel ``k`` and dilation ``d`` widens it by ``(k - 1) · d``, so a stack gives
``1 + convs_per_layer · (k - 1) · Σ_i d_i``; a sum of parallel branches has the union of their supports, i.e. the
widest branch, so a stack of levels gives ``1 + convs_per_layer · (k - 1) · Σ_i max(group_i)``
(:func:`receptive_field`).

The whole stack is the model's encoder (:class:`DilatedStackEncoder`, depth 1, features ``[x, output]`` at stride
1), so the inherited :class:`~smp_like.base.model.SegmentationModel` forward and its aux classification head (on
the backbone's output) apply unchanged; :class:`FeaturePassThrough` is the decoder.
"""

from collections.abc import Sequence

import torch
from torch import nn

from smp_like.base import nd
from smp_like.base.embedding import EmbeddingInjection, check_injection_mode
from smp_like.base.norms import make_activation, make_norm_layer
from smp_like.encoders._base import EncoderMixin

__all__ = [
    "DilatedConvLayer",
    "DilatedStackEncoder",
    "FeaturePassThrough",
    "check_dilation_groups",
    "check_dilations",
    "check_positive_int",
    "receptive_field",
]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int (not a bool), else raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return value


def check_kernel_size(kernel_size: object, name: str = "kernel_size") -> int:
    """An odd positive int (odd kernels keep the size at stride 1 with symmetric padding)."""
    check_positive_int(name, kernel_size)
    if kernel_size % 2 == 0:  # type: ignore[operator]
        raise ValueError(f"`{name}` must be odd (1, 3, 5, ...) so the size is kept, got {kernel_size!r}")
    return kernel_size  # type: ignore[return-value]


def check_dilations(dilations: object, name: str = "dilations") -> tuple[int, ...]:
    """A non-empty sequence of positive ints, returned as a tuple.

    Raises:
        TypeError: naming ``name``, for something that is not a sequence.
        ValueError: naming ``name`` and the value, for an empty schedule or a non-positive / non-int entry.
    """
    if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence):
        raise TypeError(f"`{name}` must be a non-empty sequence of positive ints, got {dilations!r}")
    if len(dilations) == 0:
        raise ValueError(
            f"`{name}` must be a non-empty sequence of positive ints, got an empty schedule {dilations!r}"
        )
    for d in dilations:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"`{name}` must contain positive ints only, got {d!r} in {tuple(dilations)!r}")
    return tuple(dilations)


def check_dilation_groups(groups: object, name: str = "dilation_groups") -> tuple[tuple[int, ...], ...]:
    """A non-empty sequence of non-empty sequences of positive ints, returned as a tuple of tuples."""
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or len(groups) == 0:
        raise ValueError(f"`{name}` must be a non-empty sequence of dilation groups, got {groups!r}")
    return tuple(check_dilations(g, f"{name}[{i}]") for i, g in enumerate(groups))


def receptive_field(
    dilation_groups: Sequence[Sequence[int]], kernel_size: int = 3, convs_per_layer: int = 1
) -> int:
    """Receptive field (per axis) of a stack of levels of parallel, summed dilated convolutions.

    ``1 + convs_per_layer · (kernel_size - 1) · Σ_levels max(group)``; a MeshNet schedule ``(d_1, ..., d_n)`` is the
    special case of single-branch groups ``((d_1,), ..., (d_n,))``.
    """
    return 1 + convs_per_layer * (kernel_size - 1) * sum(max(group) for group in dilation_groups)


class DilatedConvLayer(nn.Module):
    """conv (dilation ``d``, ``padding = d · (k // 2)``, stride 1) -> norm -> [embedding] -> activation -> dropout.

    The order is MeshNet's (Fedorov et al. 2017: conv, batch norm, ReLU, dropout). The output has the input's size.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        dilation: dilation of the convolution.
        kernel_size: odd kernel size.
        norm: a :data:`~smp_like.base.norms.NORMALIZATIONS` name, an int (GroupNorm groups) or None.
        activation: a ``torch.nn`` activation name or None (identity).
        dropout: channel-dropout probability in [0, 1).
        spatial_dims: 1, 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilation: int = 1,
        kernel_size: int = 3,
        norm: str | int | None = "batch",
        activation: str | None = "relu",
        dropout: float = 0.0,
        spatial_dims: int = 2,
    ):
        super().__init__()
        self.conv = nd.conv_type(spatial_dims)(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            bias=norm is None,
        )
        self.norm = make_norm_layer(norm, out_channels, spatial_dims)
        self.act = make_activation(activation)
        self.drop = nd.dropout_type(spatial_dims)(dropout) if dropout else nn.Identity()
        self.out_channels = out_channels
        self.injection: EmbeddingInjection | None = None

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Inject an (N, embedding_dim) embedding after the norm (the scale-shift norm of Dhariwal & Nichol 2021)."""
        self.injection = EmbeddingInjection(self.out_channels, embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if self.injection is not None:
            x = self.injection(x, time_emb)
        return self.drop(self.act(x))


class DilatedStackEncoder(EncoderMixin, nn.Module):
    """A stack of levels of parallel dilated branches, as a depth-1 encoder at stride 1.

    ``forward(x, time_emb=None)`` returns ``[x, y]``: the input and the backbone's output (``channels`` channels,
    the input's size); ``reductions == (1, 1)``. Level ``i`` has one branch per dilation in
    ``dilation_groups[i]``; each branch is ``convs_per_layer`` :class:`DilatedConvLayer` of that dilation; the
    branches are summed (a single-branch level is a plain layer, so single-branch groups make a MeshNet).

    Time-aware (``supports_time_embedding``): :meth:`enable_time_embedding` gives every conv layer an injection.
    """

    supports_time_embedding = True
    __jit_unused_properties__ = EncoderMixin.__jit_unused_properties__ + ["receptive_field"]

    def __init__(
        self,
        in_channels: int,
        channels: int,
        dilation_groups: Sequence[Sequence[int]],
        kernel_size: int = 3,
        convs_per_layer: int = 1,
        norm: str | int | None = "batch",
        activation: str | None = "relu",
        dropout: float = 0.0,
        spatial_dims: int = 2,
    ):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("channels", channels)
        check_kernel_size(kernel_size)
        check_positive_int("convs_per_layer", convs_per_layer)
        nd.check_spatial_dims(spatial_dims, (1, 2, 3))
        groups = check_dilation_groups(dilation_groups)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be a number in [0, 1), got {dropout!r}")
        self.dilation_groups = groups
        self.kernel_size, self.convs_per_layer = kernel_size, convs_per_layer
        levels = []
        width = in_channels
        for group in groups:
            branches = nn.ModuleList()
            for dilation in group:
                branch = nn.ModuleList(
                    DilatedConvLayer(
                        width if j == 0 else channels,
                        channels,
                        dilation,
                        kernel_size,
                        norm,
                        activation,
                        float(dropout),
                        spatial_dims,
                    )
                    for j in range(convs_per_layer)
                )
                branches.append(branch)
            levels.append(branches)
            width = channels
        self.layers = nn.ModuleList(levels)
        self._in_channels = in_channels
        self._out_channels = (in_channels, channels)
        self._depth = 1
        self._spatial_dims = spatial_dims
        self._reductions = (1, 1)
        self._output_stride = 1

    @property
    def receptive_field(self) -> int:
        """Per-axis receptive field of the output (see :func:`receptive_field`)."""
        return receptive_field(self.dilation_groups, self.kernel_size, self.convs_per_layer)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Give every :class:`DilatedConvLayer` an embedding injection of width ``embedding_dim``."""
        check_positive_int("time_embedding_dim", embedding_dim)
        check_injection_mode(mode)
        for module in self.modules():
            if isinstance(module, DilatedConvLayer):
                module.enable_time_embedding(embedding_dim, mode)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> list[torch.Tensor]:
        features = [x]
        for branches in self.layers:
            total: torch.Tensor | None = None
            for branch in branches:
                y = x
                for layer in branch:
                    y = layer(y, time_emb)
                total = y if total is None else total + y
            assert total is not None
            x = total
        features.append(x)
        return features


class FeaturePassThrough(nn.Module):
    """The decoder of the dilated backbones: returns the deepest feature (``features[-1]``) unchanged.

    ``output`` (an identity) is the named point where a diffusion model's time embedding is injected once more
    before the head (``time_injection_points``, see smp_like/base/time_conditioning.py); the per-layer injections
    are in the encoder.
    """

    time_injection_points = ("output",)

    def __init__(self) -> None:
        super().__init__()
        self.output = nn.Identity()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.output(features[-1])


def check_encoder_arguments(arch: str, encoder_name: str | None, encoder_weights: str | None) -> None:
    """These networks are their own backbone: no encoder to choose (``encoder_name`` must be None) and no pretrained
    weights (``encoder_weights`` must be None)."""
    if encoder_name is not None:
        raise ValueError(
            f"`encoder_name` must be None for {arch}: it is its own backbone (a dilated stack), got {encoder_name!r}"
        )
    if encoder_weights is not None:
        raise ValueError(
            f"`encoder_weights` must be None for {arch} (it is its own backbone and has no pretrained weights), "
            f"got {encoder_weights!r}"
        )


def build_dilated_model(
    model: nn.Module,
    encoder: DilatedStackEncoder,
    classes: int,
    activation: object,
    head_kernel_size: int,
    aux_params: dict | None,
    spatial_dims: int,
) -> None:
    """Set ``encoder``, ``decoder``, ``segmentation_head`` and ``classification_head`` of a dilated model."""
    from smp_like.base.heads import SegmentationHead, build_classification_head

    check_positive_int("classes", classes)
    check_kernel_size(head_kernel_size, "head_kernel_size")
    model.encoder = encoder
    model.decoder = FeaturePassThrough()
    channels = encoder.out_channels[-1]
    model.segmentation_head = SegmentationHead(
        in_channels=channels,
        out_channels=classes,
        kernel_size=head_kernel_size,
        activation=activation,  # type: ignore[arg-type]
        spatial_dims=spatial_dims,
    )
    model.classification_head = build_classification_head(aux_params, channels, spatial_dims=spatial_dims)
