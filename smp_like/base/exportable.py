"""Helpers for graphs that export with dynamic sizes (torch.export, ONNX).

Adaptive average pooling (the pyramid pooling of PSPNet and UPerNet): ONNX export of ``adaptive_avg_pool{n}d`` to more than one bin bakes the example input's bins into the graph and
is wrong (or fails) for other sizes. While exporting, the pooling here is a product with bin-averaging matrices
built from ``arange`` and comparisons, which trace with symbolic sizes; in eager mode and under
``torch.compile`` it is PyTorch's own kernel, so values stay bit-identical to SMP's.
"""

from typing import List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd


def exporting() -> bool:
    """True under ``torch.export``, ONNX export or ``torch.jit.trace`` (not under plain ``torch.compile``)."""
    if torch.jit.is_scripting():
        return False
    return torch.compiler.is_exporting() or torch.jit.is_tracing()


def dense_when_exporting(x: torch.Tensor) -> torch.Tensor:
    """A contiguous copy while exporting, ``x`` itself otherwise.

    torch.export cannot prove the layout guards that batch norm adds for channels-last maps of dynamic size, so
    the exported graph works on contiguous copies; eager mode keeps SMP's layouts (and exact rounding).
    """
    return x.contiguous() if exporting() else x


def adaptive_pool_matrix(in_size: int, out_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(out_size, in_size) matrix whose row i averages bin i of adaptive average pooling along one axis.

    Bin i covers [floor(i * in / out), ceil((i + 1) * in / out)), PyTorch's definition of adaptive pooling.
    """
    i = torch.arange(out_size, device=device)
    start = torch.div(i * in_size, out_size, rounding_mode="floor")
    end = -torch.div(-(i + 1) * in_size, out_size, rounding_mode="floor")
    j = torch.arange(in_size, device=device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def adaptive_avg_pool_by_matrices(x: torch.Tensor, output_size: List[int]) -> torch.Tensor:
    """Adaptive average pooling of every spatial axis as products with bin-averaging matrices.

    Last axis first, on contiguous maps: (N, C, *leading, size, *pooled) is viewed as (..., size, prod(pooled))
    and multiplied by the (bins x size) matrix, so no reshape of a strided view asks torch.export to prove
    anything about the sizes.
    """
    x = x.contiguous()
    sizes = x.shape[2:]
    rest: List[int] = []
    for axis in range(len(sizes) - 1, -1, -1):
        bins = output_size[axis]
        pool = adaptive_pool_matrix(sizes[axis], bins, x.device, x.dtype)
        leading = list(x.shape[: 2 + axis])
        flat = x.reshape(leading + [sizes[axis], -1])
        x = torch.matmul(pool, flat).reshape(leading + [bins] + rest)
        rest = [bins] + rest
    return x


class AdaptiveAvgPool(nn.Module):
    """Adaptive average pooling to ``output_size`` bins per spatial axis (1D, 2D or 3D), exportable.

    No parameters, so state dicts are unchanged wherever it replaces ``nn.AdaptiveAvgPool{n}d``.
    """

    def __init__(self, output_size: Union[int, Sequence[int]], spatial_dims: int = 2):
        super().__init__()
        self.spatial_dims = nd.check_spatial_dims(spatial_dims, (1, 2, 3))
        self.output_size = list(nd.as_tuple(output_size, spatial_dims, "output_size"))

    def extra_repr(self) -> str:
        return f"output_size={tuple(self.output_size)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if exporting():
            return adaptive_avg_pool_by_matrices(x, self.output_size)
        if self.spatial_dims == 2:
            return F.adaptive_avg_pool2d(x, self.output_size)
        if self.spatial_dims == 3:
            return F.adaptive_avg_pool3d(x, self.output_size)
        return F.adaptive_avg_pool1d(x, self.output_size)
