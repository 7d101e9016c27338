"""Training utilities: the shapes demo and confusion-matrix metrics.

Kept import-light: matplotlib, albumentations, tqdm and the model modules are imported where first used.
"""

from smp_like.training.demo import run_demo
from smp_like.training.evaluation import confusion_matrix, per_class_iou, pixel_accuracy

__all__ = ["confusion_matrix", "per_class_iou", "pixel_accuracy", "run_demo"]
