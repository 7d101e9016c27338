"""Write a file under a temporary name beside it and rename it into place: readers never see half a file."""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union


def _fsync(path: Union[str, Path]) -> None:
    """Flush a file's (or folder's) contents to disk; a no-op where the system cannot (folders on Windows)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary name keeps the full suffix (``.nii.gz``, ``.png``), because writers such as nibabel and PIL choose
    the format from it.

    Args:
        path: the file to create or replace. Its folder is created if missing.

    Yields:
        The temporary path to write to. Once written, it is synced to disk, renamed over ``path``, and the folder
    is synced, so a crash leaves either the old file or the new one, never an empty or partial one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name.split('.')[0]}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared like any other file
        _fsync(tmp)  # the data reaches the disk before the name does: a crash never leaves an empty file
        os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def file_sha256(path: Union[str, Path]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (weights files are large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
