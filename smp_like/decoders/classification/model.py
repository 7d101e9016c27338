"""ClM (Flemme's classification model): any registered encoder -> global pooling -> MLP head; 2D and 3D.

The model is not a segmentation model, so it does not subclass :class:`~smp_like.base.model.SegmentationModel`
(whose forward, padding and heads are per-pixel). It is an ``nn.Module`` with :class:`~smp_like.base.hub.HubMixin`
for ``save_pretrained`` / ``from_pretrained``; like every saveable class, it records its constructor arguments and
registers itself through :class:`~smp_like.base.hub.HubMixin`, so ``smp_like.from_pretrained`` dispatches to it.
"""

from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.checks import check_image_batch, check_positive_int, check_real
from smp_like.base.heads import POOLINGS
from smp_like.base.hub import HubMixin
from smp_like.base.initialization import initialize_head
from smp_like.base.modules import Activation
from smp_like.encoders import get_encoder


class ClM(nn.Module, HubMixin):
    """Image (or volume) classifier: encoder -> global pooling of the deepest feature -> MLP -> activation.

    The MLP is ``[Linear -> ReLU -> Dropout] * len(hidden_channels) -> Linear(classes)``; with
    ``hidden_channels=()`` it is a single linear layer after dropout (SMP's aux classification head).

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages; the deepest one is pooled.
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        in_channels: input channels.
        classes: number of output logits.
        pooling: global pooling, ``"avg"`` or ``"max"``.
        hidden_channels: widths of the hidden MLP layers (may be empty).
        dropout: dropout probability before every linear layer, in [0, 1) (None or 0: none).
        activation: activation on the logits (``"sigmoid"``, ``"softmax"``, ... or None for raw logits).
        spatial_dims: 2 for images, 3 for volumes.
        **kwargs: passed to the encoder (e.g. a Flemme ``cnn`` encoder's ``down_channels``).

    Returns (forward):
        Tensor of shape (N, classes). Any spatial size works (global pooling).

    Raises:
        ValueError: for a bad argument, naming it, the value and the valid choices.
    """

    # Read by SegmentationModel's anisotropic-stride error, which lists the registered classes that accept them.
    supports_anisotropic_strides: bool = False

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = None,
        in_channels: int = 3,
        classes: int = 1,
        pooling: str = "avg",
        hidden_channels: Sequence[int] = (256,),
        dropout: Optional[float] = 0.2,
        activation: Union[str, Callable, None] = None,
        spatial_dims: int = 2,
        **kwargs: Any,
    ):
        super().__init__()
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("classes", classes)
        check_positive_int("in_channels", in_channels)
        check_positive_int("encoder_depth", encoder_depth)
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}")
        if not isinstance(hidden_channels, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in hidden_channels
        ):
            raise ValueError(f"`hidden_channels` must be a sequence of positive ints, got {hidden_channels!r}")
        if dropout is not None:  # a string such as "0.2" is a TypeError, not silently converted
            dropout = check_real("dropout", dropout, 0.0, 1.0, high_open=True)

        self.encoder = get_encoder(
            encoder_name, in_channels=in_channels, depth=encoder_depth, weights=encoder_weights, spatial_dims=spatial_dims,
            **kwargs,
        )
        pool_type = nd.adaptive_avgpool_type if pooling == "avg" else nd.adaptive_maxpool_type
        self.pool = nn.Sequential(pool_type(spatial_dims)(1), nn.Flatten())
        layers = []
        width = self.encoder.out_channels[-1]
        for hidden in hidden_channels:
            if dropout:
                layers.append(nn.Dropout(p=float(dropout)))
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        if dropout:
            layers.append(nn.Dropout(p=float(dropout)))
        self.mlp = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, classes)
        self.activation = Activation(activation)
        for m in self.mlp.modules():  # a ReLU follows every hidden linear: He init
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        initialize_head(self.classifier)
        self.name = f"clm-{encoder_name}"

    @property
    def spatial_dims(self) -> int:
        return self.encoder.spatial_dims

    def check_input_shape(self, x: torch.Tensor) -> None:
        """Validate the input's type, rank and channel count.

        Raises:
            TypeError: if ``x`` is not a tensor.
            ValueError: for a wrong rank or channel count.
        """
        check_image_batch(x, self.spatial_dims, self.encoder.in_channels)


    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled deepest encoder feature, (N, encoder.out_channels[-1])."""
        self.check_input_shape(x)
        return self.pool(self.encoder(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``activation(logits)`` of shape (N, classes)."""
        return self.activation(self.classifier(self.mlp(self.forward_features(x))))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: switch to eval mode and run ``forward`` without gradients."""
        if self.training:
            self.eval()
        return self(x)
