"""Reading and writing images, masks and volumes, keeping what the user's files say (dtype, geometry).

Heavy readers are imported where first used: PIL and numpy for images, ``tifffile`` for TIFF, ``nibabel`` for
NIfTI volumes, so ``import smp_like.io`` is cheap.
"""

from smp_like.io.atomic import atomic_output
from smp_like.io.preprocessing import PREPROCESSING_NAME, Preprocessing
from smp_like.io.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    default_palette,
    overlay_mask,
    read_image,
    read_mask,
    write_index_png,
    write_rgb_png,
)
from smp_like.io.volumes import VOLUME_SUFFIXES, Volume, is_volume_path, read_volume, write_volume

__all__ = [
    "IMAGE_SUFFIXES",
    "PREPROCESSING_NAME",
    "Preprocessing",
    "ImageReadError",
    "VOLUME_SUFFIXES",
    "Volume",
    "atomic_output",
    "default_palette",
    "is_volume_path",
    "overlay_mask",
    "read_image",
    "read_mask",
    "read_volume",
    "write_index_png",
    "write_rgb_png",
    "write_volume",
]
