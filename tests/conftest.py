"""Shared fixtures: the real CUB-GHA gaze data (skipped with a reason when absent)."""

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
