"""Shared fixtures: the real CUB-GHA gaze data (skipped with a reason when absent), global state restored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The real CUB-GHA run files: $GAZE_CUB_GHA_DIR, else ../shared/cub_gha/data_5runs beside the repo.
REAL_RUNS_DIR = Path(
    os.environ.get("GAZE_CUB_GHA_DIR", REPO_ROOT.parent / "shared" / "cub_gha" / "data_5runs")
)


@pytest.fixture(scope="session")
def real_runs_dir() -> Path:
    """Folder with the five real Fixation_run*.txt files, or skip the test."""
    if not sorted(REAL_RUNS_DIR.glob("Fixation_run*.txt")):
        pytest.skip(
            f"real CUB-GHA run files not found at {REAL_RUNS_DIR} "
            "(set GAZE_CUB_GHA_DIR or run `python -m gaze.download cub-gha`)"
        )
    return REAL_RUNS_DIR


@pytest.fixture(autouse=True)
def restore_global_state():
    """Leave the process as the test found it: the ``gaze`` loggers, torch's threads and flags.

    A training run configures the ``gaze`` logger (handlers, no propagation) and tests set
    torch's thread count; without this, a later test's log capture or timing would depend
    on which tests ran before it (the suite must pass in any order).
    """
    import logging

    import torch

    loggers = [logging.getLogger(name) for name in ("gaze", *[n for n in logging.root.manager.loggerDict
                                                          if n.startswith("gaze.")])]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    for logger, handlers, level, propagate in saved:
        for handler in logger.handlers:
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is far faster than several fighting for 2 cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
