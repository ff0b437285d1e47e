"""Build the CUB-GHA heatmap folders (the published layout) from fixation records.

Layout (cub_pim.md §1.10): ``<save>/All_Fixation/<id>.jpg`` (one 8-bit grey map of all
fixations of an image, original size) and ``<save>/Single_Fixation/<id>/<k>.jpg`` (one
unweighted map per fixation after the duration filter and the merge down to N, k from 0).

Work is split into chunks of images of the same size (so each chunk renders in a few
batched matrix products) and spread over worker processes, which also filter and merge
the fixations; every file is written atomically, and finished images are skipped on a
re-run unless ``overwrite`` is set. ``python bench/heatmaps.py`` times the whole build.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.pool
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from gaze.atomic import atomic_write_bytes
from gaze.attention.fixations import FixationRecord, filter_by_duration, merge_nearest
from gaze.attention.heatmap import (
    encode_heatmap,
    iter_heatmaps,
    render_display_heatmap,
    render_single_fixation_maps,
)
from gaze.safe_paths import check_plain_name

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
    images_all_outside: int = 0  # images with fixations, every one outside the image
    first_all_outside: str | None = None
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


def _prepared_length(record: FixationRecord, options: BuildOptions) -> int:
    """``len(prepare_record(record, options))`` without preparing it.

    The merge removes exactly one fixation per step until ``max_fixations`` remain, so
    only the duration filter has to be counted; the merge itself runs in the workers.
    """
    kept = int(np.count_nonzero(record.duration >= options.effective_min_duration))
    return min(kept, options.max_fixations) if options.single_fixation else kept


def _all_outside(record: FixationRecord) -> bool:
    """Whether every fixation lies outside the image (x, y not in [0, W) x [0, H))."""
    inside = (record.x >= 0) & (record.x < record.width) & (record.y >= 0) & (record.y < record.height)
    return len(record) > 0 and not inside.any()


def _is_done(record: FixationRecord, save_path: Path, options: BuildOptions) -> bool:
    """Whether every file of ``output_paths(prepare_record(record))`` exists (none: False)."""
    if options.single_fixation:
        folder = save_path / SINGLE_DIR / record.image_id
        count = _prepared_length(record, options)
        return count > 0 and all((folder / f"{k}.jpg").exists() for k in range(count))
    return (save_path / ALL_DIR / f"{record.image_id}.jpg").exists()


#: Images per batched render in a chunk: 4-8 rendered and encoded ~10% faster than 32 (the
#: iter_heatmaps default; 24 MB of 500x375 maps, fresh memory, gone from the caches).
RENDER_BATCH = 8


def _write_chunk(args: tuple[list[FixationRecord], Path, BuildOptions]) -> int:
    """Prepare, render and save the maps of one chunk of records; return maps written."""
    records, save_path, options = args
    records = [prepare_record(record, options) for record in records]
    quality = options.jpeg_quality
    written = 0
    if options.single_fixation:
        for record in records:
            folder = str(save_path / SINGLE_DIR / record.image_id)
            for k, heatmap in enumerate(_single_maps(record, options)):
                atomic_write_bytes(os.path.join(folder, f"{k}.jpg"), encode_heatmap(heatmap, quality=quality))
                written += 1
        return written
    folder = str(save_path / ALL_DIR)
    display = [r for r in records if r.display is not None]
    image = [r for r in records if r.display is None]
    rendered = ((r, render_display_heatmap(r, options.compat)) for r in display)
    maps = iter_heatmaps(image, sigma=options.sigma, batch_size=RENDER_BATCH)
    for record, heatmap in itertools.chain(rendered, maps):
        atomic_write_bytes(os.path.join(folder, f"{record.image_id}.jpg"), encode_heatmap(heatmap, quality=quality))
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


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Render in this process on one thread, as the workers do, and restore the setting after.

    The maps are too small for intra-op threads to pay: each op waits for the others to be
    scheduled: build_gha(workers=1) ran 25x slower on a busy 2-core machine with 2 threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _start_pool(workers: int) -> multiprocessing.pool.Pool:
    return multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)


def _sized_above(records: Iterable[FixationRecord], count: int) -> bool:
    """Whether ``records`` is known, without iterating it, to hold more than ``count`` items."""
    try:
        return len(records) > count  # type: ignore[arg-type]
    except TypeError:
        return False


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
    pool = None
    if workers > 1 and _sized_above(records, chunk_size):
        pool = _start_pool(workers)  # the workers import torch while the records are scanned
    try:
        summary = BuildSummary()
        todo = []
        for record in records:
            check_plain_name(record.image_id, record.source[0] if record.source else "a fixation record")
            summary.images += 1
            if _prepared_length(record, options) == 0:
                summary.images_without_fixations += 1
            elif _all_outside(record):
                summary.images_all_outside += 1
                summary.first_all_outside = summary.first_all_outside or record.image_id
            if not options.overwrite and _is_done(record, save_path, options):
                summary.images_done_before += 1
                if progress:
                    progress(1)
                continue
            todo.append(record)  # prepared (filter, merge) in the workers: the merge is slow
        tasks = [(chunk, save_path, options) for chunk in _chunks(todo, chunk_size)]
        if pool is None and workers > 1 and len(tasks) > 1:
            pool = _start_pool(workers)
        with contextlib.ExitStack() as stack:
            if pool is not None:
                results = pool.imap(_write_chunk, tasks)
            else:
                stack.enter_context(_one_torch_thread())
                results = map(_write_chunk, tasks)
            for (chunk, _, _), written in zip(tasks, results):
                summary.maps_written += written
                if progress:
                    progress(len(chunk))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    summary.seconds = time.perf_counter() - start
    return summary
