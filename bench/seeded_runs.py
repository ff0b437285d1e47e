"""Shared by the accuracy parts of the benchmarks: ``python cub/train.py`` (its defaults plus a
method's overrides) once per method and seed in a temporary folder, and the mean +- std cell."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


def cub_runs(methods: Sequence[tuple[str, list[str]]], seeds: int) -> Iterator[tuple[str, Path]]:
    """(method name, its finished run folder) for every method x seed 0..N-1; the folders live
    until the iteration ends."""
    from cub.train import main as train_main

    with tempfile.TemporaryDirectory() as runs:
        for name, overrides in methods:
            for seed in range(seeds):
                run = f"{name.replace(' + ', '_')}_s{seed}"
                assert train_main([*overrides, f"--seed={seed}", f"--model_path={runs}", f"--model_name={run}",
                                   "--cam_images=0"]) == 0
                yield name, Path(runs) / run


def mean_std(values: list[float]) -> str:
    """'mean +- sample std' (std 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} +- {std:5.2f}"
