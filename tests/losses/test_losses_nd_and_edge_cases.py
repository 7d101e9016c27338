"""Losses on (N, C, D, H, W), edge cases (empty masks, all-ignored pixels, absent classes, perfect
predictions) and bad input."""

import pytest
import torch

import smp_like.losses as L


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


SHAPE3D = (2, 3, 3, 4, 5)


def inputs3d(mode, ignore_index=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c, d, h, w = SHAPE3D
    c = 1 if mode == "binary" else c
    y_pred = torch.randn((n, c, d, h, w), generator=g, dtype=torch.float64)
    if mode == "multiclass":
        y_true = torch.randint(0, c, (n, d, h, w), generator=g)
    else:
        y_true = (torch.rand((n, c, d, h, w), generator=g) > 0.5).long()
    if ignore_index is not None:
        y_true[0, ..., 1, :] = ignore_index
    return y_pred, y_true


def to_2d(t):
    """(N, C, D, H, W) -> (N, C, D*H, W) and (N, D, H, W) -> (N, D*H, W): the same voxels, as an image."""
    if t.dim() == 5:
        return t.reshape(t.shape[0], t.shape[1], -1, t.shape[-1])
    return t.reshape(t.shape[0], -1, t.shape[-1])


COUNT_BASED = [
    ("DiceLoss", dict(smooth=0.5), ["binary", "multiclass", "multilabel"]),
    ("JaccardLoss", dict(log_loss=True), ["binary", "multiclass", "multilabel"]),
    ("TverskyLoss", dict(alpha=0.3, beta=0.7, gamma=1.3), ["binary", "multiclass", "multilabel"]),
    ("FocalLoss", dict(alpha=0.25, normalized=True), ["binary", "multiclass", "multilabel"]),
    ("LovaszLoss", dict(), ["binary", "multiclass", "multilabel"]),
    ("LovaszLoss", dict(per_image=True), ["binary", "multiclass"]),
]


@pytest.mark.parametrize("ignore_index", [None, -1])
@pytest.mark.parametrize(
    "name, kwargs, mode",
    [(n, k, m) for n, k, modes in COUNT_BASED for m in modes],
)
def test_3d_equals_reshaped_2d(name, kwargs, mode, ignore_index):
    y_pred, y_true = inputs3d(mode, ignore_index)
    loss = getattr(L, name)(mode, ignore_index=ignore_index, **kwargs)
    torch.testing.assert_close(
        loss(y_pred, y_true), loss(to_2d(y_pred), to_2d(y_true)), rtol=1e-10, atol=1e-12
    )


def test_3d_equals_reshaped_2d_for_pixelwise_losses():
    y_pred, y_true = inputs3d("multilabel")
    probs = y_pred.sigmoid()
    mu, logvar = inputs3d("multilabel", seed=1)[0], inputs3d("multilabel", seed=2)[0]
    pairs = [
        (L.SoftBCEWithLogitsLoss(smooth_factor=0.1), y_pred, y_true.double()),
        (L.MCCLoss(), probs, y_true),
        (L.MSELoss(), y_pred, probs),
        (L.L1Loss(), y_pred, probs),
        (L.KLDivergenceLoss(), mu, logvar),
    ]
    labels = inputs3d("multiclass", ignore_index=-100)[1]
    pairs.append((L.SoftCrossEntropyLoss(smooth_factor=0.1), y_pred, labels))
    for loss, a, b in pairs:
        torch.testing.assert_close(loss(a, b), loss(to_2d(a), to_2d(b)), rtol=1e-10, atol=1e-12)


ALL_3D = [
    (L.DiceLoss("multiclass"), "multiclass"),
    (L.JaccardLoss("multilabel"), "multilabel"),
    (L.TverskyLoss("binary", gamma=2.0), "binary"),
    (L.FocalLoss("multiclass", reduced_threshold=0.5), "multiclass"),
    (L.LovaszLoss("multiclass", per_image=True), "multiclass"),
    (L.SoftBCEWithLogitsLoss(), "multilabel"),
    (L.SoftCrossEntropyLoss(smooth_factor=0.1), "multiclass"),
    (L.MCCLoss(), "binary"),
    (L.SSIMLoss(window_size=3), "regression"),
    (L.BoundaryLoss("multiclass", spacing=(2.0, 1.0, 1.0)), "multiclass"),
    (L.BoundaryLoss("binary"), "binary"),
    (L.MSELoss(), "regression"),
    (L.L1Loss(), "regression"),
    (L.KLDivergenceLoss(), "regression"),
    (L.CombinedLoss([("Dice", 1.0), ("Boundary", 0.1)], common_kwargs={"mode": "multiclass"}), "multiclass"),
]


@pytest.mark.parametrize(
    "loss, mode", ALL_3D, ids=lambda v: type(v).__name__ if isinstance(v, torch.nn.Module) else v
)
def test_every_loss_is_finite_and_differentiable_in_3d(loss, mode):
    if mode == "regression":
        y_pred = torch.rand(SHAPE3D, dtype=torch.float64)
        y_true = torch.rand(SHAPE3D, dtype=torch.float64)
    else:
        y_pred, y_true = inputs3d(mode)
        if isinstance(loss, (L.MCCLoss,)):
            y_pred = y_pred.sigmoid()
        if isinstance(loss, L.SoftBCEWithLogitsLoss):
            y_true = y_true.double()
    y_pred = y_pred.clone().requires_grad_(True)
    value = loss(y_pred, y_true)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert y_pred.grad is not None and torch.isfinite(y_pred.grad).all()


# ------------------------------------------------------------------------------------------------------------
# Edge cases
# ------------------------------------------------------------------------------------------------------------


def finite_scalar(x):
    return x.dim() == 0 and bool(torch.isfinite(x))


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_all_ignored_pixels_give_zero_not_nan(mode):
    y_pred, y_true = inputs3d(mode)
    y_true = torch.full_like(y_true, -1)
    y_pred.requires_grad_(True)
    for loss in [
        L.DiceLoss(mode, ignore_index=-1),
        L.JaccardLoss(mode, ignore_index=-1, smooth=1.0),
        L.TverskyLoss(mode, ignore_index=-1, log_loss=True),
        L.FocalLoss(mode, ignore_index=-1),  # SMP 0.6: NaN
        L.LovaszLoss(mode, ignore_index=-1),  # SMP 0.6 (multiclass): an empty tensor
        L.LovaszLoss(mode, ignore_index=-1, per_image=True),
    ]:
        value = loss(y_pred, y_true)
        assert finite_scalar(value) and value.item() == 0.0, type(loss).__name__
        value.backward()
        assert torch.isfinite(y_pred.grad).all()
    assert (
        L.SoftCrossEntropyLoss(ignore_index=-1)(inputs3d("multiclass")[0], torch.full((2, 3, 4, 5), -1)) == 0
    )
    assert L.SoftBCEWithLogitsLoss(ignore_index=-1)(y_pred.detach(), torch.full(y_pred.shape, -1.0)) == 0


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_empty_masks_are_defined(mode):
    y_pred, y_true = inputs3d(mode)
    y_true = torch.zeros_like(y_true)
    for loss in [
        L.DiceLoss(mode),
        L.JaccardLoss(mode),
        L.TverskyLoss(mode),
        L.FocalLoss(mode),
        L.LovaszLoss(mode),
        L.BoundaryLoss(mode),
    ]:
        assert finite_scalar(loss(y_pred, y_true)), type(loss).__name__
    # No target pixels: the overlap losses skip the class, the boundary loss has no boundary to pull to.
    assert L.DiceLoss(mode)(y_pred, y_true).item() == 0.0
    assert L.BoundaryLoss(mode)(y_pred, y_true).item() == 0.0
    # MCC of an all-empty perfect prediction is 0/0; the eps terms make it 0.5 (as in SMP).
    assert L.MCCLoss()(torch.zeros_like(y_pred), y_true).item() == pytest.approx(0.5)


def test_class_absent_from_batch():
    y_pred, y_true = inputs3d("multiclass")
    y_true[y_true == 2] = 0
    for loss in [
        L.DiceLoss("multiclass"),
        L.JaccardLoss("multiclass"),
        L.FocalLoss("multiclass"),
        L.LovaszLoss("multiclass"),
        L.BoundaryLoss("multiclass"),
        L.DiceLoss("multiclass", class_weights=[1.0, 1.0, 5.0]),
    ]:
        assert finite_scalar(loss(y_pred, y_true))
    # The absent class contributes 0 but keeps its share of the weights (SMP's convention).
    per_class = [L.DiceLoss("multiclass", classes=[k])(y_pred, y_true) for k in range(3)]
    assert per_class[2].item() == 0.0
    torch.testing.assert_close(L.DiceLoss("multiclass")(y_pred, y_true), sum(per_class) / 3)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_perfect_prediction_gives_zero_loss(mode):
    _, y_true = inputs3d(mode)
    if mode == "multiclass":
        probs = torch.nn.functional.one_hot(y_true, 3).movedim(-1, 1).double()
    else:
        probs = y_true.double()
    logits = (2 * probs - 1) * 30.0  # saturated logits
    for loss in [
        L.DiceLoss(mode, from_logits=False),
        L.JaccardLoss(mode, from_logits=False),
        L.TverskyLoss(mode, from_logits=False, log_loss=True),
        L.DiceLoss(mode, smooth=1.0),
    ]:
        assert loss(probs if not loss.from_logits else logits, y_true).item() == pytest.approx(0.0, abs=1e-12)
    assert L.LovaszLoss(mode)(logits, y_true).item() == pytest.approx(0.0, abs=1e-12)
    assert L.FocalLoss(mode)(logits, y_true).item() == pytest.approx(0.0, abs=1e-12)
    if mode == "multiclass":
        assert L.SoftCrossEntropyLoss(smooth_factor=0.0)(logits, y_true).item() == pytest.approx(
            0.0, abs=1e-12
        )
    else:
        assert L.SoftBCEWithLogitsLoss()(logits, probs).item() == pytest.approx(0.0, abs=1e-12)
        assert L.MCCLoss()(probs, y_true).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss", "LovaszLoss", "BoundaryLoss"]
)
def test_wrong_mode_name(name):
    with pytest.raises(ValueError, match=r"mode='binaire'.*\['binary', 'multiclass', 'multilabel'\]"):
        getattr(L, name)("binaire")


@pytest.mark.parametrize("name", ["DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss"])
def test_class_weights_with_binary_mode(name):
    with pytest.raises(ValueError, match="class_weights.*mode='binary'"):
        getattr(L, name)("binary", class_weights=[1.0])
    if name != "FocalLoss":
        with pytest.raises(ValueError, match="classes.*mode='binary'"):
            getattr(L, name)("binary", classes=[0])


@pytest.mark.parametrize("name", ["DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss"])
def test_class_weights_of_wrong_length(name):
    y_pred, y_true = inputs3d("multiclass")
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        getattr(L, name)("multiclass", class_weights=[1.0, 2.0])(y_pred, y_true)
    with pytest.raises(ValueError, match="non-negative"):
        getattr(L, name)("multiclass", class_weights=[1.0, -2.0, 1.0])


SHAPE_MISMATCH = [
    ("binary", torch.randn(2, 1, 4, 4), torch.zeros(2, 1, 4, 5)),
    ("binary", torch.randn(2, 1, 4, 4), torch.zeros(3, 1, 4, 4)),
    ("multilabel", torch.randn(2, 3, 4, 4), torch.zeros(2, 2, 4, 4)),
    ("multiclass", torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5).long()),
    ("multiclass", torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4).long()),  # one-hot instead of indices
]


@pytest.mark.parametrize("mode, y_pred, y_true", SHAPE_MISMATCH)
@pytest.mark.parametrize(
    "name", ["DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss", "LovaszLoss", "BoundaryLoss"]
)
def test_shape_mismatch(name, mode, y_pred, y_true):
    with pytest.raises(ValueError, match="shape"):
        getattr(L, name)(mode)(y_pred, y_true)


def test_other_bad_inputs():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="class index 7"):
        L.DiceLoss("multiclass")(x, torch.full((2, 4, 4), 7))
    with pytest.raises(ValueError, match="shape"):
        L.SoftCrossEntropyLoss()(x, torch.zeros(2, 3, 4, 4).long())
    with pytest.raises(ValueError, match="outside"):
        L.SoftCrossEntropyLoss()(x, torch.full((2, 4, 4), 3))
    with pytest.raises(ValueError, match="integer"):
        L.SoftCrossEntropyLoss()(x, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        L.SoftBCEWithLogitsLoss()(x, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="shape"):
        L.MCCLoss()(x.sigmoid(), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="reduction='avg'"):
        L.FocalLoss("binary", reduction="avg")
    with pytest.raises(ValueError, match="gamma"):
        L.FocalLoss("binary", gamma=None)
    with pytest.raises(ValueError, match="classes"):
        L.DiceLoss("multiclass", classes=[0, 5])(x, torch.zeros(2, 4, 4).long())
    with pytest.raises(ValueError, match="spacing"):
        L.BoundaryLoss("binary", spacing=(1.0,))(x[:, :1], torch.zeros(2, 1, 4, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    import smp_like.metrics as M

    y_pred, y_true = inputs3d("multiclass", ignore_index=-1)
    losses = [
        L.DiceLoss("multiclass", ignore_index=-1, class_weights=[1.0, 2.0, 3.0]),
        L.TverskyLoss("multiclass", classes=[0, 2], ignore_index=-1),
        L.FocalLoss("multiclass", ignore_index=-1, class_weights=[1.0, 2.0, 3.0]),
        L.LovaszLoss("multiclass", ignore_index=-1, per_image=True),
        L.SoftCrossEntropyLoss(ignore_index=-1, smooth_factor=0.1),
        L.BoundaryLoss("multiclass", spacing=(2.0, 1.0, 1.0)),
    ]
    for loss in losses:
        y = y_true.clamp_min(0) if isinstance(loss, L.BoundaryLoss) else y_true
        cpu = loss(y_pred, y)
        gpu = loss.cuda()(y_pred.cuda(), y.cuda())
        torch.testing.assert_close(gpu.cpu(), cpu)
    stats_cpu = M.get_stats(y_pred.argmax(1), y_true, "multiclass", num_classes=3, ignore_index=-1)
    stats_gpu = M.get_stats(
        y_pred.argmax(1).cuda(), y_true.cuda(), "multiclass", num_classes=3, ignore_index=-1
    )
    for a, b in zip(stats_cpu, stats_gpu):
        assert torch.equal(a, b.cpu())
    labels = y_true.clamp_min(0)
    hd_cpu = M.hd95(y_pred.argmax(1), labels, mode="multiclass", num_classes=3, spacing=(2.0, 1.0, 1.0))
    hd_gpu = M.hd95(
        y_pred.argmax(1).cuda(), labels.cuda(), mode="multiclass", num_classes=3, spacing=(2.0, 1.0, 1.0)
    )
    torch.testing.assert_close(hd_gpu.cpu(), hd_cpu)
