"""SMP's ``segmentation_models_pytorch.base.utils``: small helpers for code that runs under torch.compile."""

import torch


def is_torch_compiling() -> bool:
    """True while ``torch.compile`` (dynamo) traces the caller; shape checks are skipped then."""
    return bool(torch.compiler.is_compiling())


__all__ = ["is_torch_compiling"]
