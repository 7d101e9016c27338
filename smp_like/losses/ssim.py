"""Structural similarity (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) as a loss, for 2D and 3D."""

import torch
import torch.nn.functional as F
from torch import nn

from ._functional import check_choice

__all__ = ["SSIMLoss", "ssim", "gaussian_window"]


def gaussian_window(window_size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian ``w_i ~ exp(-(i - (size - 1)/2)^2 / (2 sigma^2))``, ``window_size`` long."""
    centre = (window_size - 1) / 2.0
    x = torch.arange(window_size, dtype=torch.float64, device=device) - centre
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype)


def _filter_axis(x: torch.Tensor, kernel: torch.Tensor, axis: int) -> torch.Tensor:
    """'valid' correlation of every channel of (N, C, *spatial) ``x`` with a 1-D kernel along ``axis``."""
    spatial = x.dim() - 2
    channels = x.shape[1]
    if spatial <= 3:
        shape = [1] * spatial
        shape[axis - 2] = kernel.numel()
        weight = kernel.reshape([1, 1] + shape).expand([channels, 1] + shape)
        conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
        return conv(x, weight, groups=channels)
    # More than three spatial axes: sliding windows along the axis (memory grows with the window size).
    windows = x.unfold(axis, kernel.numel(), 1)
    return (windows * kernel).sum(-1)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM per image and channel, shape (N, C).

    Local statistics use a separable Gaussian window over every spatial axis, evaluated only where the window
    fits ("valid"; no padding). With ``C1 = (k1 L)^2`` and ``C2 = (k2 L)^2`` (``L = data_range``) the map is
    ``(2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``
    (Wang et al. 2004, eq. 13), averaged over positions.

    Args:
        x: first batch, (N, C, *spatial).
        y: second batch, same shape.
        window_size: side of the Gaussian window.
        sigma: standard deviation of the Gaussian window.
        data_range: ``L``, the value range of the inputs.
        k1: SSIM's luminance constant.
        k2: SSIM's contrast constant.

    Returns:
        (N, C) tensor of mean SSIM values.

    Raises:
        ValueError: Shape mismatch, fewer than one spatial axis, or a spatial size below ``window_size``.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim: x shape {tuple(x.shape)} and y shape {tuple(y.shape)} must be equal.")
    if x.dim() < 3:
        raise ValueError(f"ssim: inputs must be (N, C, *spatial), got shape {tuple(x.shape)}.")
    if window_size < 1 or sigma <= 0:
        raise ValueError(f"ssim: window_size={window_size!r} must be >= 1 and sigma={sigma!r} > 0.")
    if min(x.shape[2:]) < window_size:
        raise ValueError(
            f"ssim: spatial size {tuple(x.shape[2:])} is smaller than window_size={window_size}; "
            "use a smaller window (e.g. SSIMLoss(window_size=7)) or larger inputs."
        )
    dtype = x.dtype if torch.is_floating_point(x) else torch.get_default_dtype()
    x = x.to(dtype)
    y = y.to(dtype)
    kernel = gaussian_window(window_size, sigma, dtype=dtype, device=x.device)
    n, c = x.shape[:2]
    # Filter the five moment maps in one pass: stack along the channel axis.
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    for axis in range(2, x.dim()):
        stacked = _filter_axis(stacked, kernel, axis)
    mu_x, mu_y, xx, yy, xy = stacked.split(c, dim=1)
    sigma_x = xx - mu_x**2
    sigma_y = yy - mu_y**2
    sigma_xy = xy - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    )
    return ssim_map.reshape(n, c, -1).mean(-1)


class SSIMLoss(nn.Module):
    """``1 - SSIM`` per image and channel, for (N, C, H, W) and (N, C, D, H, W) inputs (any spatial rank).

    Args:
        window_size: Side of the Gaussian window (11 in Wang et al.); every spatial size must be at least
            this.
        sigma: Standard deviation of the Gaussian window (1.5 in Wang et al.).
        data_range: Dynamic range ``L`` of the inputs (1 for images in [0, 1]).
        k1: Stabiliser of the luminance term, ``C1 = (k1 L)^2``.
        k2: Stabiliser of the contrast-structure term, ``C2 = (k2 L)^2``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the (N, C) losses).
    """

    def __init__(
        self,
        window_size: int = 11,
        sigma: float = 1.5,
        data_range: float = 1.0,
        k1: float = 0.01,
        k2: float = 0.03,
        reduction: str = "mean",
    ):
        super().__init__()
        self.window_size = window_size
        self.sigma = sigma
        self.data_range = data_range
        self.k1 = k1
        self.k2 = k2
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum", "none"), type(self).__name__)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss between a reconstruction ``y_pred`` and the reference ``y_true``."""
        loss = 1.0 - ssim(y_pred, y_true, self.window_size, self.sigma, self.data_range, self.k1, self.k2)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
