"""Sliding-window inference against MONAI (oracle), an exactly equivariant model, and the Gaussian closed form."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.inference import count_windows, importance_map, sliding_window, window_starts

monai_inferers = pytest.importorskip("monai.inferers")


def _net(spatial_dims, in_channels=2, out_channels=3, seed=0):
    """A small conv net: zero padding makes it position-dependent near borders, so windows really differ."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    return nn.Sequential(conv(in_channels, 4, 3, padding=1), nn.Tanh(), conv(4, out_channels, 3, padding=1)).eval()


class Scaled(nn.Module):
    """Output at ``factor`` times the window size (a mask_scale other than 1)."""

    def __init__(self, inner, factor):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        y = self.inner(x)
        if self.factor > 1:
            return F.interpolate(y, scale_factor=self.factor, mode="nearest")
        return F.avg_pool2d(y, int(1 / self.factor)) if y.ndim == 4 else F.avg_pool3d(y, int(1 / self.factor))


def _monai(model, x, roi, **kw):
    return monai_inferers.sliding_window_inference(x, roi, kw.pop("sw_batch_size", 4), model, **kw)


CASES_2D = [
    # (input spatial size, roi) — odd sizes, roi larger than the input on one or both axes, roi == input.
    ((37, 53), (16, 16)),
    ((33, 20), (15, 24)),
    ((9, 11), (16, 16)),
    ((32, 32), (32, 32)),
]


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.8])
@pytest.mark.parametrize("size,roi", CASES_2D)
def test_matches_monai_2d(size, roi, overlap, mode):
    model = _net(2)
    x = torch.randn(2, 2, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = sliding_window(model, x, roi, overlap=overlap, sw_batch_size=3, mode=mode)
        ref = _monai(model, x, roi, sw_batch_size=3, overlap=overlap, mode=mode)
    assert ours.shape == ref.shape == (2, 3) + size
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap", [0.25, 0.6])
@pytest.mark.parametrize("size,roi", [((13, 17, 11), (8, 8, 8)), ((6, 21, 9), (8, 10, 12))])
def test_matches_monai_3d(size, roi, overlap, mode):
    model = _net(3)
    x = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = sliding_window(model, x, roi, overlap=overlap, sw_batch_size=5, mode=mode, sigma_scale=0.2)
        ref = _monai(model, x, roi, sw_batch_size=5, overlap=overlap, mode=mode, sigma_scale=0.2)
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=0, atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "constant"])
def test_matches_monai_padding_modes(padding_mode):
    model = _net(2)
    x = torch.randn(1, 2, 10, 30, generator=torch.Generator().manual_seed(3))
    cval = dict(cval=0.5) if padding_mode == "constant" else {}  # torch's reflect/replicate take no fill value
    with torch.no_grad():
        ours = sliding_window(model, x, (16, 12), padding_mode=padding_mode, mode="gaussian", **cval)
        ref = _monai(model, x, (16, 12), padding_mode=padding_mode, mode="gaussian", **cval)
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=0, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 0.5])
@pytest.mark.parametrize("mode", ["constant", "gaussian"])
def test_matches_monai_scaled_outputs(factor, mode):
    model = Scaled(_net(2), factor)
    x = torch.randn(1, 2, 40, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = sliding_window(model, x, 16, overlap=0.5, mode=mode)
        ref = _monai(model, x, 16, overlap=0.5, mode=mode)
    assert ours.shape[2:] == (int(40 * factor), int(28 * factor))
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=0, atol=1e-5)


def test_tiny_unet_matches_monai_and_tuple_output_uses_mask():
    import smp_like as smp

    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4), classes=2,
                     aux_params=dict(classes=3)).eval()
    x = torch.randn(1, 3, 45, 70, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = sliding_window(model, x, 32, overlap=0.5, mode="gaussian")
        ref = _monai(lambda w: model(w)[0], x, 32, overlap=0.5, mode="gaussian")
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
@pytest.mark.parametrize("spatial_dims,size,roi", [(2, (41, 29), (16, 8)), (3, (11, 14, 9), (4, 6, 5))])
def test_translation_equivariant_model_equals_full_image(spatial_dims, size, roi, mode):
    # A 1x1 conv sees one pixel at a time, so every window gives the full-image values and any blend of them with
    # positive weights summing to one is the full-image output.
    conv = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(3, 4, 1)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = conv(x)
        for overlap in (0.0, 0.3, 0.75):
            out = sliding_window(conv, x, roi, overlap=overlap, sw_batch_size=7, mode=mode)
            torch.testing.assert_close(out, full, rtol=0, atol=1e-5)


def test_gaussian_closed_form():
    roi, sigma = (12, 7, 5), (0.125, 0.3, 0.5)
    expected = np.empty(roi)
    for idx in itertools.product(*(range(r) for r in roi)):
        expected[idx] = math.prod(
            math.exp(-((i - (r - 1) / 2) ** 2) / (2 * (s * r) ** 2)) for i, r, s in zip(idx, roi, sigma)
        )
    expected = np.maximum(expected, max(expected.min(), 1e-3))
    got = importance_map(roi, "gaussian", sigma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    # sigma_scale 0.125 on 32 pixels: the corners fall below 1e-3 and are clamped there.
    corners = importance_map((32, 32), "gaussian")
    assert float(corners.min()) == pytest.approx(1e-3) and float(corners.max()) < 1
    assert torch.equal(importance_map((4, 5), "constant"), torch.ones(4, 5))


def test_window_grid_covers_every_pixel_and_stays_inside():
    for size, roi, overlap in [(100, 32, 0.25), (33, 32, 0.5), (64, 16, 0.0), (5, 5, 0.9)]:
        starts = window_starts(size, roi, overlap)
        covered = np.zeros(size, bool)
        for s in starts:
            assert 0 <= s <= size - roi
            covered[s : s + roi] = True
        assert covered.all() and starts == sorted(set(starts))
    assert count_windows((100, 64), 32, 0.25) == len(window_starts(100, 32, 0.25)) * len(window_starts(64, 32, 0.25))


def test_progress_counts_windows_and_model_sees_batches_of_sw_batch_size():
    seen = []

    def model(w):
        seen.append(w.shape[0])
        return w

    class Bar:
        n = 0

        def update(self, k):
            Bar.n += k

    x = torch.randn(2, 1, 50, 50)
    sliding_window(model, x, 16, overlap=0.25, sw_batch_size=4, progress=Bar())
    windows = 2 * count_windows((50, 50), 16, 0.25)
    assert Bar.n == windows == sum(seen) and max(seen) == 4


def test_bad_arguments_name_themselves():
    x = torch.randn(1, 1, 8, 8)
    ident = nn.Identity()
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(ident, x, 4, overlap=1.0)
    with pytest.raises(ValueError, match="mode"):
        sliding_window(ident, x, 4, mode="median")
    with pytest.raises(ValueError, match="padding_mode"):
        sliding_window(ident, x, 4, padding_mode="edge")
    with pytest.raises(ValueError, match="sw_batch_size"):
        sliding_window(ident, x, 4, sw_batch_size=0)
    with pytest.raises(ValueError, match="roi_size"):
        sliding_window(ident, x, (4, 4, 4))
    with pytest.raises(TypeError, match="tensor"):
        sliding_window(lambda w: w.numpy(), x, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_windows_on_gpu_accumulation_on_cpu():
    model = _net(3)
    x = torch.randn(1, 2, 20, 24, 18)
    with torch.no_grad():
        cpu = sliding_window(model, x, 8, overlap=0.5, mode="gaussian")
        mixed = sliding_window(model.cuda(), x, 8, overlap=0.5, mode="gaussian", sw_device="cuda", device="cpu")
    assert mixed.device.type == "cpu"
    torch.testing.assert_close(mixed, cpu, rtol=0, atol=1e-4)
