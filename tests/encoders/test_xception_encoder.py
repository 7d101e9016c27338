"""Xception: odd sizes against SMP, shortcut inputs left intact, 2D only, bad input. Features for depth 5/3
and in_channels 1/3/4 are in test_encoder_catalogue_smp.py."""

import warnings

import pytest
import torch

from smp_like.encoders import get_encoder


def run(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


@pytest.mark.conformance
def test_odd_input_matches_smp():
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smp_oracle.encoders.get_encoder("xception", weights=None, in_channels=2)
    generator = torch.Generator().manual_seed(0)
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    ours = get_encoder("xception", in_channels=2)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 2, 45, 51)
    features = run(ours, x)
    for a, b in zip(features, run(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))
    assert [f.shape[2:] for f in features[1:]] == [(23, 26), (12, 13), (6, 7), (3, 4), (2, 2)]
    assert features[-1].min() < 0  # bn4 output, no final ReLU (as SMP)


def test_blocks_leave_their_input_intact():
    # The shortcut reuses the block input, so the block's first ReLU must not run in place.
    encoder = get_encoder("xception", depth=1).eval()
    x = torch.randn(1, 728, 5, 5)
    before = x.clone()
    with torch.no_grad():
        out = encoder.block4(x)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    assert out.shape == x.shape


@pytest.mark.parametrize("depth", [1, 3])
def test_shallow_depths(depth):
    encoder = get_encoder("xception", depth=depth)
    features = run(encoder, torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in features] == list(encoder.out_channels) == [3, 64, 128, 256][: depth + 1]
    assert encoder.reductions == (1, 2, 4, 8)[: depth + 1]


def test_3d_refused():
    with pytest.raises(ValueError, match=r"spatial_dims.*\(2,\).*spatial_dims=3"):
        get_encoder("xception", spatial_dims=3)


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth.*1\.\.5"):
        get_encoder("xception", depth=depth)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilation_refused(output_stride):
    with pytest.raises(ValueError, match=rf"output_stride.*{output_stride}.*max-pool"):
        get_encoder("xception", output_stride=output_stride, depth=1)


@pytest.mark.conformance
def test_smp_refuses_dilation_too():
    smp_oracle = pytest.importorskip("segmentation_models_pytorch")
    with pytest.raises(ValueError):
        smp_oracle.encoders.get_encoder("xception", weights=None, output_stride=16)


def test_unknown_weights_tag():
    with pytest.raises(ValueError, match=r"encoder_weights.*'imagenet\+5k'.*imagenet"):
        get_encoder("xception", weights="imagenet+5k")


def test_time_embedding_refused():
    encoder = get_encoder("xception", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 8, 8), time_emb=torch.randn(1, 4))
