"""Flemme's configuration dialect: detection, translation to the native config, Flemme-style checkpoints.

``smp-like train --config flemme.yaml`` and ``smp-like test --config flemme_test.yaml`` read Flemme's files
unchanged: :func:`is_flemme_config` recognises them, :func:`translate` turns them into the native config (then
validated by the strict native schema), and one :class:`FlemmeConfigWarning` at start lists every key that has no
effect here and every unknown key. See docs/migrating_from_flemme.md.
"""

from smp_like.training.flemme.detect import is_flemme_config
from smp_like.training.flemme.translate import FlemmeConfigError, FlemmeConfigWarning, TranslationReport, translate

__all__ = ["is_flemme_config", "translate", "TranslationReport", "FlemmeConfigWarning", "FlemmeConfigError"]
