"""Prediction engine: sliding windows, test-time augmentation, prediction over files, export.

One engine serves ``smp-like predict``, validation during training and the Python API:

* :func:`sliding_window` — MONAI-compatible sliding-window inference (2D/3D, batched windows, Gaussian or
  constant blending, any output scale);
* :func:`tta` — test-time augmentation (flips, D4, 3D flips) run as one batch and merged in probability space;
* :func:`predict_files` — images and volumes on disk, including TIFFs larger than memory;
* :func:`export_model` — ONNX / TorchScript / ExportedProgram files checked against eager outputs.

Heavy packages (tifffile, nibabel, onnxruntime) are imported where first used.
"""

from smp_like.inference.sliding_window import count_windows, importance_map, sliding_window, window_starts
from smp_like.inference.tta import TTA, Transform, get_activation, tta, tta_transforms
from smp_like.inference.predict import PredictReport, predict_files
from smp_like.inference.export import ExportMismatch, ExportResult, export_model

__all__ = [
    "ExportMismatch",
    "ExportResult",
    "PredictReport",
    "TTA",
    "Transform",
    "count_windows",
    "export_model",
    "get_activation",
    "importance_map",
    "predict_files",
    "sliding_window",
    "tta",
    "tta_transforms",
    "window_starts",
]
