"""Surface distances (HD, HD95, ASSD) and the PyTorch distance transform against SciPy-based brute force.

SciPy is a test-only dependency: the references below use ``scipy.ndimage.binary_erosion`` for surfaces,
``scipy.ndimage.distance_transform_edt`` for distances and NumPy's percentile, on small 2D and 3D masks with
anisotropic spacing.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import smp_like.metrics as M
from smp_like.metrics.distance import distance_transform, surface_mask

ndi = pytest.importorskip("scipy.ndimage")


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """Run this module's tiny tensors on one thread, restoring the setting afterwards.

    On a busy 2-core machine the intra-op thread pool costs far more than it saves on 30-element tensors
    (measured: 35 ms vs 0.5 ms per multiclass FocalLoss call).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def scipy_directed(a, b, spacing):
    """Distances from the surface voxels of ``a`` to the surface of ``b`` (SciPy EDT on ~surface(b))."""
    sa = a & ~ndi.binary_erosion(a, border_value=0)
    sb = b & ~ndi.binary_erosion(b, border_value=0)
    dist_to_b = ndi.distance_transform_edt(~sb, sampling=spacing)
    return dist_to_b[sa]


def scipy_metrics(pred, gt, spacing):
    d_pg = scipy_directed(pred, gt, spacing)
    d_gp = scipy_directed(gt, pred, spacing)
    return {
        "hd": max(d_pg.max(), d_gp.max()),
        "hd95": max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)),
        "assd": (d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size),
    }


def blob(shape, rng, density=0.5):
    """A random mask smoothed a little so that it has interior, holes and several components."""
    mask = rng.random(shape) < density
    mask = ndi.binary_opening(mask) | (rng.random(shape) < 0.05)
    if not mask.any():
        mask.flat[rng.integers(mask.size)] = True
    return mask


CASES = [
    ((9, 11), (1.0, 1.0)),
    ((10, 8), (0.5, 2.0)),
    ((6, 7, 8), (1.0, 1.0, 1.0)),
    ((5, 8, 7), (2.5, 0.7, 1.3)),
]


@pytest.mark.parametrize("shape, spacing", CASES)
def test_distance_transform_matches_scipy(shape, spacing):
    rng = np.random.default_rng(len(shape))
    for trial in range(4):
        mask = rng.random(shape) < [0.02, 0.2, 0.6, 0.95][trial]
        if mask.all():
            mask.flat[0] = False
        expected = ndi.distance_transform_edt(mask, sampling=spacing)
        for method in ["brute", "envelope"]:
            got = distance_transform(torch.from_numpy(~mask), spacing, method=method).numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_distance_transform_batch_axes_and_empty_feature_set():
    rng = np.random.default_rng(7)
    masks = rng.random((2, 3, 6, 7)) < 0.3
    masks[1, 2] = False  # no features -> inf
    got = distance_transform(torch.from_numpy(masks), (1.5, 0.5), spatial_dims=2).numpy()
    for i in range(2):
        for j in range(3):
            if masks[i, j].any():
                np.testing.assert_allclose(
                    got[i, j], ndi.distance_transform_edt(~masks[i, j], sampling=(1.5, 0.5))
                )
            else:
                assert np.isinf(got[i, j]).all()


@pytest.mark.parametrize("shape", [(7, 9), (4, 6, 5)])
def test_surface_mask_matches_scipy_erosion(shape):
    rng = np.random.default_rng(8)
    for _ in range(3):
        mask = rng.random(shape) < 0.6
        expected = mask & ~ndi.binary_erosion(mask, border_value=0)
        np.testing.assert_array_equal(surface_mask(torch.from_numpy(mask)).numpy(), expected)


@pytest.mark.parametrize("shape, spacing", CASES)
def test_hd_hd95_assd_match_scipy_brute_force(shape, spacing):
    rng = np.random.default_rng(sum(shape))
    n, c = 2, 2
    pred = np.stack([np.stack([blob(shape, rng) for _ in range(c)]) for _ in range(n)])
    gt = np.stack([np.stack([blob(shape, rng) for _ in range(c)]) for _ in range(n)])
    args = (torch.from_numpy(pred), torch.from_numpy(gt))
    hd = M.hausdorff_distance(*args, mode="multilabel", spacing=spacing)
    hd95 = M.hausdorff_distance_95(*args, mode="multilabel", spacing=spacing)
    assd = M.average_symmetric_surface_distance(*args, mode="multilabel", spacing=spacing)
    assert hd.shape == hd95.shape == assd.shape == (n, c)
    for i in range(n):
        for j in range(c):
            ref = scipy_metrics(pred[i, j], gt[i, j], spacing)
            assert hd[i, j].item() == pytest.approx(ref["hd"], rel=1e-6)
            assert hd95[i, j].item() == pytest.approx(ref["hd95"], rel=1e-6)
            assert assd[i, j].item() == pytest.approx(ref["assd"], rel=1e-6)


def test_multiclass_and_thresholded_inputs():
    rng = np.random.default_rng(9)
    labels_pred = rng.integers(0, 3, (2, 8, 9))
    labels_gt = rng.integers(0, 3, (2, 8, 9))
    hd = M.hausdorff_distance(
        torch.from_numpy(labels_pred),
        torch.from_numpy(labels_gt),
        mode="multiclass",
        num_classes=3,
        spacing=(1.0, 2.0),
    )
    for i in range(2):
        for k in range(3):
            ref = scipy_metrics(labels_pred[i] == k, labels_gt[i] == k, (1.0, 2.0))["hd"]
            assert hd[i, k].item() == pytest.approx(ref)
    scores = torch.rand(1, 1, 6, 6)
    gt = (torch.rand(1, 1, 6, 6) > 0.5).long()
    by_threshold = M.average_symmetric_surface_distance(scores, gt, threshold=0.5)
    by_mask = M.average_symmetric_surface_distance((scores >= 0.5).long(), gt)
    torch.testing.assert_close(by_threshold, by_mask)


def test_hand_computed_values():
    # Two single-voxel objects 3 voxels apart along an axis with spacing 2 -> every distance is 6.
    a = torch.zeros(1, 1, 1, 7, dtype=torch.long)
    b = torch.zeros_like(a)
    a[..., 1] = 1
    b[..., 4] = 1
    for fn in [M.hausdorff_distance, M.hd95, M.assd]:
        assert fn(a, b, spacing=(1.0, 2.0)).item() == pytest.approx(6.0)
    # A 3x3 square against the same square shifted diagonally by one voxel: HD is the corner distance sqrt(2).
    a = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    a[..., 2:5, 2:5] = 1
    b = torch.roll(a, shifts=(1, 1), dims=(2, 3))
    assert M.hausdorff_distance(a, b).item() == pytest.approx(math.sqrt(2))


def test_perfect_prediction_is_zero_and_empty_masks_are_defined():
    rng = np.random.default_rng(10)
    mask = torch.from_numpy(np.stack([blob((6, 7, 5), rng)]))[None]
    for fn in [M.hausdorff_distance, M.hausdorff_distance_95, M.average_symmetric_surface_distance]:
        assert fn(mask, mask, spacing=(1.0, 2.0, 0.5)).item() == 0.0
        empty = torch.zeros_like(mask)
        assert fn(empty, empty).item() == 0.0  # nothing to find, nothing missed
        diagonal = math.sqrt(5**2 + 6**2 + 4**2)
        assert fn(mask, empty).item() == pytest.approx(diagonal)  # one side empty: the image diagonal
        assert fn(empty, mask, empty_value=123.0).item() == 123.0
        assert math.isinf(fn(empty, mask, empty_value=float("inf")).item())


def test_reduction_and_3d_finite_values():
    g = torch.Generator().manual_seed(11)
    pred = (torch.rand(2, 3, 4, 5, 6, generator=g) > 0.5).long()
    gt = (torch.rand(2, 3, 4, 5, 6, generator=g) > 0.5).long()
    values = M.hd95(pred, gt, mode="multilabel", spacing=(3.0, 1.0, 1.0))
    assert values.shape == (2, 3) and torch.isfinite(values).all()
    assert M.hd95(
        pred, gt, mode="multilabel", spacing=(3.0, 1.0, 1.0), reduction="mean"
    ).item() == pytest.approx(values.mean().item())


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: M.hausdorff_distance(torch.zeros(1, 1, 4, 4).long(), torch.zeros(1, 1, 4, 5).long()),
            "shape",
        ),
        (
            lambda: M.hausdorff_distance(
                torch.zeros(1, 1, 4, 4).long(), torch.zeros(1, 1, 4, 4).long(), mode="x"
            ),
            "mode='x'",
        ),
        (
            lambda: M.hausdorff_distance(
                torch.zeros(1, 4, 4).long(), torch.zeros(1, 4, 4).long(), mode="multiclass"
            ),
            "num_classes",
        ),
        (
            lambda: M.hausdorff_distance(
                torch.zeros(1, 1, 4, 4).long(), torch.zeros(1, 1, 4, 4).long(), spacing=(1.0,)
            ),
            "spacing",
        ),
        (
            lambda: M.hausdorff_distance(
                torch.zeros(1, 1, 4, 4).long(), torch.zeros(1, 1, 4, 4).long(), spacing=(1.0, -1.0)
            ),
            "positive",
        ),
        (lambda: M.hausdorff_distance(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4).long()), "threshold"),
        (
            lambda: M.hausdorff_distance(
                torch.zeros(1, 1, 4, 4).long(), torch.zeros(1, 1, 4, 4).long(), percentile=101
            ),
            "percentile",
        ),
        (
            lambda: M.hausdorff_distance(
                torch.zeros(1, 1, 4, 4).long(), torch.zeros(1, 1, 4, 4).long(), reduction="sum"
            ),
            "reduction",
        ),
        (lambda: distance_transform(torch.zeros(3, 3, dtype=torch.bool), method="fast"), "method"),
    ],
)
def test_surface_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_runtime_does_not_import_scipy_or_heavy_packages():
    code = (
        "import sys, torch; import smp_like.metrics as M; import smp_like.losses as L\n"
        "a = torch.zeros(1, 1, 5, 5, dtype=torch.long); a[..., 1:3, 1:3] = 1\n"
        "M.hausdorff_distance(a, a.roll(1, 2)); L.BoundaryLoss('binary')(torch.randn(1, 1, 5, 5), a)\n"
        "bad = [m for m in ('scipy', 'timm', 'albumentations', 'matplotlib', 'segmentation_models_pytorch')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
