"""HSeM: hierarchical segmentation model with a side output per decoder stage (deep supervision).

Flemme's HSeM, rebuilt on smp_like's encoders and the U-Net block, with two of the original's defects absent by
construction: every side output has exactly its stage's stride (size ``ceil(input / stride)`` per axis), and the
main output has the input's size for any input size (2D and 3D), not a fixed ``image_size``.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.heads import SegmentationHead
from smp_like.base.initialization import initialize_decoder
from smp_like.base.model import SegmentationModel
from smp_like.decoders.hierarchical.decoder import HierarchicalDecoder, PyramidFusion
from smp_like.base.deep_supervision import DeepSupervisionMixin
from smp_like.encoders import get_encoder


def _resize(x: torch.Tensor, size: List[int], mode: str) -> torch.Tensor:
    return x if list(x.shape[2:]) == list(size) else F.interpolate(x, size=size, mode=mode)


class HSeM(DeepSupervisionMixin, SegmentationModel):
    """Hierarchical segmentation model: encoder -> pyramid decoder -> side heads + fusion -> main output.

    The decoder keeps every stage's output, coarse to fine. A 1x1 side head per stage gives ``classes`` channels at
    that stage's exact size, ``ceil(input_size / stride)`` per axis. The fusion up-samples all stages to the finest
    one, concatenates and projects them; the segmentation head then gives the main output, resized to the input's
    exact size.

    Interface:
        * ``model.train()`` (and ``side_heads=True``): ``forward(x)`` returns ``(main, sides)``, where ``main`` is
          (N, classes, *input_size) and ``sides`` is a list of ``encoder_depth`` tensors, coarse to fine, side
          ``i`` of spatial size ``ceil(input_size / stride_i)`` with ``stride_i = encoder.reductions[depth - 1 -
          i]`` (for depth 5: strides 16, 8, 4, 2, 1). Feed it to :class:`~smp_like.losses.pyramid.PyramidLoss`.
        * ``model.eval()`` (and ``predict``): ``forward(x)`` returns ``main`` alone, like any segmentation model.
        * ``side_heads=False``: no side heads; ``main`` alone in both modes.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages (= number of decoder stages and side outputs).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        decoder_channels: channels of each decoder stage, coarse to fine; one per encoder stage.
        decoder_use_norm: norm of the decoder convs (``"batchnorm"``, ``"identity"``, ...).
        decoder_interpolation: up-sampling mode in the decoder and fusion (``"nearest"``, ``"bilinear"``, ...).
        fusion_channels: channels of the fused map; None = ``decoder_channels[-1]``.
        side_heads: build the side heads (deep supervision).
        in_channels: input channels.
        classes: output channels of the main and side outputs.
        activation: activation applied to the main and side outputs (``"sigmoid"``, ``"softmax"``, ... or None).
        spatial_dims: 2 for images, 3 for volumes.
        time_embedding_dim: width of a time embedding that makes the model a diffusion eps-model
            (``model(x, timesteps)``; see :meth:`~smp_like.base.model.SegmentationModel.enable_time_embedding`),
            or None (default) for a plain segmentation model.
        time_injection: how the embedding enters each block: ``"gate_bias"`` (default), ``"gate"``,
            ``"bias"`` or ``"cross_attention"``.
        **kwargs: passed to the encoder (e.g. ``output_stride``).

    Raises:
        ValueError: for a bad ``classes``, ``encoder_depth``, ``decoder_channels`` or ``fusion_channels``.
    """

    requires_divisible_input_shape = False
    supports_anisotropic_strides = True

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = "imagenet",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        decoder_use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        decoder_interpolation: str = "nearest",
        fusion_channels: Optional[int] = None,
        side_heads: bool = True,
        in_channels: int = 3,
        classes: int = 1,
        activation: Union[str, Callable, None] = None,
        spatial_dims: int = 2,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        if isinstance(encoder_depth, bool) or not isinstance(encoder_depth, int) or encoder_depth < 1:
            raise ValueError(f"`encoder_depth` must be a positive int, got {encoder_depth!r}")
        if not isinstance(decoder_channels, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in decoder_channels
        ):
            raise ValueError(f"`decoder_channels` must be a sequence of positive ints, got {decoder_channels!r}")
        if len(decoder_channels) != encoder_depth:
            raise ValueError(
                f"`decoder_channels` must have encoder_depth={encoder_depth} entries, got "
                f"{len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        if fusion_channels is None:
            fusion_channels = decoder_channels[-1]
        if isinstance(fusion_channels, bool) or not isinstance(fusion_channels, int) or fusion_channels < 1:
            raise ValueError(f"`fusion_channels` must be None or a positive int, got {fusion_channels!r}")
        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.decoder = HierarchicalDecoder(
            encoder_channels=self.encoder.out_channels,
            decoder_channels=decoder_channels,
            use_norm=decoder_use_norm,
            interpolation_mode=decoder_interpolation,
            spatial_dims=spatial_dims,
        )
        self.fusion = PyramidFusion(
            decoder_channels, fusion_channels, decoder_use_norm, decoder_interpolation, spatial_dims
        )
        self.segmentation_head = SegmentationHead(
            in_channels=fusion_channels, out_channels=classes, activation=activation, spatial_dims=spatial_dims
        )
        self.init_side_heads(
            side_heads, decoder_channels, classes, activation, decoder_interpolation, spatial_dims, name="side_heads"
        )
        self.classification_head = None
        self._interpolation = nd.interpolation_mode(decoder_interpolation, spatial_dims)
        self.name = f"hsem-{encoder_name}"
        self.initialize()
        self.enable_time_embedding(time_embedding_dim, time_injection)

    def initialize(self) -> None:
        super().initialize()
        initialize_decoder(self.fusion)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, timesteps: Optional[torch.Tensor] = None, embedding: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Return ``(main, sides)`` in training mode with side heads, else ``main`` (see the class docstring).

        ``timesteps`` / ``embedding``: for a model built with ``time_embedding_dim`` (see SegmentationModel).
        """
        self.check_input_shape(x)
        vector = self._time_vector(x, timesteps, embedding)
        size = list(x.shape[2:])
        features = self._encode(x, vector)
        with self._decoder_time(vector):
            stages = self.decoder(features)
        main = _resize(self.segmentation_head(self.fusion(stages)), size, self._interpolation)
        if not self.training or self.side_heads is None:
            return main
        # Side heads, sizes and the exact-size fix-up are shared with Unet / UnetPlusPlus / FPN (DeepSupervisionMixin).
        return main, self.side_outputs(stages, size)
