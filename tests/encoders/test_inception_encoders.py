"""Inception-v4 and Inception-ResNet-v2 (Szegedy et al. 2017): what the generic SMP catalogue test does not
cover.

SMP pads every 3x3 conv and max-pool, so these encoders take any size (odd, 64 px, 96 px) and give features
of size ``ceil(size / reduction)``; SMP's stage boundaries of Inception-v4 are not the block-type boundaries.
Both refuse dilation and 3D.
"""


import pytest
import torch
from encoder_testing import features, random_bn_statistics, smp_encoder

from smp_like.encoders import get_encoder

smp_oracle = pytest.importorskip("segmentation_models_pytorch")

NAMES = ["inceptionv4", "inceptionresnetv2"]
SIZES = [(64, 64), (96, 96), (65, 97), (31, 33), (8, 8)]


@pytest.fixture(scope="module", params=NAMES)
def pair(request):
    """(name, SMP's depth-5 encoder with random BN statistics, ours with the same weights)."""
    theirs = smp_encoder(request.param)
    random_bn_statistics(theirs)
    ours = get_encoder(request.param)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return request.param, theirs.eval(), ours.eval()


@pytest.mark.conformance
def test_keys_and_shapes_equal_smp(pair):
    _, theirs, ours = pair
    theirs_state, ours_state = theirs.state_dict(), ours.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(ours_state[k].shape == theirs_state[k].shape for k in ours_state)


@pytest.mark.conformance
@pytest.mark.parametrize("size", SIZES)
def test_any_size_matches_smp_and_rounds_up(pair, size):
    _, theirs, ours = pair
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    got, expected = features(ours, x), features(theirs, x)
    assert len(got) == len(expected) == 6
    for feature, reference, reduction in zip(got, expected, ours.reductions):
        assert feature.shape == reference.shape
        assert tuple(feature.shape[2:]) == tuple(-(-s // reduction) for s in size)
        torch.testing.assert_close(
            feature, reference, rtol=0, atol=1e-5 * max(1.0, reference.abs().max().item())
        )


@pytest.mark.conformance
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_shallow_depths_are_smp_prefixes(pair, depth):
    # SMP's depth only truncates the feature list, so its depth-5 encoder is the oracle for every depth.
    name, theirs, ours = pair
    with torch.device("meta"):  # built without allocating, then given the weights of the depth-5 encoder
        shallow = get_encoder(name, depth=depth)
    shallow.load_state_dict(ours.state_dict(), assign=True)
    assert shallow.out_channels == tuple(theirs.out_channels[: depth + 1])
    x = torch.randn(1, 3, 40, 48)
    got, expected = features(shallow, x), features(theirs, x)[: depth + 1]
    assert len(got) == depth + 1
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("name", NAMES)
def test_dilation_refused(name, output_stride):
    with (
        torch.device("meta"),
        pytest.raises(ValueError, match=rf"`output_stride`={output_stride}.*not supported.*output_stride=32"),
    ):
        get_encoder(name, output_stride=output_stride)


@pytest.mark.parametrize("name", NAMES)
def test_smp_refuses_dilation_too(name):
    with torch.device("meta"), pytest.raises(ValueError):
        smp_encoder(name, output_stride=16)


@pytest.mark.parametrize("name", NAMES)
def test_spatial_dims_3_refused(name):
    with pytest.raises(ValueError, match=rf"'{name}' supports spatial_dims \(2,\).*spatial_dims=3"):
        get_encoder(name, spatial_dims=3)


@pytest.mark.parametrize("depth", [0, 6, 2.5, True])
@pytest.mark.parametrize("name", NAMES)
def test_unsupported_depth(name, depth):
    with pytest.raises(ValueError, match=r"`depth`.*1\.\.5"):
        get_encoder(name, depth=depth)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_weights_tag(name):
    with pytest.raises(ValueError, match=r"encoder_weights.*'imagenet\+5k'.*imagenet\+background"):
        get_encoder(name, weights="imagenet+5k")


def test_time_embedding_refused():
    encoder = get_encoder("inceptionv4", depth=1)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))
