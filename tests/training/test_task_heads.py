"""The task's loss for every output layout: aux classification head, deep supervision (PyramidLoss), both, and the
binary / multilabel modes, checked against losses computed by hand; and a short run with aux head + deep supervision."""

import pytest
import torch
import torch.nn.functional as F

import smp_like
from smp_like import losses as L
from smp_like.training.config import parse_config
from smp_like.training.run import build_task

from pipeline_helpers import TINY_MODEL, tiny_config


def _by_hand(main, target):
    return L.SoftCrossEntropyLoss(smooth_factor=0.0)(main, target) + L.DiceLoss("multiclass")(main, target)


def test_aux_head_and_deep_supervision_loss_by_hand(tmp_path):
    cfg = parse_config(tiny_config(tmp_path, model=dict(TINY_MODEL, deep_supervision=True,
                                                        aux_params={"classes": 3, "dropout": 0.0}),
                                   data={"aux_labels": "mask"}, loss={"terms": ["CrossEntropy", "Dice"],
                                                                       "aux_weight": 0.3, "deep_supervision": True}))
    torch.manual_seed(0)
    task = build_task(cfg)
    task.train()
    x = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32))
    labels = torch.stack([torch.stack([(t == c).any() for c in range(3)]) for t in target]).float()
    out = task.model(x)
    loss, mask_out = task._loss(out, target, labels)
    (main, label_logits), sides = out  # training layout with aux head and side outputs
    expected = _by_hand(main, target)
    side_terms = [_by_hand(s, F.interpolate(target[:, None].float(), size=s.shape[-2:], mode="nearest")[:, 0].long())
                  for s in sides]
    expected = expected + sum(side_terms) / len(side_terms)
    expected = expected + 0.3 * F.binary_cross_entropy_with_logits(label_logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert mask_out[0] is main


@pytest.mark.parametrize("task_name, classes", [("binary", ["fg"]), ("multilabel", ["a", "b"])])
def test_binary_and_multilabel_losses_use_bce_and_dice_in_their_mode(tmp_path, task_name, classes):
    cfg = parse_config(tiny_config(tmp_path, data={"task": task_name, "classes": classes}))
    task = build_task(cfg)
    logits = torch.randn(2, len(classes), 8, 8)
    target = torch.randint(0, 2, (2, len(classes), 8, 8)).float()
    loss, _ = task._loss(logits, target, None)
    expected = F.binary_cross_entropy_with_logits(logits, target) + L.DiceLoss(task_name)(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_run_with_aux_head_and_deep_supervision(tmp_path):
    from smp_like.training.run import train

    cfg = parse_config(tiny_config(tmp_path, n_train=8, n_val=2, model=dict(TINY_MODEL, deep_supervision=True,
                                                                          aux_params={"classes": 3}),
                                   data={"aux_labels": "mask", "ignore_index": 255},
                                   loss={"deep_supervision": True}, trainer={"max_epochs": 1}))
    summary = train(cfg)
    assert summary["global_step"] == 2 and summary["final"]["train/loss"] > 0
    model = smp_like.from_pretrained(tmp_path / "runs" / "r" / "best").eval()
    mask, label = model(torch.randn(1, 3, 32, 32))
    assert mask.shape == (1, 3, 32, 32) and label.shape == (1, 3)


def test_validation_forward_uses_the_sliding_window_when_a_roi_is_set():
    from smp_like.training.task import validation_forward

    inference = pytest.importorskip("smp_like.inference")
    torch.manual_seed(0)
    model = smp_like.create_model(**TINY_MODEL, classes=3, aux_params={"classes": 3}).eval()
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        whole = validation_forward(model, x)
        assert torch.allclose(whole, model(x)[0])
        windowed = validation_forward(model, x, roi_size=(32, 32), overlap=0.5)
        reference = inference.sliding_window(model, x, roi_size=(32, 32), overlap=0.5)
    reference = reference[0] if isinstance(reference, (tuple, list)) else reference
    assert windowed.shape == (1, 3, 40, 48) and torch.allclose(windowed, reference)
    assert not torch.allclose(windowed, whole, atol=1e-4)  # the windows really were used
