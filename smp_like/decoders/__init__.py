"""Decoders and the architectures built on them.

Each architecture lives in ``decoders/<arch>/`` (``decoder.py`` + ``model.py``). Importing this package imports
every ``model.py``, which registers its class for ``create_model`` / ``from_pretrained``.
"""

import importlib
import pkgutil

from smp_like.decoders.unet.model import Unet

__all__ = ["Unet"]

for _info in pkgutil.iter_modules(__path__):
    if _info.ispkg:
        importlib.import_module(f"{__name__}.{_info.name}.model")
