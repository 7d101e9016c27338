"""Test-time augmentation: exact inverses, invariance, batched == per-transform loop, uncertainty maps."""

import pytest
import torch
import torch.nn as nn

from smp_like.inference import TTA, Transform, sliding_window, tta, tta_transforms

SETS = [("flip", 2, 4), ("d4", 2, 8), ("flip", 3, 4), ("d4", 3, 8), ("flip3d", 3, 8), ("flip3d_rot90", 3, 16)]


@pytest.mark.parametrize("name,dims,count", SETS)
def test_each_inverse_is_exact_and_transforms_are_distinct(name, dims, count):
    ts = tta_transforms(name, dims)
    assert len(ts) == count
    x = torch.randn((2, 3) + ((5, 6, 7) if dims == 3 else (6, 7)))
    images = set()
    for t in ts:
        y = t.apply(x)
        assert torch.equal(t.invert(y), x)  # a pixel permutation: bit-exact
        images.add(y.numpy().tobytes() + bytes(str(y.shape), "ascii"))
    assert len(images) == count  # no duplicates in a set


def _tiny_unet(classes=3):
    import smp_like as smp

    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4),
                    classes=classes).eval()


class Symmetrized(nn.Module):
    """An equivariant model by construction: the average of inner(t(x)) mapped back over a transform group.

    For any t in the group, f(t x) = t f(x), so every TTA copy mapped back is f(x): TTA equals the plain output.
    """

    def __init__(self, inner, group):
        super().__init__()
        self.inner, self.group = inner, group

    def forward(self, x):
        return torch.stack([t.invert(self.inner(t.apply(x))) for t in self.group]).mean(0)


@pytest.mark.parametrize("merge", ["mean", "gmean", "max", "min", "tsharpen"])
def test_invariant_model_gives_plain_output_and_zero_std(merge):
    group = tta_transforms("d4", 2)
    model = Symmetrized(nn.Conv2d(3, 2, 3, padding=1), group).eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        plain = torch.softmax(model(x), 1)
        merged, std = tta(model, x, "d4", merge=merge, activation="softmax", return_std=True)
    # tsharpen averages square roots: on identical copies it returns sqrt(p) by definition.
    expected = plain.sqrt() if merge == "tsharpen" else plain
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-6)
    assert float(std.abs().max()) < 1e-6


def test_std_is_positive_for_a_model_that_is_not_invariant():
    model = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        _, std = tta(model, torch.randn(1, 3, 10, 10), "d4", activation="sigmoid", return_std=True)
    assert float(std.mean()) > 1e-3 and bool((std >= 0).all())


def _loop_reference(model, x, transforms, merge, activation):
    """ttach's way: one model call per transform, merged with plain formulas."""
    outs = []
    for t in transforms:
        y = model(t.apply(x))
        outs.append(activation(t.invert(y)))
    if merge == "mean":
        return sum(outs) / len(outs)
    if merge == "gmean":
        prod = outs[0].double()
        for o in outs[1:]:
            prod = prod * o.double()
        return (prod ** (1 / len(outs))).float()
    if merge == "max":
        return torch.stack(outs).max(0).values
    if merge == "min":
        return torch.stack(outs).min(0).values
    return sum(o**0.5 for o in outs) / len(outs)


@pytest.mark.parametrize("merge", ["mean", "gmean", "max", "min", "tsharpen"])
@pytest.mark.parametrize("name,size", [("d4", (32, 32)), ("d4", (32, 48)), ("flip", (40, 24))])
def test_batched_equals_loop_over_transforms(name, size, merge):
    model = _tiny_unet()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = tta(model, x, name, merge=merge, activation="softmax", max_batch=5)
        ref = _loop_reference(model, x, tta_transforms(name, 2), merge, lambda t: torch.softmax(t, 1))
    torch.testing.assert_close(batched, ref, rtol=0, atol=1e-6)


def test_3d_flips_batched_equals_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 3, padding=1))
    x = torch.randn(1, 1, 6, 8, 8)
    for name in ("flip3d", "flip3d_rot90"):
        with torch.no_grad():
            batched = tta(model, x, name, activation="sigmoid")
            ref = _loop_reference(model, x, tta_transforms(name, 3), "mean", torch.sigmoid)
        torch.testing.assert_close(batched, ref, rtol=0, atol=1e-6)


def test_copies_run_as_few_batches_split_by_max_batch():
    calls = []

    def model(b):
        calls.append(b.shape[0])
        return b

    x = torch.randn(3, 1, 8, 8)
    tta(model, x, "d4")
    assert calls == [24]
    calls.clear()
    tta(model, x, "d4", max_batch=10)
    assert calls == [10, 10, 4]
    calls.clear()
    tta(model, torch.randn(1, 1, 8, 6), "d4")  # odd quarter turns of a non-square input: a second batch
    assert sorted(calls) == [4, 4]


def test_tta_inside_sliding_window_runs_each_window_batch_with_its_copies():
    conv = nn.Conv2d(3, 2, 1)  # equivariant under every flip and quarter turn
    sizes = []

    def model(b):
        sizes.append(b.shape[0])
        return conv(b)

    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        out = sliding_window(TTA(model, "d4", activation="softmax"), x, 16, sw_batch_size=2, mode="gaussian")
        torch.testing.assert_close(out, torch.softmax(conv(x), 1), rtol=0, atol=1e-5)
        with_std = sliding_window(TTA(conv, "flip", activation="softmax", return_std="channels"), x, 16)
    assert set(sizes) <= {16, 8} and 16 in sizes
    assert with_std.shape[1] == 4 and float(with_std[:, 2:].abs().max()) < 1e-6


def test_bad_arguments():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="merge"):
        tta(nn.Identity(), x, merge="median")
    with pytest.raises(ValueError, match="transforms"):
        tta(nn.Identity(), x, transforms="rot45")
    with pytest.raises(ValueError, match="3D"):
        tta(nn.Identity(), x, transforms="flip3d")
    with pytest.raises(ValueError, match="activation"):
        tta(nn.Identity(), x, activation="relu6")
    with pytest.raises(ValueError, match="non-negative"):
        tta(nn.Identity(), -torch.ones(1, 1, 4, 4), merge="gmean")
    with pytest.raises(TypeError, match="Transform"):
        tta(nn.Identity(), x, transforms=["hflip"])
    assert tta(nn.Identity(), x, transforms=[Transform((1,))]).shape == x.shape
