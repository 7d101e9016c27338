"""Image metrics of reconstruction and generation runs: MSE, PSNR and SSIM per image, data range 1.

* ``mse``  — mean squared error over channels and pixels of each image;
* ``psnr`` — ``10 log10(L^2 / MSE)`` with ``L = data_range`` (infinite for identical images, which is reported as
  :data:`PSNR_CAP` dB so that epoch means stay finite);
* ``ssim`` — :func:`smp_like.losses.ssim` (Wang et al. 2004, Gaussian window 11, sigma 1.5), averaged over channels;
  the window shrinks to the largest odd size that fits images smaller than 11 pixels.

Each function returns one value per image, shape ``(N,)``; runs log the mean over images.
"""

from typing import Callable, Dict, Sequence

import torch

from smp_like.losses import ssim as _ssim

__all__ = ["image_mse", "psnr", "image_ssim", "IMAGE_METRIC_FUNCTIONS", "image_scores", "PSNR_CAP"]

#: PSNR reported for a perfect reconstruction (MSE = 0), in dB.
PSNR_CAP = 100.0


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"image metrics need equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() < 3:
        raise ValueError(f"image metrics need (N, C, *spatial) batches, got shape {tuple(x.shape)}")


def image_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image, ``(N,)``."""
    _check(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image in dB, ``10 log10(data_range^2 / MSE)``, ``(N,)``."""
    mse = image_mse(x, y)
    value = 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-30))
    return value.clamp(max=PSNR_CAP)


def image_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each image (over positions and channels), ``(N,)``."""
    _check(x, y)
    smallest = min(x.shape[2:])
    window = min(11, smallest if smallest % 2 else smallest - 1)
    return _ssim(x.float(), y.float(), window_size=max(window, 1), data_range=data_range).mean(1)


IMAGE_METRIC_FUNCTIONS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": image_mse,
    "psnr": psnr,
    "ssim": image_ssim,
}


def image_scores(prediction: torch.Tensor, target: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """``{name: (N,) values}`` for each metric name (``mse``, ``psnr``, ``ssim``).

    Raises:
        ValueError: for an unknown name (listing the choices) or mismatched shapes.
    """
    unknown = [n for n in names if n not in IMAGE_METRIC_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown image metrics {unknown}; choose from {sorted(IMAGE_METRIC_FUNCTIONS)}")
    return {n: IMAGE_METRIC_FUNCTIONS[n](prediction, target) for n in names}
