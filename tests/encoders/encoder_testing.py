"""Helpers shared by the encoder tests: the SMP oracle, non-trivial BN statistics, feature comparisons."""

import warnings

import pytest
import torch

# Per-stage strides of thick-slice volumes: the depth axis is not down-sampled in the first two stages.
THICK_SLICES = [(1, 2, 2), (1, 2, 2), 2, 2, 2]


def smp_encoder(name, **kwargs):
    """SMP's encoder of the same name with random weights (the oracle), its warnings silenced."""
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smp_oracle.encoders.get_encoder(name, weights=None, **kwargs)


def random_bn_statistics(module, seed=0):
    """Non-trivial running statistics, so eval-mode BatchNorm is not the identity and a mismatch in it shows."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)


def features(encoder, x):
    """The encoder's features in eval mode, without gradients."""
    with torch.no_grad():
        return encoder.eval()(x)


def assert_same(got, expected):
    """Same number and shapes of features, values within 1e-5 of each feature's scale."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        if b.numel():
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))


def assert_sizes_follow_reductions(encoder, x, feature_maps):
    """Channels are ``out_channels``; each axis is its input size over the reduction (rounded either way)."""
    assert [f.shape[1] for f in feature_maps] == list(encoder.out_channels)
    for feature, reduction in zip(feature_maps, encoder.reductions):
        per_axis = (reduction,) * (x.dim() - 2) if isinstance(reduction, int) else reduction
        for size, n, r in zip(feature.shape[2:], x.shape[2:], per_axis):
            assert n // r <= size <= -(-n // r), (tuple(feature.shape), reduction)
