"""Benchmark: the CUB-GHA all-fixation maps, this project against the published algorithm.

    python bench/heatmaps.py [--gaze_file_path ../shared/cub_gha/data_5runs]
                             [--baseline_images 200] [--workers N] [--full | --no-full]

(a) The project: :func:`gaze.attention.gha.build_gha`, the code path of ``generate_heatmap.py``
    (image-space rendering, default screen-fit sigma, batched, ``--workers`` processes).
(b) The baseline: the published ``generate_heatmap.py`` per-image algorithm re-implemented
    faithfully (cub_pim.md §1.10): per image a 500x500 Gaussian kernel (sd 75, centre
    index 250) built with a Python double loop, a (1080+500)x(1920+500) zero canvas, ``d*G``
    added per fixation at ``canvas[gy:gy+500, gx:gx+500]`` (try/except drop), the padding
    cut, the displayed rectangle cut, min-max, PIL 'F' -> 'L', resize to the original size,
    JPEG. The run files hold image coordinates, so each image is placed on the 1920x1080
    screen as large as fits, centred (cub_pim.md §1.12 (b)), and its pooled >= 100 ms
    fixations are written as one aggregate ``Fixation.txt`` line in screen pixels, which the
    baseline parses as the published script does.

Both run on the same subset of ``--baseline_images`` images (evenly spread over the ids),
interleaved slice by slice so that machine load hits both alike, each in one process.
Then, unless ``--no-full``, the project builds all 11,788 maps with ``--workers``
processes: that time is the acceptance figure (issue: under 60 s, aim under 30 s). The
ratio is images/s of the project over images/s of the baseline (target >= 50x, aim 100x).
The maps of both on the subset are compared (Pearson r and mean absolute difference of
the 8-bit JPEGs; they should correlate > 0.99). Everything is written to temporary folders.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gaze.attention.fixations import (
    SCREEN_HEIGHT,
    SCREEN_WIDTH,
    FixationRecord,
    merge_by_image,
    read_fixations,
)
from gaze.attention.gha import ALL_DIR, ALL_MIN_DURATION_MS, BuildOptions, build_gha

#: The published kernel: a 500x500 window, sd 75 screen pixels, centre index 250 (§1.10).
KERNEL_SIZE, KERNEL_SIGMA, KERNEL_CENTRE = 500, 75, 250
SLICES = 4  # baseline and project alternate over this many slices of the subset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaze_file_path", default="../shared/cub_gha/data_5runs", help="the CUB-GHA run files")
    parser.add_argument("--baseline_images", type=int, default=200, help="subset size for the baseline (~0.1 s each)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the full build")
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                        help="also build all maps with the project (the acceptance figure; default on)")
    args = parser.parse_args(argv)
    if args.baseline_images < 1 or args.workers < 1:
        parser.error("--baseline_images and --workers must be at least 1")
    return args


# --- the published algorithm ------------------------------------------------------------------


def fit_to_screen(width: int, height: int) -> tuple[int, int, int, int]:
    """Displayed rectangle (w, h, x0, y0): the image as large as fits 1920x1080, centred."""
    scale = min(SCREEN_WIDTH / width, SCREEN_HEIGHT / height)
    shown_w, shown_h = round(width * scale), round(height * scale)
    return shown_w, shown_h, (SCREEN_WIDTH - shown_w) // 2, (SCREEN_HEIGHT - shown_h) // 2


def aggregate_line(record: FixationRecord) -> str:
    """The record as a ``Fixation.txt`` line: id, w, h, disp w/h, disp x0/y0, (x, y, ms)* on screen."""
    shown_w, shown_h, x0, y0 = fit_to_screen(record.width, record.height)
    x = x0 + record.x * shown_w / record.width
    y = y0 + record.y * shown_h / record.height
    triples = ",".join(f"{a:.2f},{b:.2f},{d:g}" for a, b, d in zip(x, y, record.duration))
    return f"{record.image_id},{record.width},{record.height},{shown_w},{shown_h},{x0},{y0},{triples}"


def published_map(line: str, save_dir: str) -> None:
    """One all-fixation map as the published script makes it (§1.10 steps 1-7), for on-screen fixations.

    The lines of :func:`aggregate_line` put every fixation inside the displayed rectangle, so
    the published screen-edge branch (negative coordinates dropped, past-edge ones clipped;
    tests/published_cub_gha.py writes it out) never runs and one slice per fixation is its loop.
    """
    values = line.split(",")
    image_id = values[0]
    orig_w, orig_h, disp_w, disp_h, disp_x, disp_y = (int(v) for v in values[1:7])
    gaze = [(int(float(values[i])), int(float(values[i + 1])), float(values[i + 2]))
            for i in range(7, len(values), 3)]
    kernel = np.zeros((KERNEL_SIZE, KERNEL_SIZE))
    for j in range(KERNEL_SIZE):
        for i in range(KERNEL_SIZE):
            kernel[j, i] = math.exp(-((i - KERNEL_CENTRE) ** 2 + (j - KERNEL_CENTRE) ** 2) / (2 * KERNEL_SIGMA**2))
    canvas = np.zeros((SCREEN_HEIGHT + KERNEL_SIZE, SCREEN_WIDTH + KERNEL_SIZE))
    for gx, gy, duration in gaze:
        try:
            canvas[gy : gy + KERNEL_SIZE, gx : gx + KERNEL_SIZE] += duration * kernel
        except ValueError:  # cannot happen for on-screen fixations (see the docstring)
            pass
    screen = canvas[KERNEL_CENTRE : KERNEL_CENTRE + SCREEN_HEIGHT, KERNEL_CENTRE : KERNEL_CENTRE + SCREEN_WIDTH]
    shown = screen[disp_y : disp_y + disp_h, disp_x : disp_x + disp_w]
    shown = (shown - shown.min()) / (shown.max() - shown.min())
    grey = Image.fromarray(shown * 255).convert("L").resize((orig_w, orig_h))
    grey.save(os.path.join(save_dir, f"{image_id}.jpg"))


# --- measurements -----------------------------------------------------------------------------


def subset(records: dict[str, FixationRecord], count: int) -> list[FixationRecord]:
    """``count`` records evenly spread over the numeric ids."""
    ordered = [records[k] for k in sorted(records, key=int)]
    step = max(1, len(ordered) // max(count, 1))
    return ordered[::step][:count]


def time_subset(chosen: list[FixationRecord], root: Path) -> tuple[float, float]:
    """Seconds of the baseline and of the project (one process each) on the same images."""
    baseline_dir = root / "baseline"
    baseline_dir.mkdir()
    # The baseline reads the aggregate file: pooled >= 100 ms fixations in screen pixels.
    # build_gha applies the same filter itself, so it gets the raw records.
    lines = [aggregate_line(r.subset(r.duration >= ALL_MIN_DURATION_MS)) for r in chosen]
    warmup = root / "warmup"  # first calls (imports, library set-up) are not throughput
    warmup.mkdir()
    published_map(lines[0], str(warmup))
    build_gha(chosen[:1], warmup, BuildOptions(), workers=1)
    baseline = project = 0.0
    bounds = np.linspace(0, len(chosen), SLICES + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        begin = time.perf_counter()
        for line in lines[start:stop]:
            published_map(line, str(baseline_dir))
        baseline += time.perf_counter() - begin
        begin = time.perf_counter()
        build_gha(chosen[start:stop], root / "project", BuildOptions(), workers=1)
        project += time.perf_counter() - begin
        print(f"  slice {stop}/{len(chosen)}: baseline {baseline:.1f} s, project {project:.2f} s", flush=True)
    return baseline, project


def agreement(chosen: list[FixationRecord], root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per image: Pearson r and mean |difference| (grey levels) of the two 8-bit maps."""
    correlations, differences = [], []
    for record in chosen:
        ours = np.asarray(Image.open(root / "project" / ALL_DIR / f"{record.image_id}.jpg"), dtype=np.float64)
        theirs = np.asarray(Image.open(root / "baseline" / f"{record.image_id}.jpg"), dtype=np.float64)
        correlations.append(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
        differences.append(np.abs(ours - theirs).mean())
    return np.array(correlations), np.array(differences)


@dataclass
class Figures:
    """What one run measured."""

    subset_images: int
    baseline_s: float
    project_s: float
    correlations: np.ndarray
    differences: np.ndarray
    all_images: int
    read_s: float
    full_s: float | None
    workers: int


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    begin = time.perf_counter()
    records = merge_by_image(read_fixations(args.gaze_file_path).records)
    read_s = time.perf_counter() - begin
    print(f"read {len(records)} images' fixations in {read_s:.2f} s")
    chosen = subset(records, args.baseline_images)
    with tempfile.TemporaryDirectory(prefix="bench_heatmaps_") as folder:
        root = Path(folder)
        print(f"subset of {len(chosen)} images, baseline and project (1 process each), interleaved:")
        baseline_s, project_s = time_subset(chosen, root)
        correlations, differences = agreement(chosen, root)
        full_s = None
        if args.full:
            print(f"full build of {len(records)} maps with build_gha, {args.workers} workers ...", flush=True)
            full_s = build_gha(records.values(), root / "full", BuildOptions(), workers=args.workers).seconds
    print(f"load average at end: {os.getloadavg()[0]:.1f} (timings are noisy when above the core count)")
    report(Figures(len(chosen), baseline_s, project_s, correlations, differences, len(records), read_s,
                   full_s, args.workers))
    return 0


def report(f: Figures) -> None:
    """Print rates, ratios, the full-build time and the agreement of the maps."""
    baseline_rate, project_rate = f.subset_images / f.baseline_s, f.subset_images / f.project_s
    print()
    print(f"baseline (published algorithm, 1 process): {baseline_rate:8.1f} images/s "
          f"({1e3 / baseline_rate:.1f} ms/image)")
    print(f"project  (build_gha, 1 process)          : {project_rate:8.1f} images/s "
          f"({1e3 / project_rate:.2f} ms/image)")
    print(f"ratio, same subset, one process each     : {project_rate / baseline_rate:8.1f}x")
    if f.full_s is not None:
        full_rate = f.all_images / f.full_s
        print(f"project full build, {f.workers} workers           : {full_rate:8.1f} images/s")
        print(f"ratio, full build vs baseline            : {full_rate / baseline_rate:8.1f}x  "
              "(target >= 50x, aim 100x)")
        print(f"full build: {f.all_images} maps in {f.full_s:.1f} s (+ {f.read_s:.1f} s reading the run files = "
              f"{f.full_s + f.read_s:.1f} s; target < 60 s, aim < 30 s)")
    low = int((f.correlations < 0.99).sum())
    print(f"agreement on the subset (8-bit JPEGs): Pearson r mean {f.correlations.mean():.4f}, "
          f"min {f.correlations.min():.4f} ({low} below 0.99); mean |diff| {f.differences.mean():.2f} "
          f"grey levels (max {f.differences.max():.2f})")


if __name__ == "__main__":
    sys.exit(main())
