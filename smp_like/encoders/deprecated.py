"""SMP's deprecated ``timm-*`` encoder names, served by their ``tu-`` equivalents.

Older segmentation_models_pytorch releases had native encoders named ``timm-regnet*``, ``timm-res2*``,
``timm-resnest*``, ``timm-mobilenetv3*`` and ``timm-gernet*``; SMP 0.6 maps those names to ``tu-`` timm
encoders and warns. So does smp_like:

* name: ``timm-<rest>`` becomes ``tu-<rest>``, except ``timm-mobilenetv3*``, which were built on timm's
  TensorFlow-ported models and become ``tu-tf_mobilenetv3*`` (a ``DeprecationWarning`` names the replacement);
* keys: the old native encoders were the timm model itself (``encoder.stem.conv.weight``), where a ``tu-``
  encoder holds it as ``model`` (``encoder.model.stem.conv.weight``) and flattens ByobNet stages (``stages.0``
  -> ``stages_0``). :func:`remap_legacy_timm_keys`, a load-state-dict pre-hook that ``TimmUniversalEncoder``
  installs for these families, renames such keys while loading, so old checkpoints still load. The old
  ``timm-mobilenetv3*`` encoders already stored ``model.`` keys and need no renaming.
"""

import re
import warnings
from typing import Any, Dict

import torch.nn as nn

DEPRECATED_PREFIX = "timm-"
TIMM_PREFIX = "tu-"
# timm model-name prefixes of the families SMP used to ship natively under ``timm-<timm name>``.
DEPRECATED_FAMILIES = ("regnet", "res2", "resnest", "mobilenetv3", "gernet")
# Old native timm-mobilenetv3 encoders were built on timm's TF-ported variants.
_TF_PORTED_FAMILIES = ("mobilenetv3",)

_BYOB_STAGE = re.compile(r"^model\.stages\.(\d+)\.")


def is_deprecated_name(name: object) -> bool:
    """Whether ``name`` is one of SMP's deprecated ``timm-<family>...`` encoder names."""
    return (
        isinstance(name, str)
        and name.startswith(DEPRECATED_PREFIX)
        and name[len(DEPRECATED_PREFIX) :].startswith(DEPRECATED_FAMILIES)
    )


def timm_equivalent(name: str) -> str:
    """The ``tu-`` name that replaces the deprecated ``name`` (e.g. ``timm-gernet_s`` -> ``tu-gernet_s``).

    Raises:
        ValueError: if ``name`` is not a deprecated name.
    """
    if not is_deprecated_name(name):
        raise ValueError(
            f"{name!r} is not a deprecated encoder name (those are '{DEPRECATED_PREFIX}<family>...' with "
            f"family in {DEPRECATED_FAMILIES})"
        )
    rest = name[len(DEPRECATED_PREFIX) :]
    if rest.startswith(_TF_PORTED_FAMILIES):
        rest = "tf_" + rest
    return TIMM_PREFIX + rest


def resolve_encoder_name(name: Any, registered: Dict[str, Any]) -> Any:
    """``name``, or for a deprecated unregistered name its ``tu-`` equivalent (with a ``DeprecationWarning``).

    A name registered explicitly (``encoders[name] = ...``) wins over the deprecation mapping.
    """
    if not is_deprecated_name(name) or name in registered:
        return name
    replacement = timm_equivalent(name)
    warnings.warn(
        f"encoder name {name!r} is deprecated (as in segmentation_models_pytorch); use {replacement!r} "
        "instead (the same timm model; checkpoints saved under the old name still load)",
        DeprecationWarning,
        stacklevel=3,
    )
    return replacement


def has_legacy_keys(timm_name: str) -> bool:
    """Whether checkpoints of timm model ``timm_name`` may come from an old native SMP encoder.

    As SMP 0.6 decides: the timm name starts with a deprecated family (``tf_mobilenetv3*`` checkpoints already
    had ``model.`` keys).
    """
    return timm_name.partition(".")[0].startswith(DEPRECATED_FAMILIES)


def legacy_key_to_current(key: str) -> str:
    """Rename one key of an old native encoder (relative to the encoder) to the ``tu-`` encoder's key."""
    if not key.startswith("model."):
        key = "model." + key
    return _BYOB_STAGE.sub(r"model.stages_\1.", key)


def remap_legacy_timm_keys(module: nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: rename old native-encoder keys under ``prefix`` to the ``tu-`` layout.

    Keys already in the current layout are left alone, so current checkpoints load unchanged.
    """
    current = set(module.state_dict(prefix=prefix, keep_vars=True))
    for key in [k for k in state_dict if k.startswith(prefix) and k not in current]:
        renamed = prefix + legacy_key_to_current(key[len(prefix) :])
        if renamed != key and renamed in current and renamed not in state_dict:
            state_dict[renamed] = state_dict.pop(key)
