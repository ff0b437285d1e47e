"""Atomic file writes: write a temporary file beside the target, then rename it.

A killed process leaves either the old file or the new one, never half a file; the
temporary name starts with ``.`` and ends with ``.tmp`` so stray ones are easy to spot.
Temporary names carry the process id and a counter, so concurrent writers (processes or
threads) never share one, and a file is created with the mode ``open()`` would give.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_counter = itertools.count()  # next() is atomic under the GIL
#: ``.<name>.<pid>.<n>.tmp``: the temporary names this module makes.
_TEMPORARY = re.compile(r"\..+\.(\d+)\.\d+\.tmp")


def _temporary_beside(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}.{next(_counter)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The parent folder is created. The block creates the temporary file (e.g. a library's
    ``save(temporary)``). On any exception it is removed and the target is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(_temporary_beside(str(path)))
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; the parent folder is created when missing.

    One open, one write, one rename: cheap enough for the 11,788 maps of a CUB-GHA build.
    """
    path = os.fspath(path)
    temporary = _temporary_beside(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC  # a stale name from a dead pid is reused
    try:
        handle = os.open(temporary, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handle = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (recursively); return them.

    Only names this module makes (``.<name>.<pid>.<n>.tmp``) whose process is gone are
    removed: a kill during a checkpoint write leaves one behind, and nothing else ever
    renames or deletes it.
    """
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if match and path.is_file() and not _process_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
