"""A TIFF larger than the memory budget is predicted with peak RSS under that budget (measured in a subprocess).

The model is a 1x1 convolution so the run measures the engine's memory (bands, accumulation, writers), not a
network's activations; correctness of the streamed path against in-memory prediction is in test_predict.py.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20

SCRIPT = textwrap.dedent(
    """
    import sys, torch, numpy as np
    from smp_like.inference import predict_files
    from smp_like.io import Preprocessing

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 2, 1)
    prep = Preprocessing(mean=[0.5] * 3, std=[0.25] * 3)
    kw = dict(preprocessing=prep, roi_size=256, device="cpu", progress=False, stream_pixels=1, batch_size=8)
    # Warm-up on a small TIFF (one window): imports and thread pools are the baseline; the engine's band buffers
    # for the big image are not.
    warm = predict_files(model, [sys.argv[1]], sys.argv[3] + "_warm", save_probabilities=True, **kw)
    assert warm.ok, warm.failed
    base = rss("VmRSS:")
    report = predict_files(model, [sys.argv[2]], sys.argv[3], save_probabilities=True, **kw)
    assert report.ok, report.failed
    print(base, rss("VmHWM:"))
    """
)


def _write_tiff(path, height, width, seed=0):
    """A tiled RGB TIFF written tile by tile, never whole in memory."""
    rng = np.random.default_rng(seed)

    def tiles():
        for _ in range(-(-height // 256) * -(-width // 256)):
            yield rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)

    tifffile.imwrite(path, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb",
                     bigtiff=True)


def _peak_over_baseline(tmp_path, height, width):
    _write_tiff(tmp_path / "warm.tif", 256, 256, seed=1)
    _write_tiff(tmp_path / "image.tif", height, width)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "warm.tif"), str(tmp_path / "image.tif"),
                             str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    base, peak = (int(v) for v in result.stdout.split()[-2:])
    mask = tifffile.imread(tmp_path / "out" / "image.tif")  # the whole output exists and has the image's size
    assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 1}
    with tifffile.TiffFile(tmp_path / "out" / "image_probs.tif") as tif:
        assert tif.pages[0].shape == (height, width, 2) and tif.pages[0].is_tiled
    return peak - base


@pytest.mark.parametrize(
    "height,width,budget",
    [
        # Default run (~20 s): a 144 MB 8-bit image (576 MB as float32) under a 100 MB budget. Memory follows
        # the band width: about 65 MB here (bands 1024 pixels wide, window batch, writer queues, allocator).
        (49152, 1024, 100 * MB),
        # Wider bands: a 384 MB image (1.5 GB as float32), 4096 pixels wide (~150 MB measured), under 256 MB.
        pytest.param(32768, 4096, 256 * MB, marks=pytest.mark.slow),
    ],
)
def test_big_tiff_peak_rss_under_budget(tmp_path, height, width, budget):
    image_bytes = height * width * 3
    assert image_bytes > budget  # the image itself (8-bit!) does not fit the budget; as float32 it is 4x that
    grown = _peak_over_baseline(tmp_path, height, width)
    assert grown < budget, f"peak RSS grew by {grown / MB:.0f} MB for a {image_bytes / MB:.0f} MB image"
