"""The Lightning hooks every training task shares: data epochs, optimisation, and an exact resume of random draws.

:class:`SegmentationTask`, :class:`GenerativeTask` and :class:`ClassificationTask` list :class:`SharedTaskHooks`
before ``pl.LightningModule`` in their bases, so these methods override Lightning's defaults. A task provides
``model``, ``optimizer_cfg``, ``scheduler_cfg`` and ``monitor``.
"""

from typing import Any, Dict

import torch

from smp_like.training.builders import configure_optimization

__all__ = ["SharedTaskHooks"]


class SharedTaskHooks:
    """Mixin of the hooks that are the same for every task of the pipeline."""

    def on_train_epoch_start(self) -> None:
        # The data module reshuffles and re-augments per epoch (and a resumed run continues the same sequence).
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def configure_optimizers(self) -> Any:
        return configure_optimization(self.model, self.optimizer_cfg, self.scheduler_cfg, self.trainer, self.monitor)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # Global torch RNG (dropout, drop-path): restored on resume so a resumed run draws what an unbroken one would.
        checkpoint["smp_like_rng"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("smp_like_rng")
        if state is not None:
            torch.set_rng_state(state["torch"])
