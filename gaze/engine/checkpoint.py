"""Checkpoints (DESIGN.md §2): build, save atomically, load with ``weights_only=True``.

Weights go in through THE state-dict loader (:func:`gaze.state_dicts.load_state_dict`);
released formats are turned into ours by :mod:`gaze.engine.importers`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

import gaze
from gaze.atomic import atomic_path
from gaze.engine.loop import unwrap_model
from gaze.state_dicts import load_state_dict, strip_prefixes
from gaze.torch_files import load_torch_file

CKPT_LAST = "ckpt_last.pt"
CKPT_BEST = "ckpt_best.pt"


def best_checkpoint(run_dir: str | os.PathLike, phases: tuple[str, ...] = ()) -> Path:
    """``<run_dir>/ckpt_best.pt``, or ``<run_dir>/<last phase>/ckpt_best.pt`` of a phased method."""
    return Path(run_dir) / (phases[-1] if phases else "") / CKPT_BEST


def plain_config(value: object) -> object:
    """A config made of primitives only (Paths and other objects become strings)."""
    if isinstance(value, Mapping):
        return {str(key): plain_config(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_config(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping) -> Path:
    """``torch.save`` to a temporary file, then rename onto ``path``."""
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(dict(checkpoint), temporary)
    return path


def make_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int = 0,
    best_metric: float | None = None,
    config: Mapping | None = None,
    best_epoch: int = 0,
) -> dict:
    """The DESIGN.md §2 checkpoint dict (plus ``best_epoch``): tensors and primitives only."""
    model = unwrap_model(model)
    return {
        "model": {strip_prefixes(k): v for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "best_epoch": int(best_epoch),
        "model_name": model_name(model),
        "config": plain_config(dict(config or {})),
        "version": gaze.__version__,
    }


def model_name(model: nn.Module) -> str:
    """The registry name of a model (its ``name`` attribute), else its class name."""
    return str(getattr(unwrap_model(model), "name", type(unwrap_model(model)).__name__))


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    expected_model_name: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Load a checkpoint with ``weights_only=True``; optionally put its weights into ``model``.

    Args:
        path: a checkpoint written by :func:`save_checkpoint`.
        model: receives ``checkpoint["model"]`` (``module.``/``_orig_mod.`` stripped), strictly.
        expected_model_name: the registry name the checkpoint must hold; by default the
            model's ``name`` attribute when a model is given.

    Returns:
        the checkpoint dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file (:class:`gaze.torch_files.CheckpointFileError`), not a
            gaze checkpoint, a checkpoint of another model, or weights that do not fit the
            model (names both and the first differing keys).
    """
    path = Path(path)
    checkpoint = load_torch_file(path, map_location)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a gaze checkpoint (expected a dict with 'model', found {found})")
    expected = expected_model_name or (getattr(unwrap_model(model), "name", None) if model is not None else None)
    found_name = checkpoint.get("model_name")
    if expected is not None and found_name is not None and found_name != expected:
        raise ValueError(f"{path} holds weights of model {found_name!r}, but model {expected!r} was expected")
    if model is not None:
        load_state_dict(unwrap_model(model), checkpoint["model"], str(path), strict=True, allow_unexpected=False)
    return checkpoint
