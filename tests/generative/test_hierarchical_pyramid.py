"""HSeM (hierarchical pyramid) and PyramidLoss: exact shapes, hand-computed loss, any input size, save/load."""

import math

import pytest
import torch
import torch.nn as nn

from smp_like.base.model import SegmentationModel
from smp_like.decoders.hierarchical.model import HSeM
from smp_like.factory import create_model
from smp_like.losses.pyramid import PyramidLoss

ENCODERS = ["resnet18", "tu-test_resnet"]
TINY = dict(decoder_channels=(16, 16, 8, 8, 8), encoder_weights=None)


def build(encoder="resnet18", **kwargs):
    config = dict(TINY, encoder_name=encoder)
    config.update(kwargs)
    return HSeM(**config)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("encoder", ENCODERS)
def test_side_output_shapes_exact_2d_odd(encoder):
    torch.manual_seed(0)
    model = build(encoder, classes=3).train()
    h, w = 37, 41
    main, sides = model(torch.randn(2, 3, h, w))
    assert main.shape == (2, 3, h, w)
    # Depth 5: stages at strides 16, 8, 4, 2, 1 (coarse to fine), size ceil(size / stride) exactly.
    strides = [16, 8, 4, 2, 1]
    assert [tuple(s.shape) for s in sides] == [(2, 3, math.ceil(h / s), math.ceil(w / s)) for s in strides]


def test_side_output_shapes_exact_3d_odd():
    torch.manual_seed(0)
    model = build(encoder_depth=3, decoder_channels=(8, 8, 8), spatial_dims=3, in_channels=1, classes=2).train()
    size = (19, 21, 23)
    main, sides = model(torch.randn(1, 1, *size))
    assert main.shape == (1, 2) + size
    expected = [(1, 2) + tuple(math.ceil(n / s) for n in size) for s in (4, 2, 1)]
    assert [tuple(s.shape) for s in sides] == expected


def test_anisotropic_strides_3d():
    # Thick slices: the first stride-2 stage keeps the depth axis; side sizes follow the per-axis strides.
    model = build(encoder_depth=3, decoder_channels=(8, 8, 8), spatial_dims=3,
                  strides=[(1, 2, 2), 2, (1, 2, 2), 2, 2]).train()
    size = (7, 21, 23)
    main, sides = model(torch.randn(1, 3, *size))
    assert main.shape == (1, 1) + size
    per_axis = [(2, 4, 4), (1, 2, 2), (1, 1, 1)]
    assert [tuple(s.shape[2:]) for s in sides] == [
        tuple(math.ceil(n / r) for n, r in zip(size, stride)) for stride in per_axis
    ]


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (17, 64), (50, 29)])
def test_final_output_follows_input_size_2d(size):
    model = build(classes=2)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2) + size


@pytest.mark.parametrize("size", [(16, 16, 16), (13, 18, 11)])
def test_final_output_follows_input_size_3d(size):
    model = build(encoder_depth=3, decoder_channels=(8, 8, 8), spatial_dims=3, classes=1).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 1) + size


def test_train_eval_interface_and_no_side_heads():
    x = torch.randn(1, 3, 33, 35)
    model = build()
    out = model.train()(x)
    assert isinstance(out, tuple) and len(out) == 2 and len(out[1]) == 5
    model.eval()
    assert isinstance(model(x), torch.Tensor)
    assert isinstance(model.predict(x), torch.Tensor)
    plain = build(side_heads=False).train()
    assert plain.side_heads is None and isinstance(plain(x), torch.Tensor)


def test_registered_and_built_by_name():
    model = create_model("hsem", "resnet18", encoder_weights=None, decoder_channels=(16, 16, 8, 8, 8))
    assert isinstance(model, HSeM) and isinstance(model, SegmentationModel)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(decoder_channels=(8, 8)), r"decoder_channels.*encoder_depth=5"),
        (dict(classes=0), r"classes"),
        (dict(fusion_channels=-1), r"fusion_channels"),
        (dict(spatial_dims=4), r"spatial_dims"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"4 dims"):
        build()(torch.randn(3, 32, 32))


# ---------------------------------------------------------------- every encoder: forward, backward, save/load


@pytest.mark.parametrize("encoder", ENCODERS)
def test_forward_backward_save_load(encoder, tmp_path):
    torch.manual_seed(0)
    model = build(encoder, classes=2).train()
    x = torch.randn(2, 3, 35, 38)
    target = torch.randint(0, 2, (2, 35, 38))
    loss = PyramidLoss(nn.CrossEntropyLoss())(model(x), target)
    loss.backward()
    for name in ("decoder", "fusion", "segmentation_head", "side_heads", "encoder"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
    model.eval()
    model.save_pretrained(tmp_path / "hsem")
    loaded = HSeM.from_pretrained(tmp_path / "hsem").eval()
    assert type(loaded) is HSeM
    import smp_like

    assert type(smp_like.from_pretrained(tmp_path / "hsem")) is HSeM  # dispatch on the saved class name
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        loaded.train(), model.train()
        # Train mode (batch statistics) is deterministic too: side outputs survive the round trip.
        (m1, s1), (m2, s2) = loaded(x), model(x)
    torch.testing.assert_close(m1, m2, rtol=0, atol=0)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------- PyramidLoss against hand computations


def nearest_by_index(target, size):
    """Independent nearest down-sampling: output pixel i takes input pixel floor(i * in / out) (integers only)."""
    out = target
    for axis, n_out in enumerate(size):
        dim = out.dim() - len(size) + axis
        n_in = out.shape[dim]
        index = torch.tensor([(i * n_in) // n_out for i in range(n_out)])
        out = out.index_select(dim, index)
    return out


def area_by_loop(target, size):
    """Independent area down-sampling (2D): mean over input rows [floor(i*H/h), ceil((i+1)*H/h))."""
    n, c, big_h, big_w = target.shape
    h, w = size
    out = torch.empty(n, c, h, w, dtype=target.dtype)
    for i in range(h):
        r0, r1 = (i * big_h) // h, -(-((i + 1) * big_h) // h)
        for j in range(w):
            c0, c1 = (j * big_w) // w, -(-((j + 1) * big_w) // w)
            out[:, :, i, j] = target[:, :, r0:r1, c0:c1].mean(dim=(2, 3))
    return out


def test_nearest_helper_is_sane():
    t = torch.arange(6).view(1, 6)
    assert nearest_by_index(t, (3,)).tolist() == [[0, 2, 4]]


def fake_outputs(size, sizes, classes, spatial_dims=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    main = torch.randn(2, classes, *size, generator=g)
    sides = [torch.randn(2, classes, *s, generator=g) for s in sizes]
    return main, sides


def test_pyramid_loss_mean_equals_hand_sum_2d():
    size = (37, 41)
    sizes = [(3, 3), (5, 6), (10, 11), (19, 21), (37, 41)]
    main, sides = fake_outputs(size, sizes, classes=4)
    target = torch.randint(0, 4, (2,) + size, generator=torch.Generator().manual_seed(1))
    ce = nn.CrossEntropyLoss()
    expected = ce(main, target) + sum(ce(s, nearest_by_index(target, s.shape[2:])) for s in sides) / len(sides)
    got = PyramidLoss(ce)((main, sides), target)
    torch.testing.assert_close(got, expected)


def test_pyramid_loss_weighted_side_loss_3d():
    size = (19, 21, 23)
    sizes = [(5, 6, 6), (10, 11, 12), (19, 21, 23)]
    main, sides = fake_outputs(size, sizes, classes=3)
    target = torch.randint(0, 3, (2,) + size, generator=torch.Generator().manual_seed(2))
    ce = nn.CrossEntropyLoss()
    weights = [0.5, 0.25, 2.0]

    def side_ce(pred, tgt):
        return 3.0 * ce(pred, tgt)

    expected = ce(main, target) + sum(
        w * 3.0 * ce(s, nearest_by_index(target, s.shape[2:])) for w, s in zip(weights, sides)
    )
    got = PyramidLoss(ce, side_weights=weights, side_loss=side_ce)((main, sides), target)
    torch.testing.assert_close(got, expected)


def test_pyramid_loss_area_float_targets():
    size = (13, 15)
    sizes = [(4, 4), (7, 8)]
    main, sides = fake_outputs(size, sizes, classes=2)
    target = torch.rand(2, 2, *size, generator=torch.Generator().manual_seed(3))
    mse = nn.MSELoss()
    expected = mse(main, target) + 0.5 * (
        mse(sides[0], area_by_loop(target, (4, 4))) + mse(sides[1], area_by_loop(target, (7, 8)))
    )
    got = PyramidLoss(mse, target_resize="area")((main, sides), target)
    torch.testing.assert_close(got, expected)


def test_pyramid_loss_main_only_and_errors():
    main, sides = fake_outputs((8, 8), [(4, 4), (8, 8)], classes=2)
    target = torch.randint(0, 2, (2, 8, 8))
    ce = nn.CrossEntropyLoss()
    torch.testing.assert_close(PyramidLoss(ce)(main, target), ce(main, target))
    with pytest.raises(ValueError, match=r"side_weights.*3 entries.*2 side"):
        PyramidLoss(ce, side_weights=[1, 1, 1])((main, sides), target)
    with pytest.raises(ValueError, match=r"target_resize.*'cubic'"):
        PyramidLoss(ce, target_resize="cubic")
    with pytest.raises(ValueError, match=r"side_weights"):
        PyramidLoss(ce, side_weights=[1.0, -1.0])
    with pytest.raises(TypeError, match=r"main_loss"):
        PyramidLoss("ce")
    with pytest.raises(ValueError, match=r"target must have shape"):
        PyramidLoss(ce)((main, sides), torch.zeros(2, 1, 1, 8, 8, dtype=torch.long))


def test_end_to_end_loss_matches_hand_sum_on_model_outputs():
    torch.manual_seed(0)
    model = build(classes=3).train()
    x = torch.randn(2, 3, 37, 41)
    target = torch.randint(0, 3, (2, 37, 41))
    main, sides = model(x)
    ce = nn.CrossEntropyLoss()
    expected = ce(main, target) + sum(ce(s, nearest_by_index(target, s.shape[2:])) for s in sides) / 5
    torch.testing.assert_close(PyramidLoss(ce)((main, sides), target), expected)
