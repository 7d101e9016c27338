"""Issue 17 item 6: an empty batch gives an empty result (loss 0, connected to the graph; (0, C) counts) the
same way in every loss and in get_stats; labels outside the valid range raise a ValueError naming the value."""
import pytest
import torch

import smp_like.losses as L
import smp_like.metrics as M

OVERLAP_AND_MORE = [L.DiceLoss, L.JaccardLoss, L.TverskyLoss, L.FocalLoss, L.LovaszLoss]
MODES = ["binary", "multiclass", "multilabel"]


def _batch(mode, n):
    c = 1 if mode == "binary" else 3
    y_pred = torch.randn(n, c, 4, 5, requires_grad=True)
    if mode == "multiclass":
        y_true = torch.randint(0, c, (n, 4, 5))
    else:
        y_true = torch.randint(0, 2, (n, c, 4, 5)).float()
    return y_pred, y_true


@pytest.mark.parametrize("loss_cls", OVERLAP_AND_MORE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_gives_zero_loss_with_a_gradient_path(loss_cls, mode):
    y_pred, y_true = _batch(mode, 0)
    loss = loss_cls(mode)(y_pred, y_true)
    assert loss.shape == () and float(loss.detach()) == 0.0
    loss.backward()
    assert y_pred.grad is not None and y_pred.grad.shape == y_pred.shape


@pytest.mark.parametrize("smooth_factor", [None, 0.1])
def test_soft_cross_entropy_empty_batch_is_zero_not_nan(smooth_factor):
    y_pred = torch.randn(0, 3, 4, 4, requires_grad=True)
    loss = L.SoftCrossEntropyLoss(smooth_factor=smooth_factor)(y_pred, torch.zeros(0, 4, 4, dtype=torch.long))
    assert float(loss.detach()) == 0.0
    loss.backward()


@pytest.mark.parametrize("mode", MODES)
def test_get_stats_empty_batch_gives_empty_counts(mode):
    c = 1 if mode == "binary" else 3
    if mode == "multiclass":
        out = tgt = torch.zeros(0, 4, 4, dtype=torch.long)
        stats = M.get_stats(out, tgt, mode, num_classes=c)
    else:
        stats = M.get_stats(torch.rand(0, c, 4, 4), torch.zeros(0, c, 4, 4, dtype=torch.long), mode, threshold=0.5)
    assert [tuple(s.shape) for s in stats] == [(0, c)] * 4


@pytest.mark.parametrize("loss_cls", OVERLAP_AND_MORE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [3, 255, -1])
def test_multiclass_labels_outside_the_classes_raise(loss_cls, bad):
    y_pred, y_true = _batch("multiclass", 2)
    y_true[1, 0, 0] = bad
    with pytest.raises(ValueError, match=rf"class index {bad}, outside \[0, 3\)"):
        loss_cls("multiclass")(y_pred, y_true)
    # The same label declared as ignore_index is fine, and ignoring it equals dropping those pixels' effect.
    if bad != 3:
        loss = loss_cls("multiclass", ignore_index=bad)(y_pred, y_true)
        assert torch.isfinite(loss)


@pytest.mark.parametrize("loss_cls", OVERLAP_AND_MORE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_binary_targets_outside_zero_one_raise(loss_cls, mode):
    y_pred, y_true = _batch(mode, 2)
    y_true[0, 0, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        loss_cls(mode)(y_pred, y_true)


def test_soft_binary_targets_stay_accepted():
    y_pred, y_true = _batch("binary", 2)
    loss = L.FocalLoss("binary")(y_pred, y_true * 0.9 + 0.05)
    assert torch.isfinite(loss) and float(loss.detach()) > 0


def test_get_stats_refuses_labels_outside_the_classes():
    out = torch.zeros(2, 4, 4, dtype=torch.long)
    tgt = torch.zeros(2, 4, 4, dtype=torch.long)
    tgt[0, 0, 0] = 5
    with pytest.raises(ValueError, match=r"target holds 5, outside \[0, 3\)"):
        M.get_stats(out, tgt, "multiclass", num_classes=3)
    tp, fp, fn, tn = M.get_stats(out, tgt, "multiclass", num_classes=3, ignore_index=5)
    assert int(tp[0, 0]) == 15 and int(tn[0, 1]) == 15  # the ignored pixel is counted nowhere
    with pytest.raises(ValueError, match=r"output holds -2, outside \[0, 3\)"):
        M.get_stats(out - 2, torch.zeros_like(out), "multiclass", num_classes=3)
    with pytest.raises(ValueError, match=r"target holds 2, outside \{0, 1\}"):
        M.get_stats(torch.zeros(2, 1, 4, 4, dtype=torch.long), torch.full((2, 1, 4, 4), 2), "binary")
