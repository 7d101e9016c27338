"""Tests of the loopback Hub (tests/hub_server.py) through huggingface_hub's own download and upload code."""

import hashlib
import json
import logging
import os
import subprocess
import sys

import httpx2
import huggingface_hub
import pytest
from hub_server import HubServer, configure_hub, git_blob_sha1, set_offline, unused_local_url
from huggingface_hub import HfApi, _upload_pipeline, constants, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._runtime import is_xet_available

REPO = "smp-hub/resnet18.imagenet"
WEIGHTS = bytes(range(256)) * 41  # 10 KiB, not valid UTF-8


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_download_by_branch_and_by_commit_sha(hub_env):
    sha = hub_env.add_file(REPO, "model.safetensors", WEIGHTS)
    assert len(sha) == 40 and int(sha, 16) >= 0

    path = hf_hub_download(REPO, "model.safetensors")
    assert _read(path) == WEIGHTS
    assert path.startswith(constants.HF_HUB_CACHE)  # the per-test cache, not ~/.cache
    assert os.path.basename(os.path.dirname(path)) == sha  # snapshots/<sha>/model.safetensors
    # Blob named after the ETag: the sha256 of the content.
    assert os.path.basename(os.path.realpath(path)) == hashlib.sha256(WEIGHTS).hexdigest()
    assert hub_env.requests == [
        ("HEAD", f"/{REPO}/resolve/main/model.safetensors"),
        ("GET", f"/{REPO}/resolve/main/model.safetensors"),
    ]

    # A newer commit on main: the branch moves, the old sha still serves the old bytes.
    new_sha = hub_env.add_file(REPO, "model.safetensors", b"v2 weights")
    assert new_sha != sha
    assert _read(hf_hub_download(REPO, "model.safetensors")) == b"v2 weights"
    assert _read(hf_hub_download(REPO, "model.safetensors", revision=new_sha)) == b"v2 weights"
    assert _read(hf_hub_download(REPO, "model.safetensors", revision=sha)) == WEIGHTS


def test_download_nested_filename_and_other_branch(hub_env):
    hub_env.add_file(REPO, "configs/deep/config.json", b'{"a": 1}')
    dev_sha = hub_env.add_file(REPO, "configs/deep/config.json", b'{"a": 2}', revision="dev")
    assert _read(hf_hub_download(REPO, "configs/deep/config.json")) == b'{"a": 1}'
    path = hf_hub_download(REPO, "config.json", subfolder="configs/deep", revision="dev")
    assert _read(path) == b'{"a": 2}'
    assert hub_env.head(REPO, "dev") == dev_sha


def test_cached_file_served_without_requests(hub_env, monkeypatch):
    sha = hub_env.add_file(REPO, "model.safetensors", WEIGHTS)
    first = hf_hub_download(REPO, "model.safetensors")
    hub_env.clear_requests()

    # Pinned to a commit sha that is cached: no request even online.
    assert hf_hub_download(REPO, "model.safetensors", revision=sha) == first
    assert hub_env.requests == []

    # Offline mode (HF_HUB_OFFLINE=1 semantics): the branch ref is resolved from the cache.
    set_offline(monkeypatch)
    assert constants.is_offline_mode() and huggingface_hub.is_offline_mode()
    assert hf_hub_download(REPO, "model.safetensors") == first
    assert _read(first) == WEIGHTS
    # ...and a file that was never downloaded is a local miss, still without touching the server.
    hub_env.add_file(REPO, "other.bin", b"x")
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "other.bin")
    assert hub_env.requests == []

    # local_files_only=True behaves the same while online.
    set_offline(monkeypatch, False)
    assert hf_hub_download(REPO, "model.safetensors", local_files_only=True) == first
    assert hub_env.requests == []


def test_online_second_download_only_heads(hub_env):
    hub_env.add_file(REPO, "model.safetensors", WEIGHTS)
    first = hf_hub_download(REPO, "model.safetensors")
    hub_env.clear_requests()
    assert hf_hub_download(REPO, "model.safetensors") == first
    assert hub_env.requests == [("HEAD", f"/{REPO}/resolve/main/model.safetensors")]


def test_not_found_errors(hub_env):
    hub_env.add_file(REPO, "model.safetensors", WEIGHTS)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("smp-hub/does-not-exist", "model.safetensors")
    with pytest.raises(RemoteEntryNotFoundError) as info:
        hf_hub_download(REPO, "missing.bin")
    # LocalEntryNotFoundError (cache miss, unreachable Hub) is *also* an EntryNotFoundError: check for more.
    assert isinstance(info.value, EntryNotFoundError) and not isinstance(info.value, LocalEntryNotFoundError)
    assert info.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "model.safetensors", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "model.safetensors", revision="0" * 40)
    # No retries on 404s: exactly one HEAD each.
    assert [method for method, _ in hub_env.requests] == ["HEAD"] * 4


def test_unreachable_hub_raises_local_entry_not_found(hub_unreachable, caplog):
    caplog.set_level(logging.WARNING, logger="huggingface_hub")
    with pytest.raises(LocalEntryNotFoundError) as info:
        hf_hub_download(REPO, "model.safetensors")
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
    # The retry behaviour is the library's: one HEAD without retries, then a HEAD with 5 retries
    # (fast_backoff only shortens the waits between them, 1-8 s each by default).
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying in")]
    assert len(retries) == 5, retries
    assert all(message.startswith("Retrying in 0.0") for message in retries)

    with pytest.raises(httpx2.ConnectError):  # API calls (no backoff) raise the transport error itself
        HfApi().create_repo(REPO, exist_ok=True)


def test_configure_hub_is_undone(tmp_path):
    from huggingface_hub import hf_api
    from huggingface_hub.utils import _http

    before = (
        constants.ENDPOINT,
        constants.HF_HUB_CACHE,
        hf_api.api.endpoint,
        os.environ.get("HF_ENDPOINT"),
        dict(_http.http_backoff.__kwdefaults__),
        _http._HUB_ORIGINS,
    )
    with pytest.MonkeyPatch.context() as mp:
        configure_hub(mp, "http://127.0.0.1:9", tmp_path)
        assert constants.ENDPOINT == hf_api.api.endpoint == os.environ["HF_ENDPOINT"] == "http://127.0.0.1:9"
        assert constants.HF_HUB_CACHE == os.environ["HF_HUB_CACHE"] == str(tmp_path.resolve() / "hub")
        assert hf_hub_url(REPO, "f") == f"http://127.0.0.1:9/{REPO}/resolve/main/f"
        assert ("http", "127.0.0.1", 9) in _http._HUB_ORIGINS
        assert _http.http_backoff.__kwdefaults__["max_retries"] == 5  # retry count untouched
    after = (
        constants.ENDPOINT,
        constants.HF_HUB_CACHE,
        hf_api.api.endpoint,
        os.environ.get("HF_ENDPOINT"),
        dict(_http.http_backoff.__kwdefaults__),
        _http._HUB_ORIGINS,
    )
    assert after == before


def test_unused_local_url_refuses_connections():
    url = unused_local_url()
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url, timeout=5)


@pytest.mark.parametrize("disable_xet", [False, True], ids=["xet-pipeline", "create_commit"])
def test_upload_folder_round_trip(hub_env, tmp_path, monkeypatch, disable_xet):
    # With hf_xet installed upload_folder goes through _upload_pipeline; without it through create_commit.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", disable_xet)
    assert is_xet_available() is not disable_xet
    pipeline_calls = []  # spy (calls through) to prove which code path ran
    real_pipeline = _upload_pipeline.pipelined_upload

    def spy(*args, **kwargs):
        pipeline_calls.append(kwargs["repo_id"])
        return real_pipeline(*args, **kwargs)

    monkeypatch.setattr(_upload_pipeline, "pipelined_upload", spy)
    folder = tmp_path / "to_push"
    (folder / "sub" / "deeper").mkdir(parents=True)
    files = {
        "config.json": json.dumps({"arch": "unet"}).encode(),
        "model.safetensors": WEIGHTS,
        "sub/deeper/extra.bin": b"\x00\xff" * 1000,
        "README.md": b"---\nlicense: mit\n---\n# model\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)

    api = HfApi(endpoint=hub_env.url)
    repo_url = api.create_repo(REPO, exist_ok=True)
    assert repo_url.repo_id == REPO and repo_url.endpoint == hub_env.url
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO  # 409 swallowed
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(REPO)
    assert info.value.response.status_code == 409

    commit = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert commit.oid == hub_env.head(REPO)
    assert hub_env.list_files(REPO) == sorted(files)
    for name, data in files.items():
        assert _read(hf_hub_download(REPO, name)) == data

    methods_paths = {(m, p.split("?")[0]) for m, p in hub_env.requests}
    assert ("POST", "/api/repos/create") in methods_paths
    assert ("POST", f"/api/models/{REPO}/preupload/main") in methods_paths
    assert ("POST", f"/api/models/{REPO}/commit/main") in methods_paths
    assert not [p for _, p in hub_env.requests if "xet" in p or "lfs" in p]
    assert ("POST", "/api/validate-yaml") in hub_env.requests  # README.md metadata check
    assert len(pipeline_calls) == (0 if disable_xet else 1)

    # Pushing the same folder again changes nothing: files are skipped (preupload oids), no new commit.
    hub_env.clear_requests()
    again = api.upload_folder(repo_id=REPO, folder_path=folder)
    assert again.oid == commit.oid == hub_env.head(REPO)
    assert ("POST", f"/api/models/{REPO}/commit/main") not in hub_env.requests


def test_upload_file_and_module_level_functions(hub_env, tmp_path):
    # Module-level functions use `huggingface_hub.hf_api.api`, whose endpoint was fixed at import time.
    huggingface_hub.create_repo(REPO, exist_ok=True)
    info = huggingface_hub.upload_file(path_or_fileobj=b"hello", path_in_repo="a/b.txt", repo_id=REPO)
    src = tmp_path / "w.bin"
    src.write_bytes(WEIGHTS)
    info2 = HfApi().upload_file(path_or_fileobj=str(src), path_in_repo="w.bin", repo_id=REPO)
    assert info.oid != info2.oid == hub_env.head(REPO)
    assert _read(hf_hub_download(REPO, "a/b.txt", revision=info.oid)) == b"hello"
    assert _read(hf_hub_download(REPO, "w.bin")) == WEIGHTS
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "w.bin", revision=info.oid)  # not there yet at the first commit

    model = huggingface_hub.model_info(REPO)
    assert model.sha == hub_env.head(REPO)
    assert sorted(s.rfilename for s in model.siblings) == ["a/b.txt", "w.bin"]
    detailed = HfApi().model_info(REPO, revision=info.oid, files_metadata=True)
    assert [(s.rfilename, s.size, s.blob_id) for s in detailed.siblings] == [
        ("a/b.txt", 5, git_blob_sha1(b"hello"))
    ]

    with pytest.raises(RepositoryNotFoundError):
        HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="smp-hub/nope")


def test_server_store_helpers(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_bytes(b"f")
    (tmp_path / "g.txt").write_bytes(b"g")
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        sha = server.add_folder("org/r", tmp_path, path_in_repo="sub")
        assert server.list_files("org/r") == ["sub/d/f.txt", "sub/g.txt"]
        assert server.list_files("org/r", sha) == server.list_files("org/r")
        assert server.read_file("org/r", "sub/d/f.txt") == b"f"
        two = server.add_files("org/r", {"x": b"1", "y": b"2"})
        assert server.head("org/r") == two != sha
        with pytest.raises(TypeError):
            server.add_file("org/r", "s", "not bytes")
        response = httpx2.get(f"{server.url}/org/r/resolve/main/x", headers={"Range": "bytes=0-0"})
        assert response.status_code == 206 and response.content == b"1"
        response = httpx2.get(f"{server.url}/api/unknown")
        assert response.status_code == 501
        url = server.url
    with pytest.raises(httpx2.ConnectError):  # stopped
        httpx2.get(url, timeout=5)


def test_env_vars_honoured_in_fresh_subprocess(hub_server, tmp_path):
    """No monkeypatching: HF_ENDPOINT / HF_HOME set in the environment of a new interpreter."""
    hub_server.add_file(REPO, "model.safetensors", WEIGHTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.pop("TRANSFORMERS_OFFLINE", None)
    env.update(HF_ENDPOINT=hub_server.url, HF_HOME=str(tmp_path / "home"), HF_HUB_DISABLE_TELEMETRY="1")
    code = (
        "from huggingface_hub import hf_hub_download, constants\n"
        "p = hf_hub_download('smp-hub/resnet18.imagenet', 'model.safetensors')\n"
        "print(constants.ENDPOINT); print(p)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    endpoint, path = result.stdout.strip().splitlines()[-2:]
    assert endpoint == hub_server.url
    assert path.startswith(str(tmp_path / "home" / "hub"))
    assert _read(path) == WEIGHTS
    assert hub_server.requests == [
        ("HEAD", f"/{REPO}/resolve/main/model.safetensors"),
        ("GET", f"/{REPO}/resolve/main/model.safetensors"),
    ]
