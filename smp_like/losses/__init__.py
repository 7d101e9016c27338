"""Segmentation, reconstruction and regularisation losses.

The SMP losses (``DiceLoss``, ``JaccardLoss``, ``TverskyLoss``, ``FocalLoss``, ``LovaszLoss``,
``SoftBCEWithLogitsLoss``, ``SoftCrossEntropyLoss``, ``MCCLoss``) take the same arguments as in
segmentation_models_pytorch 0.6 and return the same values; Flemme's losses (``SSIMLoss``,
``KLDivergenceLoss``, ``BoundaryLoss``, ``MSELoss``, ``L1Loss``) and ``CombinedLoss`` (a weighted sum built
from names) complete the set. All work on (N, C, H, W) and (N, C, D, H, W) inputs. See docs/losses_metrics.md.
"""

from . import dice, jaccard, tversky  # noqa: F401  (SMP's module paths for the overlap losses)
from .boundary import BoundaryLoss, signed_distance_map
from .combined import LOSSES, CombinedLoss, build_loss, get_loss_class, register_loss
from .constants import BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE
from .focal import FocalLoss
from .kl import KLDivergenceLoss, kl_divergence_to_standard_normal
from .lovasz import LovaszLoss
from .mcc import MCCLoss
from .overlap import DiceLoss, JaccardLoss, TverskyLoss
from .pyramid import PyramidLoss
from .regression import L1Loss, MSELoss
from .soft_bce import SoftBCEWithLogitsLoss
from .soft_ce import SoftCrossEntropyLoss
from .ssim import SSIMLoss, ssim

KLLoss = KLDivergenceLoss  # Flemme's name

__all__ = [
    "BINARY_MODE",
    "MULTICLASS_MODE",
    "MULTILABEL_MODE",
    "DiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "FocalLoss",
    "LovaszLoss",
    "SoftBCEWithLogitsLoss",
    "SoftCrossEntropyLoss",
    "MCCLoss",
    "PyramidLoss",
    "SSIMLoss",
    "ssim",
    "KLDivergenceLoss",
    "KLLoss",
    "kl_divergence_to_standard_normal",
    "BoundaryLoss",
    "signed_distance_map",
    "MSELoss",
    "L1Loss",
    "CombinedLoss",
    "build_loss",
    "get_loss_class",
    "register_loss",
    "LOSSES",
]
