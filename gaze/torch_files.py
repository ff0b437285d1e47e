"""Read ``.pt``/``.pth`` files safely: ``weights_only=True`` and errors that name the file.

Every checkpoint and weight file of the project is read through :func:`load_torch_file`
(engine checkpoints, released checkpoints, backbone weights).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch


class CheckpointFileError(ValueError):
    """A ``.pt`` file that cannot be read: empty, truncated, corrupted or not a torch file."""


def load_torch_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with a clear error naming ``path``.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointFileError: an empty, truncated or corrupted file, or one holding objects
            other than tensors and primitives (refused by ``weights_only``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint or weight file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFileError(f"{path}: the file is empty (0 bytes): an interrupted copy or download?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointFileError(
            f"{path}: refused by torch.load(weights_only=True): it holds objects other than tensors and "
            f"primitives (e.g. a whole pickled model, as the NYCU HW1 checkpoint), or is not a torch file "
            f"({str(error).splitlines()[0]}). If you trust where it came from, write its plain state dict with "
            f"`python -m gaze unpickle --trust_pickle {path} <out.pt>` and load that") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointFileError(
            f"{path}: cannot be read as a torch file ({size:,} bytes; {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}): truncated or corrupted?") from None
