"""Flemme-style hierarchical ViT encoders (``vit``, ``vit_small``, ``vit_base``), 2D and 3D.

Patch embedding + absolute position embedding (Dosovitskiy et al. 2021, eq. 1), pre-norm global self-attention
blocks (eqs. 2-3) and Swin-style patch merging between stages so that features have strides 1, 2, 4, ... (stages
below the patch stride are 0-channel placeholders). Any input size: the input is padded to a multiple of the patch
size and the position embedding is interpolated to the actual token grid. See docs/transformer_encoders.md.
"""

from typing import Any

from smp_like.encoders.flemme_transformer import FlemmeTransformerEncoder
from smp_like.encoders.transformer_blocks import VIT_BUILDING_BLOCKS

__all__ = ["FlemmeViTEncoder", "flemme_vit_encoders"]


class FlemmeViTEncoder(FlemmeTransformerEncoder):
    """Hierarchical ViT encoder; arguments as :class:`~smp_like.encoders.flemme_transformer.FlemmeTransformerEncoder`
    with ``building_block="vit"`` and ``abs_pos_embedding=True`` by default (``window_size`` is refused: ViT attention is global).
    """

    _building_blocks = VIT_BUILDING_BLOCKS
    _family = "vit"

    def __init__(self, abs_pos_embedding: bool = True, **kwargs: Any):
        super().__init__(abs_pos_embedding=abs_pos_embedding, **kwargs)


def _entry(patch_channel: int, down_channels: tuple, num_blocks: tuple) -> dict[str, Any]:
    return {
        "encoder": FlemmeViTEncoder,
        "params": {
            "patch_size": 4,
            "patch_channel": patch_channel,
            "down_channels": down_channels,
            "num_blocks": num_blocks,
        },
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    }


flemme_vit_encoders = {
    "vit": _entry(64, (128, 256, 512, 512), (2, 2, 2, 2, 2)),
    "vit_small": _entry(96, (192, 384, 768, 768), (2, 2, 6, 2, 2)),
    "vit_base": _entry(128, (256, 512, 1024, 1024), (2, 2, 18, 2, 2)),
}
