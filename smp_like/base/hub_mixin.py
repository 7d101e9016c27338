"""SMP's module name for the Hub mixin (``segmentation_models_pytorch.base.hub_mixin``).

smp_like's implementation lives in :mod:`smp_like.base.hub`; this module only gives it SMP's import path.
"""

from smp_like.base.hub import HubMixin

SMPHubMixin = HubMixin  # SMP's class name

__all__ = ["HubMixin", "SMPHubMixin"]
