"""Kullback-Leibler divergence of a diagonal Gaussian from the standard normal (VAE regulariser)."""

import torch
from torch import nn

from ._functional import check_choice

__all__ = ["KLDivergenceLoss", "kl_divergence_to_standard_normal"]


def kl_divergence_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per sample, summed over all non-batch dimensions.

    Closed form (Kingma & Welling 2014, appendix B): ``0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)``.

    Args:
        mu: means, (N, ...).
        logvar: log-variances, same shape.

    Returns:
        (N,) tensor.

    Raises:
        ValueError: If ``mu`` and ``logvar`` differ in shape.
    """
    if mu.shape != logvar.shape:
        raise ValueError(
            f"kl_divergence_to_standard_normal: mu shape {tuple(mu.shape)} and logvar shape "
            f"{tuple(logvar.shape)} must be equal."
        )
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    if kl.dim() == 0:
        return kl.reshape(1)
    return kl.reshape(kl.shape[0], -1).sum(1)


class KLDivergenceLoss(nn.Module):
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, I)``, summed over latent dimensions.

    Args:
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (the (N,) values).

    Shape:
        - mu, logvar: (N, *latent) with any number of latent dimensions, e.g. (N, C, D, H, W).
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum", "none"), type(self).__name__)

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Compute the divergence from the posterior mean ``mu`` and log-variance ``logvar``."""
        kl = kl_divergence_to_standard_normal(mu, logvar)
        if self.reduction == "mean":
            return kl.mean()
        if self.reduction == "sum":
            return kl.sum()
        return kl
