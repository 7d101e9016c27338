"""smp_like.metrics against segmentation_models_pytorch 0.6 (black-box oracle).

get_stats for every mode (with threshold and ignore_index where SMP supports them) and every metric x
reduction x zero_division, on random counts that include 0/0 cases. SMP's NaN for "micro" on all-zero counts
is the one documented difference (tested in test_metrics_reference.py).
"""

import inspect
import warnings

import pytest
import torch

import smp_like.metrics as M

SM = pytest.importorskip("segmentation_models_pytorch.metrics")

pytestmark = pytest.mark.conformance


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


METRICS = [
    "fbeta_score",
    "f1_score",
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
REDUCTIONS = [
    "micro",
    "macro",
    "weighted",
    "micro-imagewise",
    "macro-imagewise",
    "weighted-imagewise",
    "none",
    None,
]
SPATIAL = {2: (5, 6), 3: (3, 4, 5)}


@pytest.mark.parametrize("name", METRICS + ["get_stats"])
def test_signature_matches_smp(name):
    mine = inspect.signature(getattr(M, name))
    ref = inspect.signature(getattr(SM, name))
    assert list(mine.parameters) == list(ref.parameters)
    for key, param in ref.parameters.items():
        assert mine.parameters[key].default == param.default, key


def random_counts(seed, n=4, c=3):
    """Counts with deliberate zero denominators: an empty class, an empty image, a class with no negatives."""
    g = torch.Generator().manual_seed(seed)
    tp, fp, fn = (torch.randint(0, 6, (n, c), generator=g) for _ in range(3))
    tn = torch.randint(0, 30, (n, c), generator=g)
    tp[:, 0] = 0
    fp[:, 0] = 0
    fn[:, 0] = 0  # class 0 never present nor predicted
    tp[1], fp[1], fn[1] = 0, 0, 0  # image 1 empty
    tn[2, 1] = 0
    fp[2, 1] = 0  # no negatives at all for image 2, class 1
    return tp, fp, fn, tn


def call(module, name, counts, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(module, name)(*counts, **kwargs)
    return value, [str(w.message) for w in caught]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", METRICS)
def test_metric_matches_smp(name, reduction):
    for seed in range(2):
        counts = random_counts(seed)
        for zero_division in [1.0, 0.0, "warn"]:
            for weights in [None, [0.2, 1.0, 3.0]]:
                if weights is None and reduction in ("weighted", "weighted-imagewise"):
                    continue
                kwargs = dict(reduction=reduction, class_weights=weights, zero_division=zero_division)
                if name == "fbeta_score":
                    kwargs["beta"] = 2.0 if seed else 0.5
                mine, mine_warn = call(M, name, counts, **kwargs)
                ref, ref_warn = call(SM, name, counts, **kwargs)
                assert mine.shape == ref.shape and mine.dtype == ref.dtype
                torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-6, equal_nan=False)
                assert bool(mine_warn) == bool(ref_warn)


@pytest.mark.parametrize("name", METRICS)
def test_metric_float_and_1d_counts_match_smp(name):
    tp, fp, fn, tn = random_counts(3)
    counts64 = [t.double() for t in (tp, fp, fn, tn)]
    for reduction in ["micro", "macro", None]:
        mine, _ = call(M, name, counts64, reduction=reduction)
        ref, _ = call(SM, name, counts64, reduction=reduction)
        assert mine.dtype == ref.dtype == torch.float64
        torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)
        counts1d = [t[0] for t in (tp, fp, fn, tn)]
        mine, _ = call(M, name, counts1d, reduction=reduction)
        ref, _ = call(SM, name, counts1d, reduction=reduction)
        torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-6)


def assert_stats_equal(mine, ref):
    for a, b in zip(mine, ref):
        assert a.dtype == torch.int64 and a.shape == b.shape
        assert torch.equal(a, b.long())


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_get_stats_thresholded_matches_smp(mode, spatial_dims):
    g = torch.Generator().manual_seed(0)
    c = 1 if mode == "binary" else 3
    shape = (2, c) + SPATIAL[spatial_dims]
    output = torch.rand(shape, generator=g)
    target = (torch.rand(shape, generator=g) > 0.5).long()
    for threshold in [0.1, 0.5, 0.9]:
        kwargs = dict(mode=mode, threshold=threshold)
        assert_stats_equal(M.get_stats(output, target, **kwargs), SM.get_stats(output, target, **kwargs))
    masks = (output > 0.3).long()
    assert_stats_equal(M.get_stats(masks, target, mode), SM.get_stats(masks, target, mode))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("ignore_index", [None, -1, 255])
def test_get_stats_multiclass_matches_smp(ignore_index, spatial_dims):
    g = torch.Generator().manual_seed(1)
    num_classes = 4
    shape = (3,) + SPATIAL[spatial_dims]
    output = torch.randint(0, num_classes, shape, generator=g)
    target = torch.randint(0, num_classes, shape, generator=g)
    target[0, 0] = 3  # a class present in one image only
    output[2] = 0  # an image predicting one class everywhere
    if ignore_index is not None:
        target[1, ..., :2] = ignore_index
        target[2] = ignore_index  # a fully ignored image
    kwargs = dict(mode="multiclass", num_classes=num_classes, ignore_index=ignore_index)
    assert_stats_equal(M.get_stats(output, target, **kwargs), SM.get_stats(output, target, **kwargs))


def test_get_stats_binary_without_channel_axis_matches_smp():
    # SMP reads the second axis as "classes" whatever it is; smp_like keeps that convention.
    output = torch.rand(2, 4, 5)
    target = (torch.rand(2, 4, 5) > 0.5).long()
    kwargs = dict(mode="binary", threshold=0.5)
    assert_stats_equal(M.get_stats(output, target, **kwargs), SM.get_stats(output, target, **kwargs))


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
def test_every_metric_reduction_and_mode_matches_smp(mode):
    g = torch.Generator().manual_seed(2)
    if mode == "multiclass":
        output = torch.randint(0, 3, (2, 6, 7), generator=g)
        target = torch.randint(0, 3, (2, 6, 7), generator=g)
        kwargs = dict(mode=mode, num_classes=3)
    else:
        c = 1 if mode == "binary" else 3
        output = torch.rand(2, c, 6, 7, generator=g)
        target = (torch.rand(2, c, 6, 7, generator=g) > 0.5).long()
        kwargs = dict(mode=mode, threshold=0.5)
    mine = M.get_stats(output, target, **kwargs)
    ref = SM.get_stats(output, target, **kwargs)
    assert_stats_equal(mine, ref)
    num_classes = mine[0].shape[1]
    for name in METRICS:
        for reduction in REDUCTIONS:
            weights = (
                [float(k + 1) for k in range(num_classes)] if reduction and "weighted" in reduction else None
            )
            a, _ = call(M, name, mine, reduction=reduction, class_weights=weights)
            b, _ = call(SM, name, ref, reduction=reduction, class_weights=weights)
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
