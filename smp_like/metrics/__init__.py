"""Segmentation metrics: SMP's confusion-count API plus Dice and surface distances.

``get_stats`` + score functions follow ``segmentation_models_pytorch.metrics`` (same names, arguments and
reductions); ``dice_score``, ``hausdorff_distance``, ``hausdorff_distance_95`` and
``average_symmetric_surface_distance`` cover Flemme's evaluation metrics. Every function accepts any number of
spatial dimensions. See docs/losses_metrics.md.
"""

from .distance import distance_transform, surface_mask
from .functional import (
    accuracy,
    balanced_accuracy,
    dice_score,
    f1_score,
    false_discovery_rate,
    false_negative_rate,
    false_omission_rate,
    false_positive_rate,
    fbeta_score,
    get_stats,
    iou_score,
    negative_likelihood_ratio,
    negative_predictive_value,
    positive_likelihood_ratio,
    positive_predictive_value,
    precision,
    recall,
    sensitivity,
    specificity,
)
from .surface import (
    average_symmetric_surface_distance,
    hausdorff_distance,
    hausdorff_distance_95,
    surface_distances,
)

# Short aliases used in the medical-imaging literature and in Flemme configs.
hd95 = hausdorff_distance_95
assd = average_symmetric_surface_distance

__all__ = [
    "get_stats",
    "fbeta_score",
    "f1_score",
    "dice_score",
    "iou_score",
    "accuracy",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "balanced_accuracy",
    "positive_predictive_value",
    "negative_predictive_value",
    "false_negative_rate",
    "false_positive_rate",
    "false_discovery_rate",
    "false_omission_rate",
    "positive_likelihood_ratio",
    "negative_likelihood_ratio",
    "hausdorff_distance",
    "hausdorff_distance_95",
    "hd95",
    "average_symmetric_surface_distance",
    "assd",
    "surface_distances",
    "distance_transform",
    "surface_mask",
]
