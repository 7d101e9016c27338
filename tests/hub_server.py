"""A loopback Hugging Face Hub for tests (stdlib only).

`HubServer` is a small HTTP server (``http.server.ThreadingHTTPServer`` in a daemon thread, bound to
``127.0.0.1`` on a free port) that answers the subset of the Hub protocol that ``huggingface_hub`` 2.4.0
uses to download and to push model files, so the *real* ``hf_hub_download`` / ``HfApi`` code paths run in
tests without touching the internet.

Store
    In memory. A repo is ``(repo_type, repo_id)`` with branches (name -> commit sha) and commits (sha ->
    full file snapshot ``{path: bytes}``). Seed it with ``add_file`` / ``add_files`` / ``add_folder``; each
    call is one commit on a branch ("main" by default) and returns its 40-hex sha. Files are visible at the
    branch name and at the sha. No authentication: tokens are accepted and ignored.

Endpoints (anything else answers 501 with a JSON error, so a missing route fails loudly)
    HEAD/GET ``/[datasets/|spaces/]{repo_id}/resolve/{revision}/{filename}``
        200 with ``X-Repo-Commit``, ``ETag`` (quoted sha256 of the content, as the Hub sends for LFS
        files), ``Content-Length``, ``Accept-Ranges``; GET honours one ``Range: bytes=a-b`` (206). No
        ``X-Xet-*`` header is ever sent, so the xet download path is never taken. Errors are 404 with
        ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound`` (the last one with
        ``X-Repo-Commit``, as the Hub does); hf_hub_download raises ``RepositoryNotFoundError`` /
        ``RevisionNotFoundError`` / ``RemoteEntryNotFoundError`` (from ``huggingface_hub.errors``).
        Careful: ``LocalEntryNotFoundError`` (cache miss while offline/unreachable) is *also* a subclass of
        ``EntryNotFoundError``, so assert ``RemoteEntryNotFoundError`` for "file not on the Hub".
    POST ``/api/repos/create``
        create_repo. 409 (with the repo ``url`` in the body, which ``exist_ok=True`` reads) if it exists.
        A new repo gets an empty initial commit on "main" (the real Hub adds a ``.gitattributes`` file).
    POST ``/api/{type}s/{repo_id}/preupload/{revision}``
        ``uploadMode: "regular"`` for every file, so contents come inline (base64) in the commit payload:
        no LFS / xet upload ever happens. Like the Hub, returns the git blob sha1 as ``oid`` of files that
        already exist, so unchanged files are skipped client-side.
    POST ``/api/{type}s/{repo_id}/commit/{revision}``
        ndjson ``header`` / ``file`` / ``deletedFile`` / ``deletedFolder`` lines; honours ``parentCommit``
        (412 on mismatch); ``lfsFile`` lines and ``create_pr`` are refused (400 / 501).
    GET  ``/api/{type}s/{repo_id}[/revision/{revision}]``
        repo info (id, sha, siblings). Used by ``model_info`` / ``repo_info``, which huggingface_hub calls
        itself when a push turns out to change nothing.
    POST ``/api/validate-yaml``
        called by ``upload_folder`` / ``create_commit`` whenever a ``README.md`` is pushed.
    GET  ``/api/agent-harnesses``
        empty registry; only requested when telemetry is enabled (``build_hf_headers`` ->
        ``detect_agent``). ``configure_hub`` disables telemetry, so normally never requested.

Pointing huggingface_hub at a server
    huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_OFFLINE``... into
    ``huggingface_hub.constants`` at import time, and some values are copied further at import time:
    ``huggingface_hub.hf_api.api`` (the ``HfApi`` instance behind the module-level ``upload_folder``,
    ``create_repo``, ``model_info``... functions) keeps ``api.endpoint``; ``utils._http._HUB_ORIGINS``
    (hosts trusted when following redirects); ``utils._git_credential.ENDPOINT``;
    ``utils._cache_manager.HF_HUB_CACHE``; ``utils._cache_assets.HF_ASSETS_CACHE``.
    ``configure_hub(monkeypatch, endpoint, home)`` sets the environment variables (for subprocesses and for
    code that reads them late) and patches all of these; ``monkeypatch`` undoes it.
    ``set_offline(monkeypatch)`` is the in-process equivalent of ``HF_HUB_OFFLINE=1``: 2.4.0 reads
    ``constants.HF_HUB_OFFLINE`` through ``constants.is_offline_mode()``, in an httpx2 request hook that
    raises ``OfflineModeIsEnabled`` before any connection is made.

Unreachable Hub, retries and timings
    ``unused_local_url()`` returns ``http://127.0.0.1:<port>`` of a port nobody listens on (connections are
    refused at once). Against it, ``hf_hub_download`` of a file that is not cached raises
    ``huggingface_hub.errors.LocalEntryNotFoundError`` whose ``__cause__`` is ``httpx2.ConnectError``; API
    calls such as ``HfApi.create_repo`` raise ``httpx2.ConnectError`` itself. hf_hub_download tries to
    connect 7 times: one HEAD without retries, then (``ConnectError`` is "retryable" and nothing is cached)
    a second HEAD through ``http_backoff`` with ``max_retries=5`` and waits of 1, 2, 4, 8, 8 s: about
    23.5 s in total with the library defaults (measured). ``fast_backoff(monkeypatch)`` (applied by
    ``configure_hub``, hence by the ``hub_env`` / ``hub_unreachable`` fixtures) keeps the retry count and only
    shrinks those waits (``base_wait_time`` 0.01 s, ``max_wait_time`` 0.02 s, via the functions' keyword
    defaults): the same call then takes about 0.1-0.3 s and still makes all 7 attempts. Timeouts
    (``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``, both 10 s) are left alone: a refused connection
    never waits for them. Not shortened: ``http_get`` sleeps a hard-coded 1 s before each of up to 5 resume
    attempts when a connection breaks *during* a GET (e.g. a server stopped between the HEAD and the GET).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "HubServer",
    "RecordedRequest",
    "configure_hub",
    "fast_backoff",
    "git_blob_sha1",
    "set_offline",
    "unused_local_url",
]

_REPO_TYPE_PREFIXES = {"dataset": "datasets/", "space": "spaces/", "model": ""}
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}

# /[datasets|spaces/]{repo_id}/resolve/{revision}/{filename}   (raw, still percent-encoded)
_RESOLVE_RE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+(?:/[^/]+)?)/resolve/([^/]+)/(.+)$")
# /api/{models|datasets|spaces}/{repo_id}[/{action}/{revision}]
_API_REPO_RE = re.compile(
    r"^/api/(models|datasets|spaces)/([^/]+(?:/[^/]+)?)(?:/(preupload|commit|revision)/([^/]+))?$"
)
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob (what the Hub returns as ``oid`` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def unused_local_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (bind a socket to a free port, then close it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class RecordedRequest(NamedTuple):
    """One request as received: method and raw request target (percent-encoded path, plus ``?query``)."""

    method: str
    path: str


@dataclass
class _Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    created_at: float = field(default_factory=time.time)


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    def resolve(self, revision: str) -> _Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision.lower()) if _SHA_RE.match(revision.lower()) else None


class _HubError(ValueError):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] = (),
        body: Mapping[str, Any] = (),
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.body = dict(headers), dict(body)


class HubServer:
    """In-memory loopback Hub. Use as a context manager, or call ``start()`` / ``stop()``.

    Attributes:
        url: ``http://127.0.0.1:PORT`` (valid after ``start()``).
        requests: every request received, as ``RecordedRequest(method, path)`` (compares equal to a 2-tuple).
        request_log: the same requests as dicts with ``method``, ``path``, ``query`` (dict of lists),
            ``headers`` (lower-cased names) and ``body_size``.
        errors: unexpected exceptions raised while handling requests (answered with a 400 for malformed
            payloads, 500 otherwise). Unknown routes get a 501 (not recorded here).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._address = (host, port)
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._commit_counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []
        self.request_log: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        httpd = ThreadingHTTPServer(self._address, _Handler)
        httpd.daemon_threads = True
        httpd.hub = self  # type: ignore[attr-defined]
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"hub-server-{port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_log.clear()

    # ------------------------------------------------------------------ store API (for tests)

    def create_repo(self, repo_id: str, *, repo_type: str = "model", exist_ok: bool = True) -> str:
        """Create an empty repo with an empty initial commit on "main"; returns the head sha of "main"."""
        with self._lock:
            key = (_check_repo_type(repo_type), repo_id)
            if key in self._repos:
                if not exist_ok:
                    raise ValueError(f"repo {repo_type}:{repo_id} already exists")
                return self._repos[key].branches.get("main", "")
            repo = self._repos[key] = _Repo(repo_type=repo_type, repo_id=repo_id)
            return self._commit(repo, "main", {}, (), (), "initial commit", create_branch=True)

    def add_file(
        self,
        repo_id: str,
        filename: str,
        data: bytes,
        revision: str | None = None,
        *,
        repo_type: str = "model",
        commit_message: str | None = None,
        commit_sha: str | None = None,
    ) -> str:
        """Commit one file to branch ``revision`` (default "main", created if needed); returns the sha.

        ``commit_sha`` gives the commit a chosen 40-hex id, to serve files at a revision pinned elsewhere.
        """
        return self.add_files(
            repo_id,
            {filename: data},
            revision,
            repo_type=repo_type,
            commit_message=commit_message,
            commit_sha=commit_sha,
        )

    def add_files(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        revision: str | None = None,
        *,
        repo_type: str = "model",
        commit_message: str | None = None,
        commit_sha: str | None = None,
    ) -> str:
        """Commit several files at once (one commit). Returns the commit sha (``commit_sha`` if given)."""
        additions = {}
        for name, data in files.items():
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"file content for {name!r} must be bytes, got {type(data).__name__}")
            additions[_check_path(name)] = bytes(data)
        with self._lock:
            repo = self._get_or_create_repo(repo_id, repo_type)
            branch = revision or "main"
            message = commit_message or f"Upload {', '.join(sorted(additions)) or 'nothing'}"
            return self._commit(
                repo, branch, additions, (), (), message, create_branch=True, commit_sha=commit_sha
            )

    def add_folder(
        self,
        repo_id: str,
        folder_path: str | os.PathLike,
        revision: str | None = None,
        *,
        path_in_repo: str = "",
        repo_type: str = "model",
        commit_message: str | None = None,
    ) -> str:
        """Commit every file under ``folder_path`` (recursive, posix relative paths) at once; returns sha."""
        root = Path(folder_path)
        if not root.is_dir():
            raise NotADirectoryError(root)
        prefix = path_in_repo.strip("/")
        files = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                files[f"{prefix}/{rel}" if prefix else rel] = path.read_bytes()
        return self.add_files(
            repo_id, files, revision, repo_type=repo_type, commit_message=commit_message or "Upload folder"
        )

    def head(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> str:
        """Commit sha that ``revision`` (branch or sha) points to. KeyError if unknown."""
        with self._lock:
            commit = self._require_repo(repo_type, repo_id).resolve(revision)
            if commit is None:
                raise KeyError(f"unknown revision {revision!r} in {repo_type}:{repo_id}")
            return commit.sha

    def list_files(self, repo_id: str, revision: str = "main", *, repo_type: str = "model") -> list[str]:
        with self._lock:
            sha = self.head(repo_id, revision, repo_type=repo_type)
            return sorted(self._repos[(repo_type, repo_id)].commits[sha].files)

    def read_file(
        self, repo_id: str, filename: str, revision: str = "main", *, repo_type: str = "model"
    ) -> bytes:
        with self._lock:
            sha = self.head(repo_id, revision, repo_type=repo_type)
            return self._repos[(repo_type, repo_id)].commits[sha].files[filename]

    def has_repo(self, repo_id: str, *, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    # ------------------------------------------------------------------ internals

    def _get_or_create_repo(self, repo_id: str, repo_type: str) -> _Repo:
        key = (_check_repo_type(repo_type), repo_id)
        if key not in self._repos:
            self._repos[key] = _Repo(repo_type=repo_type, repo_id=repo_id)
        return self._repos[key]

    def _require_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"unknown repo {repo_type}:{repo_id}")
        return repo

    def _commit(
        self,
        repo: _Repo,
        branch: str,
        additions: Mapping[str, bytes],
        deleted_files: Iterable[str],
        deleted_folders: Iterable[str],
        message: str,
        *,
        create_branch: bool = False,
        parent_commit: str | None = None,
        commit_sha: str | None = None,
    ) -> str:
        """Create a commit on ``branch``; raises _HubError on protocol errors. Caller holds the lock."""
        parent_sha = repo.branches.get(branch)
        if parent_sha is None:
            if not create_branch:
                raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent_sha = repo.branches.get("main")  # new branch forks from main (if any)
        if parent_commit is not None and (
            parent_sha is None or not parent_sha.startswith(parent_commit.lower())
        ):
            raise _HubError(412, f"Parent commit {parent_commit} is not the head of {branch} ({parent_sha})")
        files = dict(repo.commits[parent_sha].files) if parent_sha else {}
        for path in deleted_files:
            if path not in files:
                raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del files[path]
        for folder in deleted_folders:
            prefix = folder.rstrip("/") + "/"
            doomed = [p for p in files if p.startswith(prefix)]
            if not doomed:
                raise _HubError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
            for p in doomed:
                del files[p]
        files.update(additions)
        self._commit_counter += 1
        digest = hashlib.sha1()
        digest.update(
            f"{repo.repo_type}:{repo.repo_id}\0{parent_sha}\0{message}\0{self._commit_counter}".encode()
        )
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        if commit_sha is not None:
            if not re.fullmatch(r"[0-9a-f]{40}", commit_sha) or commit_sha in repo.commits:
                raise ValueError(f"commit_sha must be a new 40-char lowercase hex id, got {commit_sha!r}")
            sha = commit_sha
        repo.commits[sha] = _Commit(sha=sha, parent=parent_sha, message=message, files=files)
        repo.branches[branch] = sha
        return sha

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_REPO_TYPE_PREFIXES[repo.repo_type]}{repo.repo_id}"

    def _record(self, handler: _Handler, body_size: int) -> None:
        split = urlsplit(handler.path)
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, handler.path))
            self.request_log.append(
                {
                    "method": handler.command,
                    "path": split.path,
                    "query": parse_qs(split.query),
                    "headers": {k.lower(): v for k, v in handler.headers.items()},
                    "body_size": body_size,
                }
            )

    # ------------------------------------------------------------------ request handling (called by _Handler)

    def _handle(self, handler: _Handler) -> None:
        method = handler.command
        body = handler.read_body() if method in ("POST", "PUT", "PATCH") else b""
        self._record(handler, len(body))
        split = urlsplit(handler.path)
        path, query = split.path, parse_qs(split.query)
        try:
            if method in ("HEAD", "GET") and (m := _RESOLVE_RE.match(path)):
                repo_type = _PLURAL_TO_TYPE[m.group(1)] if m.group(1) else "model"
                return self._serve_resolve(
                    handler, repo_type, unquote(m.group(2)), unquote(m.group(3)), unquote(m.group(4))
                )
            if path == "/api/repos/create" and method == "POST":
                return self._api_create_repo(handler, _json_body(body))
            if path == "/api/validate-yaml" and method == "POST":
                return handler.send_json(200, {"errors": [], "warnings": []})
            if path == "/api/agent-harnesses" and method == "GET":
                return handler.send_json(200, {"standardEnvVars": [], "harnesses": {}})
            if m := _API_REPO_RE.match(path):
                repo_type, repo_id, action = _PLURAL_TO_TYPE[m.group(1)], unquote(m.group(2)), m.group(3)
                revision = unquote(m.group(4)) if m.group(4) else None
                if action == "preupload" and method == "POST":
                    return self._api_preupload(handler, repo_type, repo_id, revision, _json_body(body), query)
                if action == "commit" and method == "POST":
                    return self._api_commit(handler, repo_type, repo_id, revision, body, query)
                if action in (None, "revision") and method == "GET":
                    return self._api_repo_info(handler, repo_type, repo_id, revision or "main", query)
            raise _HubError(501, f"hub_server.py does not implement {method} {path}")
        except _HubError as err:
            handler.send_error_json(err.status, err.message, err.code, err.headers, err.body)
        except Exception as err:  # noqa: BLE001 - malformed payload (400) or a bug here (500); kept for tests
            with self._lock:
                self.errors.append(err)
            malformed = isinstance(err, (KeyError, TypeError, ValueError, AttributeError))
            status, what = (400, "Malformed request") if malformed else (500, "hub_server.py crashed")
            handler.send_error_json(status, f"{what}: {err!r}", None, {}, {})

    def _lookup(self, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo, _Commit]:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo, commit

    def _serve_resolve(
        self, handler: _Handler, repo_type: str, repo_id: str, revision: str, filename: str
    ) -> None:
        with self._lock:
            _, commit = self._lookup(repo_type, repo_id, revision)
            data = commit.files.get(filename)
            if data is None:
                raise _HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
        }
        status, payload = 200, data
        range_header = handler.headers.get("Range")
        if range_header and handler.command == "GET":
            status, payload, extra = _apply_range(range_header, data)
            headers.update(extra)
        handler.send_bytes(status, payload, headers)

    def _api_create_repo(self, handler: _Handler, payload: dict) -> None:
        name, organization = payload.get("name"), payload.get("organization")
        if not name:
            raise _HubError(400, "Missing repo name")
        repo_type = payload.get("type") or "model"
        if repo_type not in _REPO_TYPE_PREFIXES:
            raise _HubError(400, f"Unsupported repo type: {repo_type}")
        repo_id = f"{organization}/{name}" if organization else name
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # Like the Hub, the 409 body carries the url: create_repo(exist_ok=True) reads it.
                url = self._repo_url(self._repos[(repo_type, repo_id)])
                raise _HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            self.create_repo(repo_id, repo_type=repo_type, exist_ok=False)
            repo = self._repos[(repo_type, repo_id)]
            handler.send_json(
                200, {"url": self._repo_url(repo), "name": repo_id, "id": repo.branches["main"][:24]}
            )

    def _api_preupload(self, handler, repo_type, repo_id, revision, payload: dict, query) -> None:
        if query.get("create_pr"):
            raise _HubError(501, "hub_server.py does not implement create_pr")
        with self._lock:
            _, commit = self._lookup(repo_type, repo_id, revision or "main")
            files = []
            for entry in payload.get("files", []):
                path = entry["path"]
                info = {"path": path, "uploadMode": "regular", "shouldIgnore": False}
                if path in commit.files:
                    info["oid"] = git_blob_sha1(commit.files[path])
                files.append(info)
        handler.send_json(200, {"files": files, "commitOid": commit.sha})

    def _api_commit(self, handler, repo_type, repo_id, revision, body: bytes, query) -> None:
        if query.get("create_pr"):
            raise _HubError(501, "hub_server.py does not implement create_pr")
        lines = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "First ndjson line must be the commit header")
        header = lines[0]["value"]
        additions: dict[str, bytes] = {}
        deleted_files: list[str] = []
        deleted_folders: list[str] = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                additions[_check_path(value["path"])] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted_files.append(value["path"])
            elif key == "deletedFolder":
                deleted_folders.append(value["path"])
            elif key == "lfsFile":
                raise _HubError(400, "hub_server.py only accepts regular (inline) files, got an lfsFile line")
            else:
                raise _HubError(400, f"Unknown commit operation {key!r}")
        message = header.get("summary") or "commit"
        if header.get("description"):
            message += "\n\n" + header["description"]
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            if repo is None:
                raise _HubError(404, "Repository not found", "RepoNotFound")
            sha = self._commit(
                repo,
                revision or "main",
                additions,
                deleted_files,
                deleted_folders,
                message,
                parent_commit=header.get("parentCommit"),
            )
            url = f"{self._repo_url(repo)}/commit/{sha}"
        handler.send_json(200, {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": ""})

    def _api_repo_info(self, handler, repo_type, repo_id, revision, query) -> None:
        with self._lock:
            repo, commit = self._lookup(repo_type, repo_id, revision)
            with_blobs = query.get("blobs", [""])[0].lower() == "true"
            siblings = []
            for path in sorted(commit.files):
                sibling: dict[str, Any] = {"rfilename": path}
                if with_blobs:
                    sibling.update(size=len(commit.files[path]), blobId=git_blob_sha1(commit.files[path]))
                siblings.append(sibling)
            info = {
                "_id": repo.branches.get("main", commit.sha)[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
                "sha": commit.sha,
                "lastModified": _iso(commit.created_at),
                "createdAt": _iso(repo.created_at),
                "private": False,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
            if repo_type == "model":
                info["modelId"] = repo.repo_id
        handler.send_json(200, info)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no handler thread lingers on a keep-alive socket after stop().
    protocol_version = "HTTP/1.0"
    server_version = "smp-like-test-hub/1.0"

    def do_HEAD(self) -> None:
        self.server.hub._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] = ()) -> None:
        self.send_bytes(
            status, json.dumps(obj).encode(), {"Content-Type": "application/json", **dict(headers)}
        )

    def send_error_json(
        self, status: int, message: str, code: str | None, headers: Mapping[str, str], body: Mapping[str, Any]
    ) -> None:
        extra = {"X-Error-Message": message, **headers}
        if code:
            extra["X-Error-Code"] = code
        self.send_json(status, {"error": message, **body}, extra)


def _apply_range(range_header: str, data: bytes) -> tuple[int, bytes, dict[str, str]]:
    m = _RANGE_RE.match(range_header)
    total = len(data)
    if m is None or (not m.group(1) and not m.group(2)):
        raise _HubError(
            416, f"Unsupported Range header {range_header!r}", None, {"Content-Range": f"bytes */{total}"}
        )
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
    else:  # suffix range: last N bytes
        start, end = max(total - int(m.group(2)), 0), total - 1
    if start >= total or start > end:
        raise _HubError(
            416, f"Range {range_header!r} not satisfiable", None, {"Content-Range": f"bytes */{total}"}
        )
    return 206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{total}"}


def _json_body(body: bytes) -> dict:
    try:
        obj = json.loads(body or b"{}")
    except ValueError as err:
        raise _HubError(400, f"Invalid JSON body: {err}") from None
    if not isinstance(obj, dict):
        raise _HubError(400, "JSON body must be an object")
    return obj


def _check_repo_type(repo_type: str) -> str:
    if repo_type not in _REPO_TYPE_PREFIXES:
        raise ValueError(f"repo_type must be one of {sorted(_REPO_TYPE_PREFIXES)}, got {repo_type!r}")
    return repo_type


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


# ---------------------------------------------------------------------- pointing huggingface_hub at a server


def fast_backoff(monkeypatch, base_wait_time: float = 0.01, max_wait_time: float = 0.02) -> None:
    """Shrink the waits between ``http_backoff`` retries; the number of retries is unchanged.

    ``http_backoff`` / ``http_stream_backoff`` default to ``base_wait_time=1, max_wait_time=8`` (doubling),
    which makes a failed download against an unreachable Hub take ~23.5 s. Patched through the functions'
    keyword defaults, so every importer of these functions sees it; restored by ``monkeypatch``.
    """
    from huggingface_hub.utils import _http

    functions = [
        _http.http_backoff,
        getattr(_http.http_stream_backoff, "__wrapped__", _http.http_stream_backoff),
    ]
    for function in functions:
        defaults = function.__kwdefaults__
        if defaults is None or "base_wait_time" not in defaults:
            raise RuntimeError(
                f"{function.__qualname__} has no base_wait_time keyword default: update hub_server.py"
            )
        monkeypatch.setitem(defaults, "base_wait_time", base_wait_time)
        monkeypatch.setitem(defaults, "max_wait_time", max_wait_time)


def set_offline(monkeypatch, offline: bool = True) -> None:
    """In-process equivalent of ``HF_HUB_OFFLINE=1`` (``=0`` if ``offline=False``); undone by monkeypatch."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


# Modules that copy constants into their own globals at import time (`from ..constants import X`): imported
# before patching, so that they are patched now and restored later (rather than importing a patched value).
_MODULES_WITH_COPIES = (
    "huggingface_hub.hf_api",
    "huggingface_hub.file_download",
    "huggingface_hub.utils._http",
    "huggingface_hub.utils._cache_manager",
    "huggingface_hub.utils._cache_assets",
    "huggingface_hub.utils._git_credential",
)

# Environment variables that would leak the developer's setup into a test.
_ENV_TO_CLEAR = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_OIDC_RESOURCE",
    "HF_OIDC_ID_TOKEN",
    "HUGGINGFACE_HUB_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HUGGINGFACE_CO_STAGING",
    "HF_HUB_DISABLE_XET",
    "XDG_CACHE_HOME",
)


def configure_hub(
    monkeypatch, endpoint: str, home: str | os.PathLike, *, shorten_backoff: bool = True
) -> None:
    """Point huggingface_hub (this process and subprocesses started afterwards) at ``endpoint`` and ``home``.

    Sets ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE`` (``home/hub``), ``HF_ASSETS_CACHE``,
    ``HF_XET_CACHE``, ``HF_TOKEN_PATH``, ``HF_HUB_DISABLE_TELEMETRY=1``; removes ``HF_HUB_OFFLINE``, tokens
    and legacy cache variables; patches ``huggingface_hub.constants`` and every import-time copy (see the
    module docstring); with ``shorten_backoff`` also applies ``fast_backoff``. ``monkeypatch`` undoes it all.
    """
    import importlib

    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    for name in _MODULES_WITH_COPIES:
        importlib.import_module(name)

    endpoint = endpoint.rstrip("/")
    home = os.fspath(Path(home).resolve())
    hub_cache = os.path.join(home, "hub")
    assets_cache = os.path.join(home, "assets")
    xet_cache = os.path.join(home, "xet")
    token_path = os.path.join(home, "token")

    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": home,
        "HF_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets_cache,
        "HF_XET_CACHE": xet_cache,
        "HF_TOKEN_PATH": token_path,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }.items():
        monkeypatch.setenv(name, value)

    host = (urlsplit(endpoint).hostname or "").lower()
    new_values = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {host}),
        "HF_HOME": home,
        "default_cache_path": hub_cache,
        "default_assets_cache_path": assets_cache,
        "HUGGINGFACE_HUB_CACHE": hub_cache,
        "HUGGINGFACE_ASSETS_CACHE": assets_cache,
        "HF_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets_cache,
        "default_xet_cache_path": xet_cache,
        "HF_XET_CACHE": xet_cache,
        "HF_TOKEN_PATH": token_path,
        "HF_STORED_TOKENS_PATH": os.path.join(home, "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": os.path.join(home, ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": os.path.join(home, ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": os.path.join(home, ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": False,
    }
    old_values = {name: getattr(constants, name) for name in new_values if hasattr(constants, name)}
    for name, value in new_values.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    # Import-time copies (`from ..constants import ENDPOINT` and the like) in loaded huggingface_hub modules.
    for module_name, module in list(sys.modules.items()):
        if module is None or module is constants or not module_name.startswith("huggingface_hub"):
            continue
        for name, old in old_values.items():
            if isinstance(old, (str, frozenset)) and module.__dict__.get(name, None) is old:
                monkeypatch.setattr(module, name, new_values[name])

    # Values derived from the endpoint at import time, outside `constants`.
    from huggingface_hub import hf_api

    monkeypatch.setattr(
        hf_api.api, "endpoint", endpoint
    )  # behind huggingface_hub.upload_folder(), create_repo()...
    monkeypatch.setattr(_http, "_HUB_ORIGINS", frozenset(_http._HUB_ORIGINS | {_http._url_origin(endpoint)}))

    if shorten_backoff:
        fast_backoff(monkeypatch)
