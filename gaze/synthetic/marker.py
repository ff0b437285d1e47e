"""What every synthetic demo set shares: its marker file, and reuse-or-rebuild of its folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

#: Written last by every generator: its parameters and version (a set without it is unfinished).
MARKER_NAME = ".synthetic_complete.json"
#: First words of the README.txt of every synthetic set.
README_HEADER = "SYNTHETIC DATA"


def is_synthetic(root: Path) -> bool:
    """True when ``root`` holds a synthetic set (its README.txt starts with :data:`README_HEADER`)."""
    readme = root / "README.txt"
    return readme.is_file() and readme.read_text(errors="replace").startswith(README_HEADER)


def reuse_or_clear(root: Path, wanted: dict, version: int, generator: str) -> bool:
    """True if ``root`` holds a complete set made with ``wanted`` by generator ``version``.

    Otherwise an unfinished or different synthetic set there is deleted (so the caller
    regenerates it) and False is returned; a non-empty folder that is not a synthetic set
    (e.g. the real data) is never touched: FileExistsError naming ``generator``.
    """
    marker = root / MARKER_NAME
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found.get("generator_version") == version and {k: found.get(k) for k in wanted} == wanted:
            return True
    if root.exists() and any(root.iterdir()):
        if not is_synthetic(root):
            raise FileExistsError(
                f"{root}: folder exists and is not a synthetic set made by {generator}; "
                "choose another root (refusing to overwrite real data)"
            )
        shutil.rmtree(root)
    return False


def ensure_set(root: Path, wanted: dict, version: int, generator: str, make: Callable[[], object],
               using: str, generating: str, verbose: bool = True) -> Path:
    """``root`` reused when it holds a complete set made with ``wanted`` (see :func:`reuse_or_clear`),
    else written by ``make()``; ``using`` / ``generating`` say which, and that the data are SYNTHETIC."""
    if reuse_or_clear(root, wanted, version, generator):
        if verbose:
            print(using, flush=True)
        return root
    if verbose:
        print(generating, flush=True)
    make()
    return root
