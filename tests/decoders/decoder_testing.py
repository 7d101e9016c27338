"""Helpers shared by the decoder tests: eval-mode outputs and their comparison with SMP's."""

import torch


def eval_out(model, x):
    """The model's output in eval mode, without gradients."""
    with torch.no_grad():
        return model.eval()(x)


def assert_same_outputs(a, b, atol=1e-5):
    """Same structure (mask, or (mask, label)), same shapes, values within ``atol``."""
    assert isinstance(a, tuple) == isinstance(b, tuple)
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=0, atol=atol)
