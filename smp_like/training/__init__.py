"""Training: a config-driven Lightning pipeline (``smp-like train`` / ``test``), the shapes demo, confusion metrics.

Import-light: Lightning, pydantic, albumentations and matplotlib load only when a name that needs them is used
(``SegmentationTask``, ``train``, ``load_config``, ...), never on ``import smp_like`` or ``import smp_like.training``.
"""

import importlib
from typing import Any

from smp_like.training.demo import run_demo
from smp_like.training.evaluation import confusion_matrix, per_class_iou, pixel_accuracy

_LAZY = {
    "SegmentationTask": "smp_like.training.task",
    "validation_forward": "smp_like.training.task",
    "NonFiniteLossError": "smp_like.training.task",
    "SegmentationDataModule": "smp_like.training.data",
    "ConfusionCounts": "smp_like.training.metrics",
    "TrainConfig": "smp_like.training.config",
    "ConfigError": "smp_like.training.config",
    "load_config": "smp_like.training.config",
    "parse_config": "smp_like.training.config",
    "train": "smp_like.training.run",
    "RunError": "smp_like.training.run",
    "evaluate": "smp_like.training.evaluate",
    "PlotCallback": "smp_like.training.callbacks",
    "GenerativeTask": "smp_like.training.generative_task",
    "ClassificationTask": "smp_like.training.classification_task",
    "ImageDataModule": "smp_like.training.generative_data",
}

__all__ = ["confusion_matrix", "per_class_iou", "pixel_accuracy", "run_demo", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smp_like.training' has no attribute {name!r}")
