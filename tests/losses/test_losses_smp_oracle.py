"""smp_like.losses against segmentation_models_pytorch 0.6 (black-box oracle): same arguments, same numbers.

Every SMP loss x mode x option grid on small random inputs, in float64 so that "equal within 1e-6" measures
the maths rather than float32 summation order. Cases where SMP itself raises or returns NaN are covered in
test_losses_nd_and_edge_cases.py and documented in docs/losses_metrics.md.
"""

import inspect
import itertools

import pytest
import torch

import smp_like.losses as L

smp = pytest.importorskip("segmentation_models_pytorch")
S = pytest.importorskip("segmentation_models_pytorch.losses")

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


N, C = 2, 3
SPATIAL = {2: (5, 6), 3: (3, 4, 5)}
TOL = dict(rtol=1e-6, atol=1e-6)


def make_inputs(mode, spatial_dims=2, ignore_index=None, from_logits=True, seed=0, channels=C):
    """Random logits/probabilities and targets; with ignore_index a stripe of targets is ignored."""
    g = torch.Generator().manual_seed(seed)
    shape = SPATIAL[spatial_dims]
    c = 1 if mode == "binary" else channels
    y_pred = torch.randn((N, c) + shape, generator=g, dtype=torch.float64) * 2
    if mode == "multiclass":
        y_true = torch.randint(0, c, (N,) + shape, generator=g)
    else:
        y_true = (torch.rand((N, c) + shape, generator=g) > 0.5).long()
    if ignore_index is not None:
        y_true = y_true.clone()
        y_true[0, ..., 0] = ignore_index
    if not from_logits:
        y_pred = y_pred.softmax(1) if mode == "multiclass" else y_pred.sigmoid()
    return y_pred, y_true


def assert_same(mine, ref):
    assert isinstance(mine, torch.Tensor)
    ref = torch.as_tensor(ref, dtype=mine.dtype)
    assert mine.shape == ref.shape, (mine.shape, ref.shape)
    torch.testing.assert_close(mine, ref, **TOL)


@pytest.mark.parametrize(
    "name",
    [
        "DiceLoss",
        "JaccardLoss",
        "TverskyLoss",
        "FocalLoss",
        "LovaszLoss",
        "SoftBCEWithLogitsLoss",
        "SoftCrossEntropyLoss",
        "MCCLoss",
    ],
)
def test_signature_matches_smp(name):
    mine = inspect.signature(getattr(L, name))
    ref = inspect.signature(getattr(S, name))
    assert list(mine.parameters) == list(ref.parameters)
    for key, param in ref.parameters.items():
        assert mine.parameters[key].default == param.default, key


def test_mode_constants_match_smp():
    assert (L.BINARY_MODE, L.MULTICLASS_MODE, L.MULTILABEL_MODE) == (
        S.BINARY_MODE,
        S.MULTICLASS_MODE,
        S.MULTILABEL_MODE,
    )


OVERLAP_OPTIONS = list(
    itertools.product([False, True], [0.0, 0.5], [None, [0, 2]], [None, [1.0, 2.0, 0.5]])
)  # log_loss, smooth, classes, class_weights


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("ignore_index", [None, -1])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("name", ["DiceLoss", "JaccardLoss", "TverskyLoss"])
def test_overlap_losses_match_smp(name, mode, ignore_index, from_logits, spatial_dims):
    y_pred, y_true = make_inputs(mode, spatial_dims, ignore_index, from_logits)
    extra = [{}] if name != "TverskyLoss" else [{}, dict(alpha=0.3, beta=0.7, gamma=1.5)]
    checked = 0
    for (log_loss, smooth, classes, weights), more in itertools.product(OVERLAP_OPTIONS, extra):
        if mode == "binary" and (classes is not None or weights is not None):
            continue
        kwargs = dict(
            log_loss=log_loss,
            from_logits=from_logits,
            smooth=smooth,
            ignore_index=ignore_index,
            classes=classes,
            class_weights=weights,
            **more,
        )
        mine = getattr(L, name)(mode, **kwargs)(y_pred, y_true)
        ref = getattr(S, name)(mode, **kwargs)(y_pred, y_true)
        assert_same(mine, ref)
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_3d_inputs_match_smp(mode):
    # SMP flattens spatial axes, so it is an oracle for (N, C, D, H, W) inputs too.
    y_pred, y_true = make_inputs(mode, 3, ignore_index=-1)
    weights = None if mode == "binary" else [1.0, 2.0, 0.5]
    for name, kwargs in [
        ("DiceLoss", dict(smooth=0.5, class_weights=weights)),
        ("JaccardLoss", dict(log_loss=True)),
        ("TverskyLoss", dict(alpha=0.2, beta=0.8, gamma=2.0, class_weights=weights)),
        ("FocalLoss", dict(alpha=0.25, class_weights=weights)),
    ]:
        if name == "FocalLoss" and mode == "multilabel":
            kwargs["ignore_index"] = None
            y = y_true.clamp_min(0)
        else:
            kwargs["ignore_index"] = -1
            y = y_true
        assert_same(getattr(L, name)(mode, **kwargs)(y_pred, y), getattr(S, name)(mode, **kwargs)(y_pred, y))


def test_overlap_multiclass_ignore_index_inside_label_range_matches_smp():
    # ignore_index may also be a real class id (here 1): that class then has no target pixels.
    y_pred, y_true = make_inputs("multiclass")
    for name in ["DiceLoss", "JaccardLoss", "TverskyLoss"]:
        mine = getattr(L, name)("multiclass", ignore_index=1)(y_pred, y_true)
        assert_same(mine, getattr(S, name)("multiclass", ignore_index=1)(y_pred, y_true))


FOCAL_OPTIONS = list(
    itertools.product([None, 0.25], [0.0, 2.0], [False, True], [None, 0.5])
)  # alpha, gamma, normalized, reduced_threshold


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchwise_mean"])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("ignore_index", [None, -1])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_focal_loss_matches_smp(mode, ignore_index, from_logits, reduction, spatial_dims):
    y_pred, y_true = make_inputs(mode, spatial_dims, ignore_index, from_logits)
    if mode == "multilabel" and ignore_index is not None:
        # SMP 0.6 raises IndexError here; smp_like defines the loss channel by channel, so SMP's binary focal
        # loss on each channel (which handles ignore_index) is the oracle for the per-channel average.
        for alpha, gamma, normalized, threshold in FOCAL_OPTIONS:
            kwargs = dict(
                alpha=alpha,
                gamma=gamma,
                ignore_index=ignore_index,
                from_logits=from_logits,
                normalized=normalized,
                reduced_threshold=threshold,
            )
            per_channel_reduction = {"none": "mean", "batchwise_mean": "sum"}.get(reduction, reduction)
            ref = torch.stack(
                [
                    S.FocalLoss("binary", reduction=per_channel_reduction, **kwargs)(
                        y_pred[:, c : c + 1], y_true[:, c : c + 1]
                    )
                    for c in range(C)
                ]
            ).mean()
            assert_same(L.FocalLoss(mode, reduction=reduction, **kwargs)(y_pred, y_true), ref)
        return
    weight_options = [None] if mode == "binary" else [None, [1.0, 2.0, 0.5]]
    for (alpha, gamma, normalized, threshold), weights in itertools.product(FOCAL_OPTIONS, weight_options):
        if weights is not None and reduction in ("none", "batchwise_mean"):
            continue  # SMP 0.6 fails to broadcast class weights against per-pixel losses
        kwargs = dict(
            alpha=alpha,
            gamma=gamma,
            ignore_index=ignore_index,
            from_logits=from_logits,
            reduction=reduction,
            normalized=normalized,
            reduced_threshold=threshold,
            class_weights=weights,
        )
        assert_same(L.FocalLoss(mode, **kwargs)(y_pred, y_true), S.FocalLoss(mode, **kwargs)(y_pred, y_true))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore_index", [None, -1])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_lovasz_loss_matches_smp(mode, ignore_index, per_image, from_logits, spatial_dims):
    # SMP's Lovasz code mixes float32 into its dot products, so it only runs on float32 inputs.
    y_pred, y_true = make_inputs(mode, spatial_dims, ignore_index, from_logits)
    y_pred = y_pred.float()
    kwargs = dict(per_image=per_image, ignore_index=ignore_index, from_logits=from_logits)
    mine = L.LovaszLoss(mode, **kwargs)(y_pred, y_true)
    ref = S.LovaszLoss(mode, **kwargs)(y_pred, y_true)
    torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [None, -100, 1])
@pytest.mark.parametrize("smooth_factor", [None, 0.1])
def test_soft_bce_matches_smp(smooth_factor, ignore_index, reduction, spatial_dims):
    y_pred, y_true = make_inputs("multilabel", spatial_dims)
    y_true = y_true.double()
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).reshape((C,) + (1,) * spatial_dims)
    pos_weight = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64).reshape((C,) + (1,) * spatial_dims)
    for w, pw in [(None, None), (weight, None), (None, pos_weight), (weight, pos_weight)]:
        kwargs = dict(
            weight=w,
            ignore_index=ignore_index,
            reduction=reduction,
            smooth_factor=smooth_factor,
            pos_weight=pw,
        )
        mine = L.SoftBCEWithLogitsLoss(**kwargs)
        ref = S.SoftBCEWithLogitsLoss(**kwargs)
        assert set(mine.state_dict()) == set(ref.state_dict())
        assert_same(mine(y_pred, y_true), ref(y_pred, y_true))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [None, -100, 1])
@pytest.mark.parametrize("smooth_factor", [0.0, 0.1])
def test_soft_cross_entropy_matches_smp(smooth_factor, ignore_index, reduction, spatial_dims):
    y_pred, y_true = make_inputs("multiclass", spatial_dims)
    kwargs = dict(reduction=reduction, smooth_factor=smooth_factor, ignore_index=ignore_index)
    mine = L.SoftCrossEntropyLoss(**kwargs)(y_pred, y_true)
    ref = S.SoftCrossEntropyLoss(**kwargs)(y_pred, y_true)
    if reduction == "none":
        # SMP keeps a singleton class axis when ignore_index is set; smp_like always removes it.
        ref = ref.reshape(mine.shape)
    assert_same(mine, ref)


def test_soft_cross_entropy_other_dim_matches_smp():
    y_pred, y_true = make_inputs("multiclass")
    y_pred = y_pred.movedim(1, -1).contiguous()  # (N, H, W, C)
    kwargs = dict(smooth_factor=0.2, dim=-1)
    assert_same(
        L.SoftCrossEntropyLoss(**kwargs)(y_pred, y_true), S.SoftCrossEntropyLoss(**kwargs)(y_pred, y_true)
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_mcc_loss_matches_smp(eps, spatial_dims):
    y_pred, y_true = make_inputs("binary", spatial_dims)
    probs = y_pred.sigmoid()
    assert_same(L.MCCLoss(eps)(probs, y_true.double()), S.MCCLoss(eps)(probs, y_true.double()))
    # Multi-channel input: SMP pools every channel into one binary problem.
    y_pred, y_true = make_inputs("multilabel", spatial_dims)
    assert_same(L.MCCLoss(eps)(y_pred.sigmoid(), y_true), S.MCCLoss(eps)(y_pred.sigmoid(), y_true))


@pytest.mark.parametrize("name", ["DiceLoss", "JaccardLoss", "FocalLoss", "LovaszLoss"])
def test_binary_target_without_channel_axis_matches_smp(name):
    y_pred, y_true = make_inputs("binary")
    y_pred, y_true = y_pred.float(), y_true[:, 0]  # float32: SMP's Lovasz does not run in float64
    torch.testing.assert_close(
        getattr(L, name)("binary")(y_pred, y_true),
        getattr(S, name)("binary")(y_pred, y_true),
        rtol=1e-6,
        atol=1e-6,
    )


def test_float32_inputs_match_smp():
    y_pred, y_true = make_inputs("multiclass", ignore_index=-1)
    y_pred = y_pred.float()
    for name in ["DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss", "LovaszLoss"]:
        mine = getattr(L, name)("multiclass", ignore_index=-1)(y_pred, y_true)
        ref = getattr(S, name)("multiclass", ignore_index=-1)(y_pred, y_true)
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)


def test_gradients_match_smp():
    y_pred, y_true = make_inputs("multiclass", ignore_index=-1)
    for name in ["DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss", "LovaszLoss"]:
        if name == "LovaszLoss":
            y_pred = y_pred.float()  # SMP's Lovasz runs in float32 only
        a = y_pred.clone().requires_grad_(True)
        b = y_pred.clone().requires_grad_(True)
        getattr(L, name)("multiclass", ignore_index=-1)(a, y_true).backward()
        getattr(S, name)("multiclass", ignore_index=-1)(b, y_true).backward()
        torch.testing.assert_close(a.grad, b.grad, **TOL)
