"""Atomic file writes for the readers and writers of ``smp_like.io``: the one implementation lives in
:mod:`smp_like.base.files`, shared with ``save_pretrained``."""

from smp_like.base.files import atomic_output

__all__ = ["atomic_output"]
