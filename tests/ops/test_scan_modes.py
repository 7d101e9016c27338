"""Tests of smp_like.ops.scan_modes: direction counts, exact inversion of every direction, brute-force orders."""

import itertools

import pytest
import torch

from smp_like.ops import SCAN_MODES, merge_sequences, num_directions, scan_sequences
from smp_like.ops.scan_modes import scan_directions

SHAPES = {1: (23,), 2: (29, 37), 3: (9, 11, 13)}


@pytest.mark.parametrize(
    "mode, dims, expected",
    [
        ("single", 1, 1),
        ("simplified", 1, 1),
        ("cross", 1, 1),
        ("single", 2, 1),
        ("simplified", 2, 2),
        ("cross", 2, 2),
        ("single", 3, 1),
        ("simplified", 3, 3),
        ("cross", 3, 6),
    ],
)
@pytest.mark.parametrize("flip", [False, True])
def test_num_directions(mode, dims, expected, flip):
    assert num_directions(mode, dims, flip) == expected * (2 if flip else 1)


def test_simplified_makes_every_axis_fastest_once():
    for dims in (2, 3):
        fastest = sorted(order[-1] for order, _ in scan_directions("simplified", dims))
        assert fastest == list(range(dims))
    assert sorted(o for o, _ in scan_directions("cross", 3)) == sorted(itertools.permutations(range(3)))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", SCAN_MODES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_round_trip_each_direction_is_inverted_exactly(dims, mode, flip):
    x = torch.randn(2, 3, *SHAPES[dims])
    seqs = scan_sequences(x, mode=mode, flip=flip)
    k = num_directions(mode, dims, flip)
    assert seqs.shape == (2, k, 3, x[0, 0].numel())
    # Each direction alone maps back to x exactly (zero the others).
    for i in range(k):
        only = torch.zeros_like(seqs)
        only[:, i] = seqs[:, i]
        assert torch.equal(merge_sequences(only, mode, flip, x.shape[2:]), x)
    # All directions: the sum is K·x.
    torch.testing.assert_close(merge_sequences(seqs, mode, flip, x.shape[2:]), k * x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_sequences_follow_axis_orders_brute_force(dims):
    shape = SHAPES[dims]
    # Each voxel's value is its raster index, so a sequence lists the raster indices it visits.
    x = torch.arange(torch.Size(shape).numel(), dtype=torch.float64).reshape(1, 1, *shape)
    seqs = scan_sequences(x, mode="cross", flip=True)
    directions = scan_directions("cross", dims, flip=True)
    for k, (order, rev) in enumerate(directions):
        visit = []
        # Nested loops, slowest axis (order[0]) outermost.
        for idx in itertools.product(*(range(shape[a]) for a in order)):
            pos = [0] * dims
            for a, i in zip(order, idx):
                pos[a] = i
            visit.append(x[(0, 0, *pos)].item())
        if rev:
            visit = visit[::-1]
        assert seqs[0, k, 0].tolist() == visit


def test_single_is_raster_order_and_flip_reverses():
    x = torch.randn(2, 4, 5, 6)
    seqs = scan_sequences(x, mode="single", flip=True)
    assert torch.equal(seqs[:, 0], x.flatten(2))
    assert torch.equal(seqs[:, 1], x.flatten(2).flip(-1))


def test_gradients_flow_through_scan_and_merge():
    x = torch.randn(1, 2, 5, 7, requires_grad=True)
    merge_sequences(scan_sequences(x, "cross", True) * 2, "cross", True, (5, 7)).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 8.0))


def test_bad_arguments():
    x = torch.randn(1, 2, 5, 7)
    with pytest.raises(ValueError, match="scan mode must be one of"):
        scan_sequences(x, mode="zigzag")
    with pytest.raises(ValueError, match="spatial axes"):
        scan_sequences(torch.randn(1, 2, 3, 4, 5, 6), mode="single")
    with pytest.raises(TypeError, match="flip"):
        scan_sequences(x, mode="single", flip="yes")
    with pytest.raises(ValueError, match="y must have shape"):
        merge_sequences(scan_sequences(x, "cross"), "cross", True, (5, 7))
    with pytest.raises(ValueError, match="spatial_dims"):
        num_directions("cross", 4)
