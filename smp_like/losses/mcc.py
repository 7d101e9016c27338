"""Matthews correlation coefficient loss (Abhishek & Hamarneh 2021)."""

import torch
from torch.nn.modules.loss import _Loss

from ._functional import check_loss_shapes

__all__ = ["MCCLoss"]


class MCCLoss(_Loss):
    """``1 - MCC`` with soft confusion counts, for binary segmentation.

    ``MCC = (TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN))`` (Matthews 1975) where the counts
    are
    sums over the whole batch of products of probabilities and targets, each shifted by ``eps`` so that a
    constant prediction stays finite. ``y_pred`` are probabilities (apply a sigmoid first), as in SMP.

    Args:
        eps: Added to every soft count.

    Shape:
        - y_pred: (N, 1, *spatial) probabilities; y_true: same shape (or without the channel axis), in {0, 1}.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Compute the loss (scalar).

        Raises:
            ValueError: If the shapes differ (beyond a singleton channel axis).
        """
        check_loss_shapes("binary", y_pred, y_true, type(self).__name__)
        y_true = y_true.reshape(-1).to(y_pred.dtype)
        y_pred = y_pred.reshape(-1)
        tp = torch.sum(y_true * y_pred) + self.eps
        tn = torch.sum((1 - y_true) * (1 - y_pred)) + self.eps
        fp = torch.sum((1 - y_true) * y_pred) + self.eps
        fn = torch.sum(y_true * (1 - y_pred)) + self.eps
        numerator = tp * tn - fp * fn
        denominator = torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return 1.0 - numerator / denominator
