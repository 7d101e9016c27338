"""Flemme-style checkpoints: ``ckp_last.pth``, ``ckp_best_loss.pth``, ``ckp_best_score.pth``.

Each file is ``{"model_config": model.get_config(), "state_dict": model.state_dict(), "epoch": int,
"loss": float | None, "score": float | None, "monitor": str | None}``: plain data and tensors only, so it loads with
``torch.load(path, weights_only=True)`` (nothing is unpickled). ``model_config`` is what ``config.json`` of a saved
folder holds (the class name under ``_model_class`` plus the constructor arguments), so the file alone rebuilds the
model: a Flemme test config whose ``model_path`` names one of these files runs unchanged.
"""

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

__all__ = ["CHECKPOINT_NAMES", "save_checkpoint", "load_checkpoint", "model_from_checkpoint"]

#: The three files a Flemme run keeps in its ``check_point_dir``.
CHECKPOINT_NAMES = {"last": "ckp_last.pth", "loss": "ckp_best_loss.pth", "score": "ckp_best_score.pth"}


def save_checkpoint(model: torch.nn.Module, path: Union[str, Path], epoch: int, loss: Optional[float] = None,
                    score: Optional[float] = None, monitor: Optional[str] = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary name + ``os.replace``).

    Args:
        model: an smp_like model (it has ``get_config()``).
        path: the ``.pth`` file.
        epoch: the epoch just finished (1-based, as Flemme counts).
        loss: the loss the "best loss" file is chosen by.
        score: the monitored metric's value.
        monitor: the monitored metric's name (``val/dice``, ...).

    Returns:
        The path written.

    Raises:
        TypeError: for a model without ``get_config()`` (not an smp_like model).
    """
    if not hasattr(model, "get_config"):
        raise TypeError(f"save_checkpoint needs an smp_like model (with get_config()), got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model_config": model.get_config(), "state_dict": state, "epoch": int(epoch),
               "loss": None if loss is None else float(loss), "score": None if score is None else float(score),
               "monitor": monitor}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a Flemme-style checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: for a file that is not an smp_like ``ckp_*.pth`` (e.g. one written by Flemme itself).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle with objects, or not a torch file
        raise ValueError(f"{path} is not an smp_like checkpoint readable with weights_only=True ({err}); Flemme's "
                         "own .pth files hold Flemme modules and cannot be loaded here") from None
    if not (isinstance(data, dict) and isinstance(data.get("model_config"), dict) and "state_dict" in data):
        raise ValueError(f"{path} is not an smp_like ckp_*.pth (expected model_config and state_dict); Flemme's own "
                         ".pth files hold Flemme modules and cannot be loaded here")
    return data


#: Sampling settings a test config may change without retraining (they shape no weight).
SAMPLING_SETTINGS = ("num_inference_steps", "eta", "timestep_spacing", "guidance_scale", "num_ensemble",
                     "clip_sample", "clip_range")


def model_from_checkpoint(path: Union[str, Path], arch: Optional[str] = None,
                          overrides: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """Rebuild the model of a Flemme-style checkpoint and load its weights (eval mode).

    Args:
        path: the ``.pth`` file.
        arch: build this class instead of the saved one when both share checkpoints (a DDPM file sampled as a
            DDIM, an SDPM as an SDIM: Flemme's "change DDPM to DDIM in the test config"); any other class is
            ignored and the saved class is built.
        overrides: constructor arguments to change; only the sampling settings (:data:`SAMPLING_SETTINGS`) are
            taken, and only those the class accepts.

    Raises:
        FileNotFoundError, ValueError: see :func:`load_checkpoint`.
    """
    from smp_like.base.hub import CLASS_KEY
    from smp_like.base.registry import get_model_class

    data = load_checkpoint(path)
    config = dict(data["model_config"])
    saved = get_model_class(config.pop(CLASS_KEY))
    cls = saved
    if arch is not None:
        try:
            wanted = get_model_class(arch)
        except Exception:  # noqa: BLE001 - not a registered name: keep the saved class
            wanted = saved
        family = getattr(wanted, "_checkpoint_family", lambda: None)()
        saved_family = getattr(saved, "_checkpoint_family", lambda: None)()
        if wanted is not saved and family is not None and family is saved_family:
            cls = wanted
    config["encoder_weights"] = None  # the weights are in the file
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for key, value in (overrides or {}).items():
        if key in SAMPLING_SETTINGS and (key in accepted or takes_any):
            config[key] = value
    after_build = {name: config.pop(name) for name in getattr(cls, "_settings_after_build", ())
                   if name in config and name not in accepted}
    model = cls(**config)
    for name, value in after_build.items():  # settings saved beside the arguments (e.g. input_padding)
        getattr(model, f"set_{name}")(value)
    model.load_state_dict(data["state_dict"])
    return model.eval()
