"""Where encoder weights live and how they are fetched and read.

A pretrained setting names one of: a Hugging Face Hub ``repo_id`` (+ pinned ``revision``, optional ``filename``
and ``sha256``), a ``url`` (cached in torch's hub directory, as ``torch.hub`` does) or a local ``file``. Hub
downloads go through :func:`smp_like.base.hub.fetch_file` (one fast-failing fetch path over ``hf_hub_download``), so
the Hub cache, ``HF_HOME``, ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE`` behave as users expect. Files are read with safetensors; legacy pickled checkpoints only with
``torch.load(weights_only=True)``.
"""

import os
from pathlib import Path
from typing import Dict, Mapping
from urllib.parse import urlparse

import torch

from smp_like.base.files import file_sha256
from smp_like.base.hub import HubDownloadError, fetch_file, hub_remedies

DEFAULT_FILENAME = "model.safetensors"


class WeightsDownloadError(HubDownloadError):
    """Pretrained weights could not be fetched (no network, Hub unreachable, offline mode with an empty cache)."""


def weights_remedies(encoder_name: str, tag: str) -> str:
    """The encoder-specific first remedy of a weights download error."""
    return (
        "pass `encoder_weights=None` to start from random weights, or fetch the weights ahead of time on a machine "
        f"with access (`smp-like download {encoder_name} --weights {tag}`), which fills the Hub cache that is then "
        "used offline"
    )


def _remedies(encoder_name: str, tag: str) -> str:
    return hub_remedies(weights_remedies(encoder_name, tag))


def fetch_weights_file(encoder_name: str, tag: str, settings: Mapping[str, object], progress: bool = True) -> Path:
    """Return a local path to the weights that ``settings`` describe, downloading them if needed.

    Raises:
        WeightsDownloadError: when the file cannot be fetched; the message names the source and the remedies.
        ValueError: when the settings name no source, or a downloaded file fails its sha256 check.
    """
    if "repo_id" in settings:
        repo_id, revision = str(settings["repo_id"]), settings.get("revision")
        filename = str(settings.get("filename", DEFAULT_FILENAME))
        try:
            fetched = fetch_file(
                repo_id, filename, revision=None if revision is None else str(revision),
                what=f"weights '{tag}' of encoder '{encoder_name}'", remedies=weights_remedies(encoder_name, tag),
            )
        except OSError as err:
            raise WeightsDownloadError(str(err)) from err
        assert fetched is not None
        path = fetched
    elif "url" in settings:
        url = str(settings["url"])
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if not path.is_file():
            if os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE"):
                raise WeightsDownloadError(
                    f"Weights '{tag}' for encoder '{encoder_name}' are not cached at {path} and offline mode is on. "
                    + _remedies(encoder_name, tag)
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(url, str(path), progress=progress)
            except Exception as err:
                raise WeightsDownloadError(
                    f"Could not download weights '{tag}' for encoder '{encoder_name}' from {url}: {err}\n"
                    + _remedies(encoder_name, tag)
                ) from err
    elif "file" in settings:
        path = Path(str(settings["file"])).expanduser()
        if not path.is_file():
            raise WeightsDownloadError(f"Weights file {path} for encoder '{encoder_name}' ({tag}) does not exist")
    else:
        raise ValueError(
            f"pretrained setting '{tag}' of encoder '{encoder_name}' names no source: give 'repo_id', 'url' or 'file'"
        )
    expected = settings.get("sha256")
    if expected and file_sha256(path) != expected:
        raise ValueError(f"sha256 of {path} does not match the pinned {expected} for '{encoder_name}' ({tag})")
    return path


def _is_safetensors(path: Path) -> bool:
    # safetensors = 8-byte little-endian header length, then a JSON header starting with '{'.
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


def read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file, or a legacy checkpoint with ``weights_only=True``."""
    if _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state
