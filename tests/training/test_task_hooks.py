"""The hooks every task shares (training/task_hooks.py): each task resumes the global RNG exactly."""

import pytest
import torch

pytest.importorskip("lightning")

from smp_like.training.classification_task import ClassificationTask  # noqa: E402
from smp_like.training.generative_task import GenerativeTask  # noqa: E402
from smp_like.training.task import SegmentationTask  # noqa: E402


@pytest.mark.parametrize("task", [SegmentationTask, GenerativeTask, ClassificationTask])
def test_checkpoint_restores_the_random_stream(task):
    checkpoint = {}
    torch.manual_seed(1)
    task.on_save_checkpoint(None, checkpoint)  # the hooks read no task state
    expected = torch.rand(4)
    torch.manual_seed(2)  # a resumed process starts elsewhere
    task.on_load_checkpoint(None, checkpoint)
    assert torch.equal(torch.rand(4), expected)
    task.on_load_checkpoint(None, {})  # a checkpoint without the state (older runs) loads too
