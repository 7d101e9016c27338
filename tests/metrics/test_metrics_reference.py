"""smp_like.metrics against independent references written here: confusion counts by plain Python/NumPy loops
over pixels, scores from the textbook formulas, 3D == reshaped 2D, edge cases and bad input."""

import itertools
import warnings

import numpy as np
import pytest
import torch

import smp_like.metrics as M


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


def loop_counts_multilabel(output, target, ignore_index=None):
    """tp, fp, fn, tn per (image, channel) by visiting every pixel."""
    out, tgt = np.asarray(output), np.asarray(target)
    n, c = out.shape[:2]
    counts = np.zeros((4, n, c), dtype=np.int64)
    for i in range(n):
        for j in range(c):
            for o, t in zip(out[i, j].ravel(), tgt[i, j].ravel()):
                if ignore_index is not None and t == ignore_index:
                    continue
                key = {(1, 1): 0, (1, 0): 1, (0, 1): 2, (0, 0): 3}[(int(o), int(t))]
                counts[key, i, j] += 1
    return counts


def loop_counts_multiclass(output, target, num_classes, ignore_index=None):
    out, tgt = np.asarray(output), np.asarray(target)
    n = out.shape[0]
    counts = np.zeros((4, n, num_classes), dtype=np.int64)
    for i in range(n):
        for o, t in zip(out[i].ravel(), tgt[i].ravel()):
            if ignore_index is not None and t == ignore_index:
                continue
            for k in range(num_classes):
                key = {(True, True): 0, (True, False): 1, (False, True): 2, (False, False): 3}[
                    (o == k, t == k)
                ]
                counts[key, i, k] += 1
    return counts


@pytest.mark.parametrize("spatial", [(4, 5), (3, 3, 4)])
@pytest.mark.parametrize("ignore_index", [None, -1])
def test_get_stats_multilabel_equals_pixel_loop(spatial, ignore_index):
    rng = np.random.default_rng(0)
    output = rng.random((2, 3) + spatial)
    target = (rng.random((2, 3) + spatial) > 0.5).astype(np.int64)
    if ignore_index is not None:
        target[0, 1, 0] = ignore_index
        target[1, 2] = ignore_index  # a fully ignored channel
    stats = M.get_stats(
        torch.from_numpy(output),
        torch.from_numpy(target),
        "multilabel",
        ignore_index=ignore_index,
        threshold=0.5,
    )
    binarised_target = np.where(target == ignore_index, ignore_index, target) if ignore_index else target
    expected = loop_counts_multilabel(output >= 0.5, binarised_target, ignore_index)
    for got, want in zip(stats, expected):
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("spatial", [(4, 5), (3, 3, 4)])
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_get_stats_multiclass_equals_pixel_loop(spatial, ignore_index):
    rng = np.random.default_rng(1)
    output = rng.integers(0, 3, (2,) + spatial)
    target = rng.integers(0, 3, (2,) + spatial)
    if ignore_index is not None:
        target[1, 0] = ignore_index
    stats = M.get_stats(
        torch.from_numpy(output),
        torch.from_numpy(target),
        "multiclass",
        num_classes=3,
        ignore_index=ignore_index,
    )
    expected = loop_counts_multiclass(output, target, 3, ignore_index)
    for got, want in zip(stats, expected):
        np.testing.assert_array_equal(got.numpy(), want)


def test_per_class_thresholds():
    rng = np.random.default_rng(2)
    output = rng.random((2, 3, 4, 4))
    target = (rng.random((2, 3, 4, 4)) > 0.5).astype(np.int64)
    thresholds = [0.2, 0.5, 0.8]
    stats = M.get_stats(
        torch.from_numpy(output), torch.from_numpy(target), "multilabel", threshold=thresholds
    )
    binary = output >= np.asarray(thresholds).reshape(1, 3, 1, 1)
    for got, want in zip(stats, loop_counts_multilabel(binary, target)):
        np.testing.assert_array_equal(got.numpy(), want)


def reference_scores(tp, fp, fn, tn, beta=1.0):
    """Textbook formulas on float64 NumPy counts; 0/0 -> NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        b2 = beta**2
        return {
            "fbeta_score": (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp),
            "f1_score": 2 * tp / (2 * tp + fn + fp),
            "dice_score": 2 * tp / (2 * tp + fn + fp),
            "iou_score": tp / (tp + fp + fn),
            "accuracy": (tp + tn) / (tp + fp + fn + tn),
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "balanced_accuracy": (tp / (tp + fn) + tn / (tn + fp)) / 2,
            "negative_predictive_value": tn / (tn + fn),
        }


@pytest.mark.parametrize("zero_division", [0.0, 1.0, 0.25])
def test_scores_equal_textbook_formulas_for_every_reduction(zero_division):
    rng = np.random.default_rng(3)
    tp, fp, fn, tn = (rng.integers(0, 5, (3, 4)) for _ in range(4))
    tp[:, 1] = fp[:, 1] = fn[:, 1] = 0  # a class absent from the batch
    tn[0, 2] = fp[0, 2] = 0
    counts = [torch.from_numpy(t) for t in (tp, fp, fn, tn)]
    weights = np.array([0.5, 1.0, 2.0, 0.5])
    w = weights / weights.sum()

    def fill(x):
        return np.where(np.isnan(x), zero_division, x)

    for name in reference_scores(tp, fp, fn, tn):
        beta = {"fbeta_score": 2.0}.get(name)
        extra = {"beta": beta} if beta else {}

        def ref(a, b, c, d, name=name, beta=beta or 1.0):
            return reference_scores(a.astype(float), b.astype(float), c.astype(float), d.astype(float), beta)[
                name
            ]

        expected = {
            "none": fill(ref(tp, fp, fn, tn)),
            "micro": fill(ref(tp.sum(), fp.sum(), fn.sum(), tn.sum())),
            "macro": fill(ref(tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0))).mean(),
            "weighted": (fill(ref(tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0))) * w).sum(),
            "micro-imagewise": fill(ref(tp.sum(1), fp.sum(1), fn.sum(1), tn.sum(1))).mean(),
            "macro-imagewise": fill(ref(tp, fp, fn, tn)).mean(0).mean(),
        }
        fn_ = getattr(M, name)
        for reduction, want in expected.items():
            cw = list(weights) if reduction == "weighted" else None
            got = fn_(*counts, reduction=reduction, class_weights=cw, zero_division=zero_division, **extra)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7, err_msg=f"{name} {reduction}")


def test_dice_score_is_f1_and_matches_set_formula():
    rng = np.random.default_rng(4)
    a = rng.random((2, 1, 6, 6)) > 0.5
    b = rng.random((2, 1, 6, 6)) > 0.5
    stats = M.get_stats(torch.from_numpy(a).long(), torch.from_numpy(b).long(), "binary")
    dice = M.dice_score(*stats, reduction="none")
    for i in range(2):
        inter = np.logical_and(a[i], b[i]).sum()
        np.testing.assert_allclose(dice[i, 0].item(), 2 * inter / (a[i].sum() + b[i].sum()), rtol=1e-6)
    torch.testing.assert_close(dice, M.f1_score(*stats))


# ------------------------------------------------------------------------------------------------------------
# 3D: counts are per image/class sums, so (N, C, D, H, W) must equal the same voxels laid out as 2D.
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
def test_3d_stats_equal_reshaped_2d(mode):
    g = torch.Generator().manual_seed(5)
    if mode == "multiclass":
        output = torch.randint(0, 3, (2, 3, 4, 5), generator=g)
        target = torch.randint(0, 3, (2, 3, 4, 5), generator=g)
        target[0, 0] = -1
        kwargs = dict(num_classes=3, ignore_index=-1)
        flat = (output.reshape(2, 12, 5), target.reshape(2, 12, 5))
    else:
        c = 1 if mode == "binary" else 2
        output = torch.rand(2, c, 3, 4, 5, generator=g)
        target = (torch.rand(2, c, 3, 4, 5, generator=g) > 0.5).long()
        kwargs = dict(threshold=0.5)
        flat = (output.reshape(2, c, 12, 5), target.reshape(2, c, 12, 5))
    s3 = M.get_stats(output, target, mode, **kwargs)
    s2 = M.get_stats(*flat, mode, **kwargs)
    for a, b in zip(s3, s2):
        assert torch.equal(a, b)
    for name in ["iou_score", "f1_score", "dice_score", "accuracy", "balanced_accuracy", "fbeta_score"]:
        for reduction in ["micro", "macro", "micro-imagewise", "macro-imagewise", None]:
            torch.testing.assert_close(
                getattr(M, name)(*s3, reduction=reduction), getattr(M, name)(*s2, reduction=reduction)
            )


# ------------------------------------------------------------------------------------------------------------
# Edge cases: defined values, no NaN.
# ------------------------------------------------------------------------------------------------------------


ALL_METRICS = [
    "fbeta_score",
    "f1_score",
    "dice_score",
    "iou_score",
    "accuracy",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "balanced_accuracy",
    "positive_predictive_value",
    "negative_predictive_value",
    "false_negative_rate",
    "false_positive_rate",
    "false_discovery_rate",
    "false_omission_rate",
    "positive_likelihood_ratio",
    "negative_likelihood_ratio",
]


@pytest.mark.parametrize(
    "reduction", ["micro", "macro", "weighted", "micro-imagewise", "macro-imagewise", None]
)
@pytest.mark.parametrize("name", ALL_METRICS)
def test_all_zero_counts_are_never_nan(name, reduction):
    # All-ignored input gives all-zero counts: every 0/0 is replaced by zero_division (SMP: NaN for "micro").
    z = torch.zeros(2, 3, dtype=torch.long)
    cw = [1.0, 1.0, 1.0] if reduction == "weighted" else None
    for zero_division in [0.0, 1.0]:
        value = getattr(M, name)(
            z, z, z, z, reduction=reduction, class_weights=cw, zero_division=zero_division
        )
        assert not torch.isnan(value).any()


def test_all_ignored_pixels_give_zero_counts_and_defined_scores():
    target = torch.full((2, 4, 4), -1)
    output = torch.randint(0, 3, (2, 4, 4))
    tp, fp, fn, tn = M.get_stats(output, target, "multiclass", num_classes=3, ignore_index=-1)
    assert int(tp.sum() + fp.sum() + fn.sum() + tn.sum()) == 0
    assert M.iou_score(tp, fp, fn, tn, reduction="micro").item() == 1.0
    target = torch.full((2, 2, 4, 4), 7)
    tp, fp, fn, tn = M.get_stats(torch.ones(2, 2, 4, 4).long(), target, "multilabel", ignore_index=7)
    assert int(tp.sum() + fp.sum() + fn.sum() + tn.sum()) == 0


def test_perfect_prediction_scores_one_and_empty_masks_follow_zero_division():
    target = torch.randint(0, 3, (2, 5, 5))
    stats = M.get_stats(target, target, "multiclass", num_classes=4)  # class 3 absent
    for name in ["iou_score", "f1_score", "dice_score", "accuracy", "recall", "precision"]:
        assert getattr(M, name)(*stats, reduction="macro").item() == pytest.approx(1.0)
        assert getattr(M, name)(*stats, reduction="micro").item() == pytest.approx(1.0)
    empty = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    stats = M.get_stats(empty, empty, "binary")
    assert M.iou_score(*stats, reduction="micro", zero_division=1.0).item() == 1.0
    assert M.iou_score(*stats, reduction="micro", zero_division=0.0).item() == 0.0
    assert M.accuracy(*stats, reduction="micro").item() == 1.0


def test_zero_division_warn_warns_and_uses_zero():
    z = torch.zeros(1, 2, dtype=torch.long)
    with pytest.warns(UserWarning, match="Zero division"):
        value = M.iou_score(z, z, z, z, reduction="macro", zero_division="warn")
    assert value.item() == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.iou_score(z + 1, z, z, z, reduction="macro", zero_division="warn")  # nothing to warn about


# ------------------------------------------------------------------------------------------------------------
# Bad input: ValueError naming the problem.
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(output=torch.zeros(2, 1, 4, 4).long(), target=torch.zeros(2, 1, 4, 5).long(), mode="binary"),
            "shape",
        ),
        (
            dict(
                output=torch.zeros(2, 1, 4, 4).long(), target=torch.zeros(2, 1, 4, 4).long(), mode="binaire"
            ),
            "mode='binaire'",
        ),
        (
            dict(output=torch.zeros(2, 1, 4, 4), target=torch.zeros(2, 1, 4, 4).long(), mode="binary"),
            "threshold",
        ),
        (
            dict(output=torch.zeros(2, 1, 4, 4).long(), target=torch.zeros(2, 1, 4, 4), mode="binary"),
            "integer",
        ),
        (
            dict(output=torch.zeros(2, 4, 4).long(), target=torch.zeros(2, 4, 4).long(), mode="multiclass"),
            "num_classes",
        ),
        (
            dict(
                output=torch.zeros(2, 4, 4).long(),
                target=torch.zeros(2, 4, 4).long(),
                mode="multiclass",
                num_classes=3,
                ignore_index=1,
            ),
            "ignore_index=1",
        ),
        (
            dict(
                output=torch.zeros(2, 4, 4).long(),
                target=torch.zeros(2, 4, 4).long(),
                mode="multiclass",
                num_classes=3,
                threshold=0.5,
            ),
            "threshold",
        ),
        (
            dict(
                output=torch.zeros(2, 3, 4),
                target=torch.zeros(2, 3, 4).long(),
                mode="multilabel",
                threshold=[0.5, 0.5],
            ),
            "threshold",
        ),
    ],
)
def test_get_stats_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.get_stats(**kwargs)


def test_metric_bad_arguments():
    counts = [torch.ones(2, 3, dtype=torch.long)] * 4
    with pytest.raises(ValueError, match="reduction='average'"):
        M.iou_score(*counts, reduction="average")
    with pytest.raises(ValueError, match="class_weights"):
        M.iou_score(*counts, reduction="weighted")
    with pytest.raises(ValueError, match="class_weights has 2"):
        M.iou_score(*counts, reduction="weighted", class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="zero_division"):
        M.iou_score(*counts, zero_division="0")
    with pytest.raises(ValueError, match="shape"):
        M.iou_score(counts[0], counts[1][:, :2], counts[2], counts[3])
    with pytest.raises(ValueError, match="imagewise"):
        M.iou_score(*[c[0] for c in counts], reduction="macro-imagewise")


def test_reductions_cover_the_smp_list():
    counts = [torch.randint(1, 5, (2, 3)) for _ in range(4)]
    for reduction, cw in itertools.product(
        [
            "micro",
            "macro",
            "weighted",
            "micro-imagewise",
            "macro-imagewise",
            "weighted-imagewise",
            "none",
            None,
        ],
        [[1.0, 2.0, 3.0]],
    ):
        assert torch.isfinite(M.iou_score(*counts, reduction=reduction, class_weights=cw)).all()
