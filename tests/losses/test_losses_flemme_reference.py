"""Flemme's losses against independent references written here: SSIM by a direct windowed formula, KL by the
closed form (scalar loop and torch.distributions), the boundary loss by SciPy distance maps, MSE/L1 by the
definitions, and the weighted combination by hand."""

import math

import numpy as np
import pytest
import torch

import smp_like.losses as L

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


# ------------------------------------------------------------------------------------------------------------
# SSIM: every valid window position visited explicitly.
# ------------------------------------------------------------------------------------------------------------


def direct_ssim(x, y, window, sigma, data_range=1.0, k1=0.01, k2=0.03):
    """Mean SSIM of one single-channel array (2D or 3D), Wang et al. 2004 eqs. (14)-(15), (13)."""
    c = (window - 1) / 2
    g = np.exp(-((np.arange(window) - c) ** 2) / (2 * sigma**2))
    weights = g / g.sum()
    w = weights
    for _ in range(x.ndim - 1):
        w = np.multiply.outer(w, weights)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    values = []
    for start in np.ndindex(*[s - window + 1 for s in x.shape]):
        sl = tuple(slice(i, i + window) for i in start)
        px, py = x[sl], y[sl]
        mx, my = (w * px).sum(), (w * py).sum()
        vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
        cov = (w * (px - mx) * (py - my)).sum()
        values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize(
    "shape, window, sigma, data_range",
    [
        ((2, 2, 12, 13), 5, 1.5, 1.0),
        ((1, 1, 14, 14), 11, 1.5, 1.0),
        ((2, 1, 6, 7, 8), 3, 0.8, 2.0),
        ((1, 1, 4, 5, 4, 4), 3, 1.0, 1.0),
    ],
)
def test_ssim_matches_direct_windowed_formula(shape, window, sigma, data_range):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * data_range
    y = (x + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, data_range)
    loss = L.SSIMLoss(window_size=window, sigma=sigma, data_range=data_range, reduction="none")(x, y)
    assert loss.shape == shape[:2]
    for i in range(shape[0]):
        for j in range(shape[1]):
            ref = direct_ssim(x[i, j].numpy(), y[i, j].numpy(), window, sigma, data_range)
            assert loss[i, j].item() == pytest.approx(1 - ref, rel=1e-9, abs=1e-12)
    mean_loss = L.SSIMLoss(window_size=window, sigma=sigma, data_range=data_range)(x, y)
    assert mean_loss.item() == pytest.approx(loss.mean().item())
    sum_loss = L.SSIMLoss(window_size=window, sigma=sigma, data_range=data_range, reduction="sum")(x, y)
    assert sum_loss.item() == pytest.approx(loss.sum().item())


def test_ssim_identical_images_give_zero_loss_and_gradients_flow():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert L.SSIMLoss()(x, x).item() == pytest.approx(0.0, abs=1e-12)
    y = torch.rand(2, 3, 8, 8, 8, requires_grad=True)
    loss = L.SSIMLoss(window_size=5)(y, torch.rand(2, 3, 8, 8, 8))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(y.grad).all()


def test_ssim_rejects_small_inputs_and_shape_mismatch():
    with pytest.raises(ValueError, match="window_size=11"):
        L.SSIMLoss()(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        L.SSIMLoss(window_size=3)(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="reduction"):
        L.SSIMLoss(reduction="avg")


# ------------------------------------------------------------------------------------------------------------
# KL divergence to N(0, I)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 8), (2, 4, 5, 6), (2, 2, 3, 4, 5)])
def test_kl_matches_closed_form_and_torch_distributions(shape):
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    logvar = torch.randn(shape, generator=g, dtype=torch.float64)
    per_sample = L.KLDivergenceLoss(reduction="none")(mu, logvar)
    # Scalar closed form KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2, summed per sample.
    for i in range(shape[0]):
        expected = 0.0
        for m, lv in zip(mu[i].flatten().tolist(), logvar[i].flatten().tolist()):
            s = math.exp(0.5 * lv)
            expected += math.log(1.0 / s) + (s * s + m * m) / 2 - 0.5
        assert per_sample[i].item() == pytest.approx(expected, rel=1e-12)
    dist = torch.distributions
    ref = dist.kl_divergence(dist.Normal(mu, (0.5 * logvar).exp()), dist.Normal(0.0, 1.0))
    ref = ref.reshape(shape[0], -1).sum(1)
    torch.testing.assert_close(per_sample, ref)
    assert L.KLDivergenceLoss()(mu, logvar).item() == pytest.approx(ref.mean().item())
    assert L.KLLoss(reduction="sum")(mu, logvar).item() == pytest.approx(ref.sum().item())
    assert L.KLDivergenceLoss()(torch.zeros(shape), torch.zeros(shape)).item() == 0.0
    with pytest.raises(ValueError, match="logvar shape"):
        L.KLDivergenceLoss()(mu, logvar[..., :-1])


# ------------------------------------------------------------------------------------------------------------
# Boundary loss with SciPy signed distance maps
# ------------------------------------------------------------------------------------------------------------


def scipy_signed_distance(mask, spacing):
    if not mask.any() or mask.all():
        return np.zeros(mask.shape)
    return ndi.distance_transform_edt(~mask, sampling=spacing) - ndi.distance_transform_edt(
        mask, sampling=spacing
    )


@pytest.mark.parametrize("spatial, spacing", [((7, 8), (1.0, 2.0)), ((4, 5, 6), (2.0, 1.0, 0.5))])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_boundary_loss_matches_scipy_distance_maps(mode, spatial, spacing):
    g = torch.Generator().manual_seed(2)
    c = 1 if mode == "binary" else 3
    logits = torch.randn((2, c) + spatial, generator=g, dtype=torch.float64)
    if mode == "multiclass":
        target = torch.randint(0, c, (2,) + spatial, generator=g)
        target[1][target[1] == 2] = 0  # class 2 absent from image 1 -> zero map there
        masks = np.stack([target.numpy() == k for k in range(c)], axis=1)
        probs = logits.softmax(1).numpy()
    else:
        target = (torch.rand((2, c) + spatial, generator=g) > 0.6).long()
        target[1, 0] = 0  # an empty mask
        masks = target.numpy().astype(bool)
        probs = logits.sigmoid().numpy()
    phi = np.zeros(masks.shape)
    for i in range(2):
        for k in range(c):
            phi[i, k] = scipy_signed_distance(masks[i, k], spacing)
    loss = L.BoundaryLoss(mode, spacing=spacing)(logits, target)
    assert loss.item() == pytest.approx((phi * probs).mean(), rel=1e-10)
    if mode != "binary":
        loss = L.BoundaryLoss(mode, classes=[1, 2], spacing=spacing)(logits, target)
        assert loss.item() == pytest.approx((phi * probs)[:, 1:].mean(), rel=1e-10)


def test_boundary_loss_is_lowest_for_the_true_mask_and_differentiable():
    target = torch.zeros(1, 1, 10, 10, dtype=torch.long)
    target[..., 3:7, 2:8] = 1
    exact = L.BoundaryLoss("binary", from_logits=False)(target.double(), target)
    shifted = L.BoundaryLoss("binary", from_logits=False)(target.roll(2, -1).double(), target)
    assert exact < shifted and exact < 0
    logits = torch.randn(1, 1, 10, 10, requires_grad=True)
    L.BoundaryLoss("binary")(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    signed = L.signed_distance_map(target[0, 0].bool(), spacing=(1.0, 3.0))
    np.testing.assert_allclose(
        signed.numpy(), scipy_signed_distance(target[0, 0].numpy().astype(bool), (1.0, 3.0))
    )


# ------------------------------------------------------------------------------------------------------------
# MSE and L1
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 1, 3, 4, 5)])
def test_mse_and_l1_match_definitions(shape):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(shape, generator=g, dtype=torch.float64)
    b = torch.randn(shape, generator=g, dtype=torch.float64)
    d = (a - b).numpy()
    for cls, elem in [(L.MSELoss, d**2), (L.L1Loss, np.abs(d))]:
        np.testing.assert_allclose(cls()(a, b).item(), elem.mean())
        np.testing.assert_allclose(cls(reduction="sum")(a, b).item(), elem.sum())
        np.testing.assert_allclose(cls(reduction="none")(a, b).numpy(), elem)
        assert cls()(a, a).item() == 0.0
        with pytest.raises(ValueError, match="shape"):
            cls()(a, b[:1])
        with pytest.raises(ValueError, match="reduction='avg'"):
            cls(reduction="avg")


# ------------------------------------------------------------------------------------------------------------
# Weighted combination configured by name
# ------------------------------------------------------------------------------------------------------------


def test_combined_loss_by_name_equals_hand_weighted_sum():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 1, 6, 6, generator=g)
    target = (torch.rand(2, 1, 6, 6, generator=g) > 0.5).float()
    combo = L.CombinedLoss(
        [
            {"name": "Dice", "weight": 1.0},
            {"name": "BCEL", "weight": 0.5},
            ("focal", 2.0),
            (L.JaccardLoss("binary", smooth=1.0), 0.25),
        ],
        common_kwargs={"mode": "binary"},
    )
    expected = (
        L.DiceLoss("binary")(logits, target)
        + 0.5 * L.SoftBCEWithLogitsLoss()(logits, target)
        + 2.0 * L.FocalLoss("binary")(logits, target)
        + 0.25 * L.JaccardLoss("binary", smooth=1.0)(logits, target)
    )
    torch.testing.assert_close(combo(logits, target), expected)
    parts = combo.components(logits, target)
    assert list(parts) == ["DiceLoss", "SoftBCEWithLogitsLoss", "FocalLoss", "JaccardLoss"]
    assert "weights=" in repr(combo)


def test_build_loss_names_and_errors():
    assert isinstance(L.build_loss("dice", mode="multiclass"), L.DiceLoss)
    assert isinstance(L.build_loss({"name": "SSIM", "window_size": 5}), L.SSIMLoss)
    for name in ["MSE", "L1", "KL", "CE", "BCEL", "Tversky", "Lovasz", "MCC", "Boundary", "DiceLoss"]:
        assert L.get_loss_class(name) is L.LOSSES[name.lower()]
    with pytest.raises(ValueError, match="Unknown loss name 'Dise'"):
        L.build_loss("Dise", mode="binary")
    with pytest.raises(ValueError, match="no 'name'"):
        L.build_loss({"weight": 1.0})
    with pytest.raises(ValueError, match="cannot build DiceLoss"):
        L.build_loss("Dice", mode="binary", colour="red")
    with pytest.raises(ValueError, match="non-empty"):
        L.CombinedLoss([])
    with pytest.raises(ValueError, match="weight"):
        L.CombinedLoss([("MSE", -1.0)])
    with pytest.raises(ValueError, match="already registered"):
        L.register_loss("dice", L.MSELoss)
