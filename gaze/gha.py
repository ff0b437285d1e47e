"""Build the CUB-GHA heatmap folders (the published layout) from fixation records.

Layout (cub_pim.md §1.10): ``<save>/All_Fixation/<id>.jpg`` (one 8-bit grey map of all
fixations of an image, original size) and ``<save>/Single_Fixation/<id>/<k>.jpg`` (one
unweighted map per fixation after the duration filter and the merge down to N, k from 0).

Work is split into chunks of images of the same size (so each chunk renders in a few
batched matrix products) and spread over worker processes; every file is written
atomically, and finished images are skipped on a re-run unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from gaze.atomic import atomic_write_bytes
from gaze.fixations import FixationRecord, filter_by_duration, merge_nearest
from gaze.heatmap import iter_heatmaps, render_display_heatmap, render_single_fixation_maps, save_heatmap

ALL_DIR, SINGLE_DIR = "All_Fixation", "Single_Fixation"
#: Published defaults (cub_pim.md §1.10, CUB-GHA README): the aggregate gaze excludes
#: fixations under 100 ms; the single-fixation script keeps >= 350 ms and merges down to 7.
ALL_MIN_DURATION_MS, SINGLE_MIN_DURATION_MS, SINGLE_MAX_FIXATIONS = 100.0, 350.0, 7


@dataclass(frozen=True)
class BuildOptions:
    """How maps are made; see generate_heatmap.py for the meaning of each flag."""

    single_fixation: bool = False
    sigma: float | None = None
    min_duration: float | None = None  # None: 100 ms (all) or 350 ms (single)
    max_fixations: int = SINGLE_MAX_FIXATIONS
    compat: bool = False
    jpeg_quality: int = 75
    overwrite: bool = False

    @property
    def effective_min_duration(self) -> float:
        if self.min_duration is not None:
            return self.min_duration
        return SINGLE_MIN_DURATION_MS if self.single_fixation else ALL_MIN_DURATION_MS


@dataclass
class BuildSummary:
    """What a build did."""

    images: int = 0
    maps_written: int = 0
    images_done_before: int = 0
    images_without_fixations: int = 0
    seconds: float = 0.0


def prepare_record(record: FixationRecord, options: BuildOptions) -> FixationRecord:
    """Apply the duration filter, and in single-fixation mode the merge down to N."""
    record = filter_by_duration(record, options.effective_min_duration)
    if options.single_fixation:
        record = merge_nearest(record, options.max_fixations, compat=options.compat)
    return record


def output_paths(record: FixationRecord, save_path: Path, options: BuildOptions) -> list[Path]:
    """The files one prepared record produces."""
    if options.single_fixation:
        folder = save_path / SINGLE_DIR / record.image_id
        return [folder / f"{k}.jpg" for k in range(len(record))]
    return [save_path / ALL_DIR / f"{record.image_id}.jpg"]


def _is_done(record: FixationRecord, save_path: Path, options: BuildOptions) -> bool:
    paths = output_paths(record, save_path, options)
    return bool(paths) and all(p.exists() for p in paths)


def _write_chunk(args: tuple[list[FixationRecord], Path, BuildOptions]) -> int:
    """Render and save the maps of one chunk of prepared records; return maps written."""
    records, save_path, options = args
    written = 0
    if options.single_fixation:
        for record in records:
            maps = _single_maps(record, options)
            for path, heatmap in zip(output_paths(record, save_path, options), maps):
                save_heatmap(path, heatmap, options.jpeg_quality)
                written += 1
        return written
    display = [r for r in records if r.display is not None]
    image = [r for r in records if r.display is None]
    rendered = [(r, render_display_heatmap(r, options.compat)) for r in display]
    for record, heatmap in rendered + list(iter_heatmaps(image, sigma=options.sigma)):
        save_heatmap(output_paths(record, save_path, options)[0], heatmap, options.jpeg_quality)
        written += 1
    return written


def _single_maps(record: FixationRecord, options: BuildOptions) -> Iterable[torch.Tensor]:
    """One unweighted map per fixation (display recipe when the record has display geometry)."""
    if record.display is None:
        return render_single_fixation_maps(record, sigma=options.sigma)
    return [
        render_display_heatmap(replace(record.subset(np.array([k])), duration=np.ones(1)), options.compat)
        for k in range(len(record))
    ]


def _chunks(records: Sequence[FixationRecord], chunk_size: int) -> list[list[FixationRecord]]:
    """Group records of one image size (then fixation count) into chunks for batching."""
    ordered = sorted(records, key=lambda r: (r.height, r.width, len(r)))
    return [ordered[i : i + chunk_size] for i in range(0, len(ordered), chunk_size)]


MANIFEST = ".gha_build.json"


class OptionsMismatchError(ValueError):
    """The output folder holds maps made with other options (re-run with overwrite)."""


def check_manifest(folder: Path, options: BuildOptions) -> None:
    """Record the options maps in ``folder`` are made with; refuse to mix two recipes.

    A re-run that skips finished images must not leave maps of another recipe (say a
    different sigma or ``compat``) beside new ones; ``overwrite`` replaces the record.
    """
    recipe = {k: v for k, v in asdict(options).items() if k != "overwrite"}
    recipe["min_duration"] = options.effective_min_duration
    path = folder / MANIFEST
    if path.exists() and not options.overwrite:
        previous = json.loads(path.read_text())
        changed = {k: (previous.get(k), v) for k, v in recipe.items() if previous.get(k) != v}
        if changed:
            details = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
            raise OptionsMismatchError(
                f"{folder} holds maps made with other options ({details}); "
                "pass --overwrite to rebuild them or choose another --CUB_GHA_save_path"
            )
        return
    atomic_write_bytes(path, json.dumps(recipe, indent=2).encode())


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core renders faster than threads fighting


def build_gha(
    records: Iterable[FixationRecord],
    save_path: str | os.PathLike,
    options: BuildOptions = BuildOptions(),
    workers: int = 1,
    chunk_size: int = 128,
    progress: Callable[[int], None] | None = None,
) -> BuildSummary:
    """Write the maps of every record (one record per image, see ``merge_by_image``).

    Args:
        records: one merged record per image.
        save_path: the CUB-GHA folder; ``All_Fixation/`` or ``Single_Fixation/`` goes inside.
        options: recipe and output options.
        workers: processes to render and encode with (1: in this process).
        chunk_size: images per task; chunks hold images of one size for batching.
        progress: called with the number of images finished after each chunk.

    Returns:
        A BuildSummary (images considered, maps written, images already done, seconds).
    """
    start = time.perf_counter()
    save_path = Path(save_path)
    check_manifest(save_path / (SINGLE_DIR if options.single_fixation else ALL_DIR), options)
    summary = BuildSummary()
    todo = []
    for record in records:
        summary.images += 1
        prepared = prepare_record(record, options)
        if len(prepared) == 0:
            summary.images_without_fixations += 1
        if not options.overwrite and _is_done(prepared, save_path, options):
            summary.images_done_before += 1
            if progress:
                progress(1)
            continue
        todo.append(prepared)
    tasks = [(chunk, save_path, options) for chunk in _chunks(todo, chunk_size)]
    if workers > 1 and len(tasks) > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker) as pool:
            for (chunk, _, _), written in zip(tasks, pool.imap(_write_chunk, tasks)):
                summary.maps_written += written
                if progress:
                    progress(len(chunk))
    else:
        for task in tasks:
            summary.maps_written += _write_chunk(task)
            if progress:
                progress(len(task[0]))
    summary.seconds = time.perf_counter() - start
    return summary
