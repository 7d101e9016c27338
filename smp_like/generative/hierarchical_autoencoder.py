"""Hierarchical auto-encoder (Flemme's HAE): an :class:`~smp_like.generative.autoencoder.AE` whose no-skip decoder
keeps every stage's output (coarse to fine) and puts a 1x1 reconstruction side head on each stage but the last
(the last stage feeds the main reconstruction head).

Side output ``k`` reconstructs the input at that stage's stride: its size is exactly ``ceil(input / stride)`` for
any input size (the decoder resizes each stage to the mirrored encoder stage size). In training mode ``forward``
returns ``(reconstruction, sides)`` — for :class:`~smp_like.losses.PyramidLoss`, which compares each side with the
input resized to it — and in eval mode the reconstruction alone, like :class:`~smp_like.HSeM`.
"""
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.initialization import initialize_head
from smp_like.base.modules import Activation
from smp_like.generative.autoencoder import AE, Size

__all__ = ["HAE"]


class HAE(AE):
    """Auto-encoder with a reconstruction pyramid. Arguments are those of :class:`AE`.

    Returns (forward):
        training mode: ``(reconstruction, sides)``, ``sides`` coarse to fine (``encoder_depth - 1`` tensors of
        ``out_channels`` channels at ``ceil(input / stride)``); eval mode: ``reconstruction``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        conv = nd.conv_type(self.spatial_dims)
        widths = list(self.decoder_channels)[:-1]
        activation = self.output_activation
        self.side_heads = nn.ModuleList(
            nn.Sequential(conv(c, self.out_channels, kernel_size=1), Activation(activation)) for c in widths
        )
        for head in self.side_heads:
            initialize_head(head)

    def side_strides(self) -> List[Tuple[int, ...]]:
        """Per-axis stride of each side output, coarse to fine."""
        reductions = list(self.encoder.reductions)[1: len(self.decoder.blocks)][::-1]
        return [nd.as_tuple(r, self.spatial_dims, "reductions") for r in reductions]

    def decode_pyramid(self, z: torch.Tensor, size: Size) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``(reconstruction, sides)`` decoded from the latent map ``z`` for an output of spatial ``size``."""
        self._check_latent(z)
        sizes = self.stage_sizes(size)[: len(self.decoder.blocks)][::-1]
        x = z
        sides: List[torch.Tensor] = []
        for i, (block, stage_size) in enumerate(zip(self.decoder.blocks, sizes)):
            x = block(x, list(stage_size))
            if i < len(self.side_heads):
                sides.append(self.side_heads[i](x))
        return self.reconstruction_head(x), sides

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]]:  # type: ignore[override]
        recon, sides = self.decode_pyramid(self.encode(x), x.shape[2:])
        return (recon, sides) if self.training else recon

    def loss(  # type: ignore[override]
        self, x: torch.Tensor, outputs: Union[torch.Tensor, Tuple[torch.Tensor, Sequence[torch.Tensor]]],
        recon_loss: str = "mse",
    ) -> torch.Tensor:
        """Reconstruction loss of the main output plus the mean loss of the sides against ``x`` resized to each
        side by area averaging (:class:`~smp_like.losses.PyramidLoss` with ``target_resize="area"``)."""
        from smp_like.losses import PyramidLoss

        if isinstance(outputs, torch.Tensor):
            return self.reconstruction_loss(x, outputs, recon_loss)
        main_loss = lambda prediction, target: self.reconstruction_loss(target, prediction, recon_loss)  # noqa: E731
        return PyramidLoss(main_loss, target_resize="area")(outputs, x)
