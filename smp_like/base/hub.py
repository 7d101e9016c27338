"""Saving, loading and sharing models: ``config.json`` + ``model.safetensors`` + a model card ``README.md``.

The folder layout is SMP's (``_model_class`` plus the constructor arguments in ``config.json``), so folders and
Hub repositories written by SMP load here and the other way round. Loading rebuilds the model with
``encoder_weights=None``: the saved weights already hold the encoder, so nothing is downloaded again.
"""

import functools
import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union

import torch

from smp_like.base.files import atomic_output
from smp_like.base.registry import get_model_class, register_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
CLASS_KEY = "_model_class"


def _jsonable(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        # A numpy scalar (np.float32(0.2), np.int64(3)) means its Python value; without numpy imported here.
        return _jsonable(name, value.item())
    if isinstance(value, (list, tuple)):
        return [_jsonable(name, v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(f"{name}.{k}", v) for k, v in value.items()}
    raise TypeError(
        f"constructor argument `{name}`={value!r} cannot be saved in config.json; use a string name "
        "(e.g. activation='sigmoid') instead of an object to make the model saveable"
    )


def _model_card(class_name: str, config: Dict[str, Any], metrics: Any, dataset: Optional[str]) -> str:
    params = json.dumps(config, indent=4)
    if not metrics:
        metrics_text = "No metrics were recorded."
    elif isinstance(metrics, dict):
        metrics_text = "\n".join(f"- {k}: {v}" for k, v in metrics.items())
    else:  # SMP's model_card_kwargs pass a list of metric dicts
        metrics_text = "```json\n" + json.dumps(metrics, indent=4, default=str) + "\n```"
    return f"""---
library_name: smp_like
tags:
- model_hub_mixin
- pytorch_model_hub_mixin
- segmentation-models-pytorch
- semantic-segmentation
- pytorch
languages:
- python
---
# {class_name} Model Card

## Load trained model
```python
import smp_like

model = smp_like.from_pretrained("<save-directory-or-this-repo>")
```
The same folder also loads with `segmentation_models_pytorch.from_pretrained` for architectures SMP has.

## Model init parameters
```python
model_init_params = {params}
```

## Model metrics
{metrics_text}

## Dataset
Dataset name: {dataset or "not recorded"}
"""


def _atomic_write(path: Path, write: Any) -> None:
    # Write next to the target and rename, so a failure never leaves a half-written file behind.
    with atomic_output(path) as tmp:
        write(str(tmp))


def _resolve_file(
    source: Union[str, Path],
    filename: str,
    revision: Optional[str],
    cache_dir: Optional[str],
    force_download: bool,
    token: Optional[Union[str, bool]],
    local_files_only: bool,
) -> Path:
    folder = Path(source)
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is {folder} a folder written by save_pretrained?")
        return path
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(
            str(source),
            filename,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
    )


def load_config(
    source: Union[str, Path],
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    force_download: bool = False,
    token: Optional[Union[str, bool]] = None,
    local_files_only: bool = False,
) -> Dict[str, Any]:
    """Read ``config.json`` from a folder or a Hub repository."""
    path = _resolve_file(source, CONFIG_NAME, revision, cache_dir, force_download, token, local_files_only)
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    if not isinstance(config, dict) or CLASS_KEY not in config:
        raise ValueError(f"{path} is not a smp_like / SMP model config: it has no {CLASS_KEY!r} entry")
    return config


def model_class_for(name: str) -> type:
    """The registered model class called ``name`` (case-insensitive)."""
    return get_model_class(name)


def _recorded_arguments(signature: inspect.Signature, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[
    Dict[str, Any], bool
]:
    """The named constructor arguments (defaults applied, ``**kwargs`` merged in) and whether the signature
    forwards arguments it does not name (``*args`` / ``**kwargs``) to a parent constructor."""
    bound = signature.bind(None, *args, **kwargs)
    bound.apply_defaults()
    config: Dict[str, Any] = {}
    forwards = False
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            config.update(value)
            forwards = True
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            forwards = True
        else:
            config[name] = value
    return config, forwards


def _recording_init(cls: type, init: Callable[..., None]) -> Callable[..., None]:
    """Wrap ``cls.__init__`` so that the instance records the arguments it was built with (``_model_config``).

    Every level of a class chain records: a constructor that forwards ``*args`` / ``**kwargs`` to its parent
    starts from the parent's record (minus the parent arguments it computes itself, ``_derived_arguments``) and
    overrides it with its own named arguments. The outermost constructor then runs ``_post_init``.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def init_and_record(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        own, forwards = _recorded_arguments(signature, args, kwargs)
        if forwards:
            inner = self.__dict__.get("_model_config", {})
            derived = set(cls.__dict__.get("_derived_arguments", ()))
            own = {**{k: v for k, v in inner.items() if k not in derived}, **own}
        self._model_config = own
        if type(self).__init__ is init_and_record:  # the outermost constructor of this instance
            self._post_init()

    return init_and_record


def load_matching_state_dict(model: Any, state_dict: Dict[str, Any], strict: bool = True) -> None:
    """Load ``state_dict`` into ``model``; with ``strict=False`` skip (and name) what does not fit.

    ``strict=True`` is ``model.load_state_dict(state_dict)``: any missing, unexpected or mis-shaped key raises.
    ``strict=False`` loads every tensor whose key and shape match, leaves the rest of the model as initialised
    and emits one ``UserWarning`` listing the tensors skipped for their shape (and any missing or unexpected
    keys), as SMP's ``from_pretrained`` does.

    Raises:
        RuntimeError: with ``strict=True``, when the weights do not match the model.
    """
    if strict:
        model.load_state_dict(state_dict, strict=True)
        return
    own = model.state_dict()
    mismatched = {
        key: (tuple(value.shape), tuple(own[key].shape))
        for key, value in state_dict.items()
        if key in own and tuple(value.shape) != tuple(own[key].shape)
    }
    fitting = {key: value for key, value in state_dict.items() if key not in mismatched}
    result = model.load_state_dict(fitting, strict=False)
    if not (mismatched or result.missing_keys or result.unexpected_keys):
        return
    lines = [f"{type(model).__name__}.from_pretrained(strict=False) did not load every saved tensor; train the model "
             "before use:"]
    lines += [f" - {key}: shape {saved} (weights) -> {current} (model), kept freshly initialised"
              for key, (saved, current) in mismatched.items()]
    lines += [f" - {key}: not in the weights, kept freshly initialised"
              for key in result.missing_keys if key not in mismatched]
    lines += [f" - {key}: in the weights but not in the model, ignored" for key in result.unexpected_keys]
    warnings.warn("\n".join(lines), UserWarning, stacklevel=3)


def _card_arguments(
    model: Any, config: Optional[Dict[str, Any]], card_kwargs: Optional[Dict[str, Any]], metrics: Any, dataset: Any
) -> Any:
    """Check SMP's ``save_pretrained(config=..., model_card_kwargs=...)`` and return the card's metrics/dataset."""
    if config is not None:
        own = {k: _jsonable(k, v) for k, v in model._model_config.items()}
        given = {k: _jsonable(k, v) for k, v in dict(config).items() if k != CLASS_KEY}
        differing = sorted(k for k, v in given.items() if own.get(k, v) != v)
        unknown = sorted(k for k in given if k not in own)
        if differing or unknown:
            raise ValueError(
                f"save_pretrained: config.json holds the model's own constructor arguments, so `config` may only "
                f"repeat them; it differs at {differing} and adds {unknown}. Build the model with those arguments "
                "instead (from_pretrained could not rebuild a model from a different config)."
            )
    if card_kwargs:
        extra = sorted(set(card_kwargs) - {"metrics", "dataset"})
        if extra:
            raise ValueError(f"`model_card_kwargs` takes the keys 'metrics' and 'dataset', got {extra}")
        metrics = card_kwargs.get("metrics", metrics)
        dataset = card_kwargs.get("dataset", dataset)
    return metrics, dataset


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for every saveable class, and the one place where
    such classes record their constructor arguments and register by name.

    A subclass (built-in or the user's) needs no code for either: defining it registers it
    (:func:`~smp_like.base.registry.register_model`), and its ``__init__`` is wrapped to record the arguments it
    is called with. Hooks for classes whose saved config is not just their arguments:

    * ``_derived_arguments`` (class attribute): parent-constructor arguments this class computes itself, left out
      of its config (e.g. SDPM passes its image channels as DDPM's ``condition_channels``);
    * :meth:`_config_overrides`: values read from the built model when saving (e.g. AE's resolved
      ``out_channels``, LDPM's current ``latent_scale``);
    * :meth:`_post_init`: runs once, after the outermost constructor.

    A class with ``_abstract_model = True`` in its own body (SegmentationModel) is not registered; calling
    ``from_pretrained`` on it (or on HubMixin) loads whatever class the folder holds.
    """

    _model_config: Dict[str, Any]
    _abstract_model: bool = True
    # Parent-constructor arguments a subclass sets itself (see the class docstring).
    _derived_arguments: Tuple[str, ...] = ()
    # A class with ``_shares_checkpoints = True`` in its own body roots a family whose members load each other's
    # folders (DDPM and DDIM: the same weights, another default sampler).
    _shares_checkpoints: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("_abstract_model", False) and not cls.__name__.startswith("_"):
            register_model(cls)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_init(cls, cls.__dict__["__init__"])  # type: ignore[method-assign]

    def _post_init(self) -> None:
        """Runs once after the outermost constructor (nothing by default)."""

    def _config_overrides(self) -> Dict[str, Any]:
        """Config entries read from the built model at save time, replacing the recorded arguments."""
        return {}

    @classmethod
    def _checkpoint_family(cls) -> Optional[type]:
        for klass in cls.__mro__:
            if klass.__dict__.get("_shares_checkpoints", False):
                return klass
        return None
    # smp_like-only arguments left out of config.json while at their default, so SMP can load the folder too.
    _extension_defaults: Dict[str, Any] = {
        "spatial_dims": 2, "input_padding": "constant", "time_embedding_dim": None, "time_injection": "gate_bias"
    }

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments plus ``_model_class``, as written to ``config.json``."""
        recorded = {**self._model_config, **self._config_overrides()}
        config = {
            name: _jsonable(name, value)
            for name, value in recorded.items()
            if not (name in self._extension_defaults and value == self._extension_defaults[name])
        }
        return {CLASS_KEY: type(self).__name__, **dict(sorted(config.items()))}

    def save_pretrained(
        self,
        save_directory: Union[str, Path],
        *,
        metrics: Optional[Dict[str, Any]] = None,
        dataset: Optional[str] = None,
        push_to_hub: bool = False,
        repo_id: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        model_card_kwargs: Optional[Dict[str, Any]] = None,
        **push_kwargs: Any,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card to ``save_directory``.

        Args:
            save_directory: folder to create or update.
            metrics: optional metrics for the model card.
            dataset: optional dataset name for the model card.
            push_to_hub: also upload the folder (to ``repo_id``, default: the folder name).
            config: SMP's argument. ``config.json`` always holds the model's own constructor arguments (what
                ``from_pretrained`` rebuilds from); a ``config`` that contradicts them is refused rather than
                written (SMP writes it verbatim, and the folder then no longer loads).
            model_card_kwargs: SMP's argument: ``{"metrics": ..., "dataset": ...}`` for the model card.
            **push_kwargs: passed to :meth:`push_to_hub`.

        Returns:
            The folder path.

        Raises:
            TypeError: if a constructor argument cannot be written to JSON (e.g. a callable activation).
            ValueError: for a ``config`` that differs from the model's arguments, or unknown
                ``model_card_kwargs`` keys.
        """
        from safetensors.torch import save_model

        metrics, dataset = _card_arguments(self, config, model_card_kwargs, metrics, dataset)
        config = self.get_config()  # fails before anything is written if the config is not serialisable
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_model(self, tmp, metadata={"format": "pt"}))
        _atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
        card = _model_card(type(self).__name__, {k: v for k, v in config.items() if k != CLASS_KEY}, metrics, dataset)
        _atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(card, encoding="utf-8"))
        if push_to_hub:
            self.push_to_hub(repo_id or folder.name, metrics=metrics, dataset=dataset, **push_kwargs)
        return folder

    @property
    @torch.jit.unused  # Python-side bookkeeping: TorchScript cannot type the mixed-value dict
    def config(self) -> Dict[str, Any]:
        """SMP's ``model.config``: the constructor arguments the model was built with (a copy)."""
        return dict(self._model_config)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        """SMP's model card, as a ``huggingface_hub.ModelCard`` (keyword arguments ``metrics``, ``dataset``).

        Raises:
            TypeError: for positional arguments or unknown keywords.
        """
        from huggingface_hub import ModelCard

        if args or set(kwargs) - {"metrics", "dataset"}:
            raise TypeError(
                f"generate_model_card takes the keywords 'metrics' and 'dataset', got {args!r} {sorted(kwargs)}"
            )
        config = {k: v for k, v in self.get_config().items() if k != CLASS_KEY}
        return ModelCard(_model_card(type(self).__name__, config, kwargs.get("metrics"), kwargs.get("dataset")))

    @classmethod
    def from_pretrained(
        cls: Type[Any],
        pretrained_model_name_or_path: Union[str, Path],
        *,
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        force_download: bool = False,
        token: Optional[Union[str, bool]] = None,
        local_files_only: bool = False,
        strict: bool = True,
        **model_kwargs: Any,
    ) -> Any:
        """Load a model saved with ``save_pretrained`` (by smp_like or SMP) from a folder or a Hub repository.

        Args:
            pretrained_model_name_or_path: a local folder or a Hub ``repo_id``.
            revision, cache_dir, force_download, token, local_files_only: as for ``hf_hub_download``.
            strict: require the weights to match the model exactly. With False (SMP's way to fine-tune a saved
                model to, e.g., another ``classes``), every tensor whose shape fits is loaded, the others stay
                freshly initialised, and a ``UserWarning`` names the keys skipped.
            **model_kwargs: override saved constructor arguments (e.g. ``classes`` with ``strict=False``).

        Returns:
            The model, in eval mode, with the saved weights.

        Raises:
            ValueError: if the saved class does not match the class ``from_pretrained`` was called on.
        """
        hub = dict(
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        config = load_config(pretrained_model_name_or_path, **hub)
        saved_class = get_model_class(config.pop(CLASS_KEY))
        if cls is not saved_class and not cls.__dict__.get("_abstract_model", False):
            family = cls._checkpoint_family()
            if family is not None and family is saved_class._checkpoint_family():
                saved_class = cls  # the same weights under another class (e.g. a DDPM checkpoint sampled by DDIM)
            elif not issubclass(saved_class, cls):
                raise ValueError(
                    f"{pretrained_model_name_or_path} holds a {saved_class.__name__}, not a {cls.__name__}; "
                    f"use {saved_class.__name__}.from_pretrained or smp_like.from_pretrained"
                )
        config.update(model_kwargs)
        # The saved weights include the encoder: never fetch pretrained encoder weights again.
        config["encoder_weights"] = None
        accepted = inspect.signature(saved_class.__init__).parameters
        after_build = {
            name: config.pop(name)
            for name in getattr(saved_class, "_settings_after_build", ())
            if name in config and name not in accepted
        }
        model = saved_class(**config)
        for name, value in after_build.items():
            getattr(model, f"set_{name}")(value)
        from safetensors.torch import load_file

        weights = _resolve_file(pretrained_model_name_or_path, WEIGHTS_NAME, **hub)
        load_matching_state_dict(model, load_file(str(weights), device="cpu"), strict=strict)
        model.eval()
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Push model using smp_like",
        private: Optional[bool] = None,
        token: Optional[str] = None,
        revision: Optional[str] = None,
        create_pr: bool = False,
        metrics: Optional[Dict[str, Any]] = None,
        dataset: Optional[str] = None,
    ) -> Any:
        """Create (if needed) the Hub repository ``repo_id`` and upload the saved model to it.

        Returns:
            huggingface_hub's ``CommitInfo`` for the upload.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, metrics=metrics, dataset=dataset)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )


