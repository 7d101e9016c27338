"""The one ImageNet normalisation constant: the mean and std (RGB, inputs in [0, 1]) that nearly every pretrained
encoder expects. Encoder families refer to it instead of writing the numbers again."""

from typing import Any, Dict, List

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGENET_SETTINGS"]

IMAGENET_MEAN: List[float] = [0.485, 0.456, 0.406]
IMAGENET_STD: List[float] = [0.229, 0.224, 0.225]
# Preprocessing entries of a pretrained setting, as SMP's ``pretrained_settings`` spell them.
IMAGENET_SETTINGS: Dict[str, Any] = {
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "input_space": "RGB",
    "input_range": [0, 1],
}
