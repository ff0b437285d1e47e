"""Names read from data files that become paths: checked to be plain names that stay inside.

An image id, dicom id or class name read from a data file is only ever joined to a folder
after :func:`check_plain_name` (no separators, no ``.``/``..``, no control characters), and
every output path built from one is checked by :func:`path_inside` to stay in its folder,
so a line such as ``../../escaped_map,...`` can never write outside the output folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath

#: Characters a plain name never holds: path separators (both flavours), NUL and other controls.
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
#: Longest file name most file systems take (bytes of UTF-8).
MAX_NAME_BYTES = 255


class UnsafeNameError(ValueError):
    """A name from a data file that cannot be used as a file name; the message says where."""


def plain_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name, or None when it is one."""
    if not name:
        return "empty name"
    if name in (".", ".."):
        return f"{name!r} refers to a folder"
    match = _FORBIDDEN.search(name)
    if match:
        return f"{name!r} holds {match.group()!r} (path separators and control characters are not allowed)"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"{name[:20]!r}... is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_plain_name(name: str, where: str) -> str:
    """Return ``name`` if it is a plain file name; else raise UnsafeNameError naming ``where``."""
    problem = plain_name_problem(name)
    if problem is not None:
        raise UnsafeNameError(f"{where}: {problem}; ids and names used in file paths must be plain names")
    return name


def check_relative_path(path: str, where: str) -> PurePath:
    """A relative path from a data file (CUB images.txt, a master-sheet ``path``) that stays below its folder."""
    pure = PurePath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise UnsafeNameError(f"{where}: {path!r} must be a relative path inside its folder (no '..', not absolute)")
    return pure


def path_inside(folder: str | os.PathLike, *parts: str) -> Path:
    """``folder/part/...``, checked to resolve inside ``folder`` (symlinks followed)."""
    folder = Path(folder)
    path = folder.joinpath(*parts)
    root = folder.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafeNameError(f"{path}: resolves to {resolved}, outside {root}")
    return path
