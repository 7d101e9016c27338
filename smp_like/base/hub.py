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

from smp_like.base.checks import check_argument_values
from smp_like.base.files import _fsync, atomic_output, file_sha256
from smp_like.base.registry import get_model_class, register_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# sha256 and size of the weights, written last into each saved folder and checked on load.
MANIFEST_NAME = "manifest.json"
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


class HubDownloadError(OSError):
    """A file could not be fetched from the Hugging Face Hub (unreachable endpoint, offline mode with an empty
    cache, unknown repository, revision or file). The message names the repository, revision, file and remedies;
    ``smp-like`` exits with :data:`DOWNLOAD_EXIT_CODE` for it."""


DOWNLOAD_EXIT_CODE = 3


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        if hasattr(constants, "is_offline_mode"):
            return bool(constants.is_offline_mode())
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - any huggingface_hub version exposes one of them
        return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _looks_like_path(source: str) -> bool:
    # A Hub repo id is "name" or "owner/name"; anything else that names a path cannot be one.
    return (
        source.startswith((".", "/", "~", "\\"))
        or source.count("/") > 1
        or "\\" in source
        or (len(source) > 1 and source[1] == ":")
    )


def hub_remedies(extra: str = "") -> str:
    """The remedies every Hub error message ends with (``extra`` first, e.g. ``encoder_weights=None``)."""
    return (
        "Remedies: " + (extra + "; " if extra else "")
        + "check the repository id and revision; on a machine without access, fetch the files where the Hub is "
        "reachable (the Hub cache under HF_HOME can be copied) and set HF_HUB_OFFLINE=1; point HF_ENDPOINT at a "
        "reachable mirror; or pass a local folder written by save_pretrained."
    )


def fetch_file(
    repo_id: str,
    filename: str,
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    force_download: bool = False,
    token: Optional[Union[str, bool]] = None,
    local_files_only: bool = False,
    what: str = "",
    remedies: str = "",
    optional: bool = False,
) -> Optional[Path]:
    """The one way smp_like fetches a file from the Hugging Face Hub (model folders, encoder weights, timm weights).

    It fails fast: one metadata request (no retries) tells whether the endpoint answers; when it refuses the
    connection or times out, the cached copy is used if there is one, else :class:`HubDownloadError` is raised at
    once (``hf_hub_download`` alone retries a refused connection 6 more times with waits of up to 8 s). When the
    endpoint answers, ``hf_hub_download`` does the download, so the Hub cache, ``HF_HOME``, ``HF_ENDPOINT`` and
    ``HF_HUB_OFFLINE`` behave as usual.

    Args:
        repo_id: the Hub repository.
        filename: the file in it.
        revision, cache_dir, force_download, token, local_files_only: as for ``hf_hub_download``.
        what: what the file is, for the message (e.g. "weights 'imagenet' of encoder 'resnet34'").
        remedies: a first remedy specific to the caller (e.g. "pass encoder_weights=None").
        optional: return None instead of raising when the repository has no such file.

    Returns:
        The local path of the file (None for a missing ``optional`` file).

    Raises:
        HubDownloadError: naming the repository, revision, file, endpoint, cause and remedies.
    """
    import huggingface_hub as hf

    from huggingface_hub.utils import HfHubHTTPError

    def failure(cause: str, err: Optional[BaseException] = None) -> HubDownloadError:
        about = f" ({what})" if what else ""
        return HubDownloadError(
            f"Could not fetch '{filename}'{about} from the Hugging Face Hub repository '{repo_id}' (revision "
            f"{revision or 'main'}, endpoint {_endpoint()}): {cause}\n" + hub_remedies(remedies)
        )

    def missing_entry(err: BaseException) -> bool:
        return type(err).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError")

    def cached() -> Optional[Path]:
        try:
            return Path(hf.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                           local_files_only=True))
        except Exception:
            return None

    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo_id)
    except Exception as err:
        raise HubDownloadError(
            f"'{repo_id}' is neither an existing local folder nor a valid Hub repository id ('name' or "
            f"'owner/name'): {err}"
        ) from err
    if local_files_only or _offline():
        path = cached()
        if path is None:
            mode = "local_files_only=True" if local_files_only else "offline mode (HF_HUB_OFFLINE) is on"
            if optional:
                return None
            raise failure(f"{mode} and the file is not in the Hub cache ({cache_dir or 'HF_HOME'}).")
        return path
    try:
        # One HEAD request, no retries: a refused connection is known at once.
        hf.get_hf_file_metadata(hf.hf_hub_url(repo_id, filename, revision=revision), token=token)
    except HfHubHTTPError as err:
        if optional and missing_entry(err):
            return None
        raise failure(f"{type(err).__name__}: {err}") from err
    except Exception as err:  # connection refused, DNS failure, timeout, offline mode: the endpoint did not answer
        path = cached()
        if path is not None:
            return path
        raise failure(f"the endpoint did not answer ({type(err).__name__}: {err}) and the file is not cached.") from err
    try:
        return Path(hf.hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                       force_download=force_download, token=token))
    except Exception as err:
        if optional and missing_entry(err):
            return None
        raise failure(f"{type(err).__name__}: {err}") from err


def _resolve_file(
    source: Union[str, Path],
    filename: str,
    revision: Optional[str],
    cache_dir: Optional[str],
    force_download: bool,
    token: Optional[Union[str, bool]],
    local_files_only: bool,
    optional: bool = False,
) -> Optional[Path]:
    folder = Path(source).expanduser()
    if folder.is_dir():
        _recover_interrupted_save(folder)
        path = folder / filename
        if not path.is_file():
            if optional:
                return None
            raise FileNotFoundError(f"{path} does not exist: is {folder} a folder written by save_pretrained?")
        return path
    if isinstance(source, Path) or _looks_like_path(str(source)) or folder.exists():
        if _recover_interrupted_save(folder):
            return _resolve_file(source, filename, revision, cache_dir, force_download, token, local_files_only,
                                 optional)
        raise FileNotFoundError(
            f"folder not found: {folder} (a local model folder written by save_pretrained was expected; "
            f"{'it is a file' if folder.exists() else 'nothing exists at that path'})"
        )
    if _recover_interrupted_save(folder):
        return _resolve_file(source, filename, revision, cache_dir, force_download, token, local_files_only, optional)
    return fetch_file(
        str(source), filename, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
        local_files_only=local_files_only, what=f"no local folder '{source}' exists, so it is read as a Hub repository",
        optional=optional,
    )


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid UTF-8 JSON ({type(err).__name__}: {err})") from err


def load_config(
    source: Union[str, Path],
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    force_download: bool = False,
    token: Optional[Union[str, bool]] = None,
    local_files_only: bool = False,
) -> Dict[str, Any]:
    """Read ``config.json`` from a folder or a Hub repository.

    Raises:
        FileNotFoundError: for a path-like ``source`` that is not a folder ("folder not found").
        HubDownloadError: when the Hub cannot serve the file (names repository, revision and remedies).
        ValueError: for a file that is not valid JSON or not a model config (naming the file).
    """
    path = _resolve_file(source, CONFIG_NAME, revision, cache_dir, force_download, token, local_files_only)
    assert path is not None
    config = _read_json(path)
    if not isinstance(config, dict) or CLASS_KEY not in config:
        raise ValueError(f"{path} is not a smp_like / SMP model config: it has no {CLASS_KEY!r} entry")
    return config


# ---------------------------------------------------------------------------------------------------------------
# config.json is untrusted input: which keys it may hold.

# Keys that would make a builder read or download files, or steer where it looks (timm's create_model honours
# all of these): refused anywhere in a loaded config, at any depth.
STEERING_KEYS = frozenset({
    "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "cache_dir",
    "pretrained", "file", "url", "hf_hub_id", "hf_hub_filename", "state_dict", "local_dir", "weights_path",
    "checkpoint", "model_path", "path",
})

# Extra keyword arguments a saved config may pass to a ``tu-`` (timm) encoder: regularisation and geometry only.
# Native encoders check their own keyword arguments (``get_encoder`` refuses unknown ones).
TIMM_ENCODER_KWARGS = frozenset({
    "output_stride", "drop_rate", "drop_path_rate", "drop_block_rate", "proj_drop_rate", "attn_drop_rate",
    "img_size", "patch_size", "window_size",
})

# Older SMP spellings that model constructors still accept through ``**kwargs`` (and translate), so configs saved by
# older SMP versions keep loading.
LEGACY_MODEL_KWARGS = frozenset({"decoder_use_batchnorm", "psp_use_batchnorm"})


def _init_chain(klass: type) -> Tuple[set, bool]:
    """Named constructor arguments of ``klass`` and of the parents its ``__init__`` forwards to, and whether the
    last constructor of the chain still forwards ``**kwargs`` elsewhere (to an architecture or an encoder)."""
    chain = [k for k in klass.__mro__ if "__init__" in k.__dict__ and k is not HubMixin and issubclass(k, HubMixin)]
    names: set = set()
    for level in chain:
        params = list(inspect.signature(level.__dict__["__init__"]).parameters.values())[1:]
        names.update(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        if not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
            return names, False
    return names, True


def _refuse_steering_keys(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key) in STEERING_KEYS:
                raise ValueError(
                    f"{where}: key `{key}` is refused: it would make the model builder read, download or look for "
                    "files. A saved model's config.json holds constructor arguments only; load weights with "
                    "from_pretrained (folder or Hub repository) instead."
                )
            _refuse_steering_keys(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _refuse_steering_keys(item, f"{where}[{i}]")


def check_loaded_config(model_class: type, config: Dict[str, Any], where: str = "config.json") -> None:
    """Refuse a loaded config that names anything but ``model_class``'s documented constructor arguments.

    Accepted keys: the named arguments of the class's constructor chain, settings restored after the build
    (``_settings_after_build``), and, where the constructor forwards ``**kwargs``: the arguments of the
    architecture it builds (DDPM's ``architecture``), or encoder keyword arguments: those of a native encoder
    (checked by ``get_encoder``) or, for ``tu-`` encoders, :data:`TIMM_ENCODER_KWARGS`. Keys in
    :data:`STEERING_KEYS` are refused at any depth. Nothing touches the file system.

    Raises:
        ValueError: naming the key, the file and the accepted keys.
    """
    _refuse_steering_keys(config, where)
    accepted, forwards = _init_chain(model_class)
    accepted |= set(getattr(model_class, "_settings_after_build", ()))
    open_ended = False
    if forwards:
        if "architecture" in accepted:
            defaults = {
                name: p.default for klass in reversed(model_class.__mro__) if "__init__" in klass.__dict__
                for name, p in inspect.signature(klass.__dict__["__init__"]).parameters.items()
            }
            architecture = config.get("architecture", defaults.get("architecture"))
            try:
                inner = get_model_class(str(architecture))
            except Exception as err:
                raise ValueError(f"{where}: unknown `architecture`={architecture!r}: {err}") from err
            inner_accepted, inner_forwards = _init_chain(inner)
            accepted |= inner_accepted | set(getattr(inner, "_settings_after_build", ()))
            forwards = inner_forwards
        if forwards:
            if str(config.get("encoder_name", "")).startswith("tu-"):
                accepted |= TIMM_ENCODER_KWARGS | LEGACY_MODEL_KWARGS
            else:
                open_ended = True  # get_encoder checks a native encoder's keyword arguments by name
    if open_ended:
        return
    unknown = sorted(k for k in config if k not in accepted)
    if unknown:
        raise ValueError(
            f"{where}: {model_class.__name__} takes no argument(s) {unknown}; accepted: {sorted(accepted)}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Sizes and checksums: checked from the weights file's header before anything is allocated.


def _weights_header(path: Path) -> Dict[str, Tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, without reading the tensors.

    Raises:
        ValueError: naming the file when it is not a readable safetensors file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as err:  # SafetensorError, OSError, a header that is not JSON, ...
        raise ValueError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from err


def _numel(shape: Tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count


def _build_on_meta(model_class: type, config: Dict[str, Any]) -> Any:
    # The meta device records shapes only: a model of any size costs no memory to build there.
    with torch.device("meta"):
        return model_class(**config)


def _check_sizes_before_allocating(
    model_class: type, config: Dict[str, Any], header: Dict[str, Tuple[int, ...]], weights: Path, strict: bool
) -> None:
    """Compare the model that ``config`` describes (built on the meta device) with the weights file's header.

    A strict load fails anyway when the two differ; it is refused here when the model would exceed the weights by
    more than 2**20 elements (below that, torch's own "size mismatch" error names every tensor after a cheap
    build). A non-strict load (SMP's way to change ``classes``) may build a model of up to 4 times the saved
    weights plus 2**26 elements.

    Raises:
        ValueError: naming the file, both sizes and the first differences, before any real allocation.
    """
    meta = _build_on_meta(model_class, config)
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    wanted, saved = sum(map(_numel, expected.values())), sum(map(_numel, header.values()))
    limit = saved + (1 << 20) if strict else 4 * saved + (1 << 26)
    if wanted > limit:
        differing = [f"{k}: {expected[k]} (config) vs {header[k]} (weights)"
                     for k in expected if k in header and expected[k] != header[k]]
        missing = sorted(set(expected) - set(header))
        details = "; ".join(differing[:3] + [f"not in the weights: {missing[:3]}"] * bool(missing))
        raise ValueError(
            f"the config describes a {model_class.__name__} with {wanted:,} weights, far more than the {saved:,} "
            f"in {weights} ({details}); refused before allocating. Was config.json changed, or mixed up with "
            "another model's weights?"
        )


def _verify_manifest(manifest_path: Optional[Path], files: Dict[str, Path]) -> None:
    """Check each file against the sha256 the manifest records (a folder without a manifest is not checked)."""
    if manifest_path is None:
        return
    manifest = _read_json(manifest_path)
    recorded = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    if not isinstance(recorded, dict):
        raise ValueError(f"{manifest_path} is not a smp_like manifest (no 'files' mapping)")
    for name, path in files.items():
        entry = recorded.get(name)
        if not isinstance(entry, dict) or "sha256" not in entry:
            continue
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            raise ValueError(
                f"{path} is corrupted or was replaced: its sha256 is {actual}, but {manifest_path} records "
                f"{entry['sha256']} for {name}. Save or download the model again."
            )


# ---------------------------------------------------------------------------------------------------------------
# Saving a folder as a whole: write a sibling folder, then swap it with the old one in one step.


def _save_step(name: str) -> None:
    """Marks each step of save_pretrained's write sequence (a hook for tests that kill a save at every step)."""


_fsync_dir = _fsync


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two folders (Linux ``renameat2(RENAME_EXCHANGE)``).

    Raises:
        OSError: where the system or file system cannot (the caller then uses two renames).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        raise OSError("renameat2 is Linux only")
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        raise OSError("this C library has no renameat2")
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _leftovers(folder: Path, kind: str) -> list:
    """Sibling folders ``.<name>.<kind>-<pid>-<token>`` that save_pretrained made for ``folder``."""
    found = []
    if folder.parent.is_dir():
        prefix = f".{folder.name}.{kind}-"
        for entry in folder.parent.iterdir():
            if entry.name.startswith(prefix):
                pid = entry.name[len(prefix):].split("-")[0]
                found.append((int(pid) if pid.isdigit() else -1, entry))
    return found


def _recover_interrupted_save(folder: Path) -> bool:
    """Undo what a killed save left behind; return whether ``folder`` was restored.

    A save killed between the two renames of the fallback swap (systems without ``renameat2``) leaves no
    ``folder`` but its previous version as ``.<name>.old-*``: it is renamed back. Temporary folders and files of
    saves whose process is gone are removed.
    """
    import shutil

    restored = False
    if not folder.exists():
        for pid, old in sorted(_leftovers(folder, "old"), key=lambda e: e[1].stat().st_mtime, reverse=True):
            if not _pid_alive(pid) and (old / CONFIG_NAME).is_file():
                try:
                    os.rename(old, folder)
                    restored = True
                    break
                except OSError:
                    pass
    for kind in ("saving", "old"):
        for pid, entry in _leftovers(folder, kind):
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
    if folder.is_dir():
        # Temporary files of single-file atomic writes (older versions wrote into the folder itself).
        for entry in folder.iterdir():
            stem = entry.name.split(".")[1] if entry.name.startswith(".") and entry.name.count(".") >= 2 else ""
            if stem in ("model", "config", "README", "manifest") and entry.is_file():
                entry.unlink()
    return restored


def _link_or_copy(src: str, dst: str) -> None:
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_folder_atomically(folder: Path, write: Callable[[Path], None], own_files: Tuple[str, ...]) -> None:
    """Make ``folder`` hold what ``write(tmp)`` writes into a fresh sibling folder, all at once.

    Other files already in ``folder`` (not in ``own_files``) are carried over as hard links (copies where links
    are impossible). The new folder is synced, then swapped with the old one in one ``renameat2`` exchange; where
    that is unavailable, two renames are used and a save killed between them is undone by the next load or save
    (:func:`_recover_interrupted_save`).
    """
    import secrets
    import shutil

    folder = folder.resolve() if folder.exists() else folder.absolute()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"save_pretrained: {folder} exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted_save(folder)
    cwd = Path.cwd().resolve()
    if folder.exists() and (cwd == folder or folder in cwd.parents):
        # Swapping the working directory away would leave this process in a deleted folder: write in place
        # (each file atomically, the manifest last; a save killed midway is then detected by the sha256 check).
        write(folder)
        _fsync_dir(folder)
        return
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = folder.parent / f".{folder.name}.saving-{token}"
    tmp.mkdir()
    try:
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name in own_files:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, tmp / entry.name, symlinks=True, copy_function=_link_or_copy)
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry), tmp / entry.name)
                else:
                    _link_or_copy(str(entry), str(tmp / entry.name))
        write(tmp)
        _fsync_dir(tmp)
        _save_step("swap")
        if not folder.exists():
            os.rename(tmp, folder)
        else:
            try:
                _exchange(tmp, folder)
            except OSError:
                old = folder.parent / f".{folder.name}.old-{token}"
                os.rename(folder, old)
                _save_step("between-renames")
                os.rename(tmp, folder)
                tmp = old
        _fsync_dir(folder.parent)
        _save_step("cleanup")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        try:
            given = dict(list(signature.bind(None, *args, **kwargs).arguments.items())[1:])
        except TypeError:  # a wrong call: the constructor itself says what is wrong
            given = {}
        for name in [n for n in given if signature.parameters[n].kind is inspect.Parameter.VAR_KEYWORD]:
            given.update(given.pop(name))
        # NaN, infinity and absurd integers are refused for every argument of every class, before building.
        check_argument_values(given, cls.__name__)
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

    def _check_config_matches_weights(self, config: Dict[str, Any]) -> None:
        """Refuse to save a model whose weights no longer match its recorded arguments (e.g. a head replaced after
        construction): from_pretrained rebuilds from the config and could not load those weights.

        Raises:
            ValueError: naming the tensors that differ and what to do.
        """
        kwargs = {k: v for k, v in config.items() if k != CLASS_KEY}
        if "encoder_weights" in inspect.signature(type(self).__init__).parameters or "encoder_name" in kwargs:
            kwargs["encoder_weights"] = None
        accepted = inspect.signature(type(self).__init__).parameters
        for name in getattr(type(self), "_settings_after_build", ()):
            if name in kwargs and name not in accepted:
                kwargs.pop(name)
        try:
            meta = _build_on_meta(type(self), kwargs)
        except Exception:  # a class that cannot be built on the meta device is not checked here
            return
        expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
        actual = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        if expected == actual:
            return
        differing = [f"{k}: {actual[k]} (model) vs {expected[k]} (rebuilt from config)"
                     for k in actual if k in expected and actual[k] != expected[k]]
        added = sorted(set(actual) - set(expected))
        removed = sorted(set(expected) - set(actual))
        details = "; ".join(differing[:4] + [f"not in a rebuilt model: {added[:4]}"] * bool(added)
                            + [f"missing from the model: {removed[:4]}"] * bool(removed))
        raise ValueError(
            f"save_pretrained: this {type(self).__name__}'s weights no longer match the constructor arguments it "
            f"records ({details}); was a module (e.g. the segmentation head) replaced after construction? "
            "from_pretrained rebuilds the model from config.json and could not load this folder. Build the model "
            "with the arguments that give the new layers (e.g. classes=...), copy the weights into it and save "
            "that, or save the state dict yourself with safetensors.torch.save_model."
        )

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
        self._check_config_matches_weights(config)
        folder = Path(save_directory)
        card = _model_card(type(self).__name__, {k: v for k, v in config.items() if k != CLASS_KEY}, metrics, dataset)

        def write(tmp: Path) -> None:
            _save_step("weights")
            _atomic_write(tmp / WEIGHTS_NAME, lambda out: save_model(self, out, metadata={"format": "pt"}))
            _save_step("config")
            _atomic_write(tmp / CONFIG_NAME, lambda out: Path(out).write_text(json.dumps(config, indent=2) + "\n"))
            _save_step("card")
            _atomic_write(tmp / CARD_NAME, lambda out: Path(out).write_text(card, encoding="utf-8"))
            _save_step("manifest")
            manifest = {"format": 1, "files": {
                name: {"sha256": file_sha256(tmp / name), "size": (tmp / name).stat().st_size}
                for name in (WEIGHTS_NAME,)
            }}
            _atomic_write(tmp / MANIFEST_NAME,
                          lambda out: Path(out).write_text(json.dumps(manifest, indent=2) + "\n"))

        _write_folder_atomically(folder, write, (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, MANIFEST_NAME))
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
        # config.json is untrusted: only documented arguments, no key that steers file access (no I/O here).
        check_loaded_config(saved_class, config, where=f"{pretrained_model_name_or_path}/{CONFIG_NAME}")
        # The saved weights include the encoder: never fetch pretrained encoder weights again.
        config["encoder_weights"] = None
        accepted = inspect.signature(saved_class.__init__).parameters
        after_build = {
            name: config.pop(name)
            for name in getattr(saved_class, "_settings_after_build", ())
            if name in config and name not in accepted
        }
        weights = _resolve_file(pretrained_model_name_or_path, WEIGHTS_NAME, **hub)
        assert weights is not None
        manifest = _resolve_file(pretrained_model_name_or_path, MANIFEST_NAME, **hub, optional=True)
        _verify_manifest(manifest, {WEIGHTS_NAME: weights})
        # Sizes are compared on the meta device before the real build: a config asking for 10**9 classes is
        # refused without allocating anything.
        _check_sizes_before_allocating(saved_class, config, _weights_header(weights), weights, strict)
        model = saved_class(**config)
        for name, value in after_build.items():
            getattr(model, f"set_{name}")(value)
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(weights), device="cpu")
        except Exception as err:  # SafetensorError, OSError: name the file
            raise ValueError(f"{weights} could not be read as safetensors ({type(err).__name__}: {err})") from err
        load_matching_state_dict(model, state_dict, strict=strict)
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


