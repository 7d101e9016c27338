"""Mode names shared by the segmentation losses (same strings as segmentation_models_pytorch)."""

BINARY_MODE: str = "binary"
"""One foreground channel: ``y_pred`` is (N, 1, *spatial), ``y_true`` is (N, 1, *spatial) or (N, *spatial)."""

MULTICLASS_MODE: str = "multiclass"
"""Mutually exclusive classes: ``y_pred`` is (N, C, *spatial) scores, ``y_true`` (N, *spatial) class indices."""

MULTILABEL_MODE: str = "multilabel"
"""Independent binary channels: ``y_pred`` and ``y_true`` are both (N, C, *spatial)."""

MODES = (BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE)
