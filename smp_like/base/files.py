"""Write a file under a temporary name beside it and rename it into place: readers never see half a file."""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary name keeps the full suffix (``.nii.gz``, ``.png``), because writers such as nibabel and PIL choose
    the format from it.

    Args:
        path: the file to create or replace. Its folder is created if missing.

    Yields:
        The temporary path to write to.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name.split('.')[0]}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared like any other file
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
