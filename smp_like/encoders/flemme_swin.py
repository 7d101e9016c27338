"""Flemme-style Swin transformer encoders (``swin``, ``swin_small``, ``swin_base``), 2D and 3D.

Patch embedding, (shifted) window attention blocks with an n-d relative position bias (Liu et al. 2021, eqs. 3-4)
and patch merging (sec. 3.1). Building blocks ``swin`` (single blocks, W-MSA and SW-MSA alternating within a stage),
``double_swin`` (W-MSA + SW-MSA pairs) and ``res_swin`` (pairs with a residual around them). Any input size: window
masks are computed for the actual padded grid, windows larger than the grid shrink to it. See
docs/transformer_encoders.md.
"""

from typing import Any

from smp_like.encoders.flemme_transformer import FlemmeTransformerEncoder
from smp_like.encoders.transformer_blocks import SWIN_BUILDING_BLOCKS, SwinStage

__all__ = ["FlemmeSwinEncoder", "SwinStage", "flemme_swin_encoders"]


class FlemmeSwinEncoder(FlemmeTransformerEncoder):
    """Hierarchical Swin encoder; arguments as
    :class:`~smp_like.encoders.flemme_transformer.FlemmeTransformerEncoder` with ``building_block`` one of
    ``swin`` (default), ``double_swin``, ``res_swin`` and ``abs_pos_embedding=False`` by default."""

    _building_blocks = SWIN_BUILDING_BLOCKS
    _family = "swin"


def _entry(patch_channel: int, down_channels: tuple, num_blocks: tuple) -> dict[str, Any]:
    return {
        "encoder": FlemmeSwinEncoder,
        "params": {
            "patch_size": 4,
            "patch_channel": patch_channel,
            "down_channels": down_channels,
            "num_blocks": num_blocks,
            "window_size": 7,
        },
        "pretrained_settings": {},
        "spatial_dims": (2, 3),
    }


flemme_swin_encoders = {
    "swin": _entry(64, (128, 256, 512, 512), (2, 2, 2, 2, 2)),
    "swin_small": _entry(96, (192, 384, 768, 768), (2, 2, 6, 2, 2)),
    "swin_base": _entry(128, (256, 512, 1024, 1024), (2, 2, 18, 2, 2)),
}
