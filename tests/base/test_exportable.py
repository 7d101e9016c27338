"""Export helpers: the matrix form of adaptive pooling equals PyTorch's kernel; constant padding by concatenation."""

import pytest
import torch
import torch.nn.functional as F

from smp_like.base.exportable import AdaptiveAvgPool, adaptive_avg_pool_by_matrices
from smp_like.base.strides import pad_to_size

REFERENCE_POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


@pytest.mark.parametrize(
    "spatial_dims, shape",
    [(1, (2, 3, 11)), (2, (2, 3, 7, 13)), (2, (1, 2, 2, 5)), (3, (1, 2, 5, 9, 6))],
)
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_matrix_pooling_equals_pytorch(spatial_dims, shape, bins):
    # Including inputs smaller than the number of bins (bins then overlap).
    x = torch.randn(*shape, dtype=torch.float64)
    reference = REFERENCE_POOLS[spatial_dims](x, bins)
    torch.testing.assert_close(adaptive_avg_pool_by_matrices(x, [bins] * spatial_dims), reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(AdaptiveAvgPool(bins, spatial_dims)(x), reference, rtol=0, atol=0)


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 5, 7, 9)), (3, (1, 3, 5, 6, 7))])
def test_exporting_path_equals_eager(spatial_dims, shape, monkeypatch):
    x = torch.randn(*shape)
    pools = [AdaptiveAvgPool(bins, spatial_dims) for bins in (1, 2, 3, 6)]
    eager = [pool(x) for pool in pools]
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)  # take the path torch.export takes
    for pool, expected in zip(pools, eager):
        torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)



def test_padding_refuses_smaller_target_and_too_small_reflect():
    with pytest.raises(ValueError, match="smaller"):
        pad_to_size(torch.randn(1, 1, 8, 8), [4, 8])
    with pytest.raises(ValueError, match="too small to pad.*'reflect'"):
        pad_to_size(torch.randn(1, 1, 3, 8), [8, 8], "reflect")
