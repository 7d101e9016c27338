"""Moved to :mod:`smp_like.base.deep_supervision` (kept so old imports keep working)."""

from smp_like.base.deep_supervision import DeepSupervisionMixin

__all__ = ["DeepSupervisionMixin"]
