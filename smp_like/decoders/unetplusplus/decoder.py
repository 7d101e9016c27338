"""UNet++ decoder (Zhou et al. 2018, "UNet++: A Nested U-Net Architecture for Medical Image Segmentation").

Nested, dense skip pathways (sec. 2, eq. 1): every node on a skip pathway fuses the upsampled node below it with
all earlier nodes of its pathway and the encoder skip. Nodes carry SMP's names ``x_{d}_{j}``: ``j`` is the skip
level (0 = deepest skip) and the node is the paper's ``X^{i, j-d+1}`` on that level's pathway; ``x_0_{j}`` are the
top-row nodes that produce ``decoder_channels``. Each node is a U-Net decoder block
(:class:`~smp_like.decoders.unet.decoder.UnetDecoderBlock`). Block names, state-dict keys and outputs follow
segmentation_models_pytorch; every layer is n-d (2D and 3D).
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base.modules import ConvNormReLU
from smp_like.decoders.unet.decoder import UnetDecoderBlock

NormSpec = Union[bool, str, Dict[str, Any]]


class CenterBlock(nn.Sequential):
    """Two 3x3 conv-norm-ReLU blocks (children 0, 1) that SMP's UnetPlusPlus builds for VGG encoders.

    SMP never applies it (its outputs do not depend on these weights); :class:`UnetPlusPlusDecoder` keeps it for
    state-dict compatibility and does the same, so SMP checkpoints give SMP's outputs.
    """

    def __init__(
        self, in_channels: int, out_channels: int, use_norm: NormSpec = "batchnorm", spatial_dims: int = 2
    ):
        super().__init__(
            ConvNormReLU(in_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims),
            ConvNormReLU(out_channels, out_channels, 3, padding=1, use_norm=use_norm, spatial_dims=spatial_dims),
        )


class EmptyNode(nn.Module):
    """A nested node at the level of a 0-channel skip (transformer encoders' stride-2 placeholder).

    It has no parameters (as in SMP) and returns a 0-channel tensor of the skip's size, so the dense
    concatenations that include it stay valid.
    """

    def forward(self, x: torch.Tensor, size: List[int], skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        return x.new_zeros([x.shape[0], 0] + size)


class UnetPlusPlusDecoder(nn.Module):
    """Nested dense decoder of UNet++ (Zhou et al. 2018, sec. 2).

    With the encoder features deepest first, ``f[0] .. f[n-1]`` (``n`` = depth; the input itself is not used):

    * ``x_{d}_{d} = block(f[d], skip=f[d+1])`` for ``d < n-1``;
    * ``x_{d}_{j} = block(x_{d}_{j-1}, skip=cat(x_{d+1}_{j}, ..., x_{j}_{j}, f[j+1]))`` for ``d < j < n-1``;
    * the output ``x_0_{n-1} = block(x_0_{n-2})`` (no skip), at the input's resolution.

    Nodes on the top row (``d = 0``) have ``decoder_channels`` outputs; inner nodes keep the channels of the
    encoder skip of their level. Each block resizes its input to its skip's size (the input's size for the last).

    Args:
        encoder_channels: the encoder's ``out_channels`` (input first).
        decoder_channels: output channels of the top-row blocks; one per encoder stage.
        n_blocks: number of stages (must equal ``len(decoder_channels)``; kept for SMP compatibility).
        use_norm: norm of the conv blocks (any form ``decoder_use_norm`` takes).
        attention_type: None or ``"scse"``.
        interpolation_mode: up-sampling mode of every block.
        center: build a :class:`CenterBlock` (SMP does for VGG encoders; like SMP, it is not applied).
        spatial_dims: 2 or 3.

    Raises:
        ValueError: if ``n_blocks`` and ``decoder_channels`` disagree.
    """

    # Sub-modules (fnmatch patterns over named_modules) after which a diffusion model injects its time embedding.
    time_injection_points = ("blocks.*",)

    def __init__(
        self,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        n_blocks: int = 5,
        use_norm: NormSpec = "batchnorm",
        attention_type: Optional[str] = None,
        interpolation_mode: str = "nearest",
        center: bool = False,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if n_blocks != len(decoder_channels):
            raise ValueError(
                f"`decoder_channels` must have one entry per encoder stage (encoder_depth={n_blocks}), "
                f"got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        deep_to_shallow = list(encoder_channels[1:])[::-1]
        in_channels = [deep_to_shallow[0]] + list(decoder_channels[:-1])
        skip_channels = deep_to_shallow[1:] + [0]
        out_channels = list(decoder_channels)
        self.depth = len(in_channels) - 1  # index of the last (output) node on the top row

        head = deep_to_shallow[0]
        self.center = CenterBlock(head, head, use_norm, spatial_dims) if center else nn.Identity()

        def block(in_ch: int, skip_ch: int, out_ch: int) -> UnetDecoderBlock:
            return UnetDecoderBlock(
                in_ch, skip_ch, out_ch, use_norm, attention_type, interpolation_mode, spatial_dims
            )

        blocks: Dict[str, nn.Module] = {}
        for j in range(self.depth):  # column (level of the skip the node fuses)
            for d in range(j + 1):  # row; d = 0 is the top row
                # Its skip is x_{d+1}_{j} .. x_{j}_{j} (j - d nodes) and f[j+1]: j + 1 - d tensors of that width.
                skip_ch = skip_channels[j] * (j + 1 - d)
                if d == 0:
                    blocks[f"x_{d}_{j}"] = block(in_channels[j], skip_ch, out_channels[j])
                elif skip_channels[j] == 0:
                    blocks[f"x_{d}_{j}"] = EmptyNode()
                else:
                    blocks[f"x_{d}_{j}"] = block(skip_channels[j - 1], skip_ch, skip_channels[j])
        blocks[f"x_0_{self.depth}"] = block(in_channels[-1], 0, out_channels[-1])
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        return self.forward_stages(features)[0]

    def forward_stages(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Return the output and the top-row nodes ``x_0_0 .. x_0_{n-1}``, coarse to fine (for deep supervision)."""
        output_size = list(features[0].shape[2:])
        f = features[1:][::-1]  # deepest first; self.center is deliberately not applied (see CenterBlock)
        nodes: Dict[str, torch.Tensor] = {}
        for offset in range(self.depth):  # j - d: 0 for the first diagonal, which fuses only encoder features
            for d in range(self.depth - offset):
                j = d + offset
                skip_size = list(f[j + 1].shape[2:])
                if offset == 0:
                    nodes[f"x_{d}_{j}"] = self.blocks[f"x_{d}_{j}"](f[d], skip_size, f[j + 1])
                else:
                    dense = [nodes[f"x_{k}_{j}"] for k in range(d + 1, j + 1)] + [f[j + 1]]
                    nodes[f"x_{d}_{j}"] = self.blocks[f"x_{d}_{j}"](
                        nodes[f"x_{d}_{j - 1}"], skip_size, torch.cat(dense, dim=1)
                    )
        last = f"x_0_{self.depth}"
        previous = nodes[f"x_0_{self.depth - 1}"] if self.depth > 0 else f[0]
        out = self.blocks[last](previous, output_size)
        stages: List[torch.Tensor] = []
        for j in range(self.depth):
            stages.append(nodes[f"x_0_{j}"])
        stages.append(out)
        return out, stages
