"""Sequence-scan operators: Mamba's selective scan, Mamba-2's SSD scan, and n-d scan orders.

Pure-PyTorch implementations (CPU or CUDA) with dispatch to mamba_ssm's kernels on CUDA when it is installed.
See docs/ops.md.
"""

from .scan_modes import SCAN_MODES, merge_sequences, num_directions, scan_directions, scan_sequences
from .selective_scan import SCAN_BACKENDS, mamba_ssm_available, selective_scan
from .ssd import mamba_ssm_ssd_available, ssd_scan

__all__ = [
    "selective_scan",
    "SCAN_BACKENDS",
    "mamba_ssm_available",
    "ssd_scan",
    "mamba_ssm_ssd_available",
    "SCAN_MODES",
    "scan_directions",
    "num_directions",
    "scan_sequences",
    "merge_sequences",
]
