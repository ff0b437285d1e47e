"""Write the aggregate CUB-GHA ``Fixation.txt`` from the per-run files.

``python -m gaze merge [--gaze_file_path data_5runs] [--out Fixation.txt] [--min_duration 100]``

The CUB-GHA README describes its aggregate file as "all gaze data from five runs after
filtering <0.1 s"; that file is not public, so it is rebuilt as spec cub_pim.md §1.12
proposes: one line per image, the fixations of all runs pooled in run order 1 -> 5 (every
line of a run, repeats included, in file order, each in within-line order), fixations
shorter than 100 ms dropped (429,887 remain on the real data). The output uses the image
layout ``id,w,h,(x,y,ms)*`` with CRLF (:func:`gaze.attention.fixations.write_fixations`), not the
display layout of the original file; :func:`gaze.attention.fixations.read_fixations` reads both.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gaze.attention.fixations import (
    FixationRecord,
    filter_by_duration,
    list_fixation_files,
    merge_by_image,
    read_fixations,
    write_fixations,
)

#: Fixations shorter than this many ms are dropped (CUB-GHA README: "filtering <0.1 s").
MIN_DURATION_MS = 100.0


@dataclass(frozen=True)
class MergeSummary:
    """What a merge read and wrote."""

    files: int
    lines: int
    images: int
    kept: int
    dropped: int
    min_duration: float

    def __str__(self) -> str:
        return (
            f"{self.images:,} images, {self.kept:,} fixations kept, {self.dropped:,} dropped "
            f"(< {self.min_duration:g} ms), from {self.lines:,} lines in {self.files} run files"
        )


def image_order(image_ids: Sequence[str]) -> list[str]:
    """Ascending numeric order when every id is an integer, else first-seen order."""
    if all(_is_integer(i) for i in image_ids):
        return sorted(image_ids, key=int)
    return list(image_ids)


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def merge_runs(
    gaze_file_path: str | os.PathLike | Sequence[str | os.PathLike],
    min_duration: float = MIN_DURATION_MS,
) -> tuple[list[FixationRecord], MergeSummary]:
    """Pool the run files into one filtered record per image.

    Args:
        gaze_file_path: a folder of run files (read in natural name order, run1 .. run5),
            one file, or a list of files (pooled in the order given).
        min_duration: drop fixations shorter than this, in ms (0 keeps all).

    Returns:
        (records in :func:`image_order`, summary counts).
    """
    files = list_fixation_files(gaze_file_path)
    lines = read_fixations(files).records
    pooled = merge_by_image(lines)
    records = [filter_by_duration(pooled[i], min_duration) for i in image_order(list(pooled))]
    total = sum(len(r) for r in lines)
    kept = sum(len(r) for r in records)
    summary = MergeSummary(len(files), len(lines), len(records), kept, total - kept, min_duration)
    return records, summary


def write_merged(
    gaze_file_path: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    min_duration: float = MIN_DURATION_MS,
) -> MergeSummary:
    """Merge the run files (:func:`merge_runs`) and write ``out`` atomically."""
    _check_out_path(gaze_file_path, Path(out))
    records, summary = merge_runs(gaze_file_path, min_duration)
    write_fixations(records, out)
    return summary


def _check_out_path(gaze_file_path: object, out: Path) -> None:
    """Refuse to write a .txt into the runs folder, where it would be read as a run next time."""
    if isinstance(gaze_file_path, (str, os.PathLike)) and Path(gaze_file_path).is_dir():
        if out.suffix == ".txt" and out.resolve().parent == Path(gaze_file_path).resolve():
            raise ValueError(
                f"{out}: writing the aggregate into the run folder {gaze_file_path} would make "
                "it a run file of the next merge; choose another --out"
            )


def build_parser(prog: str = "python -m gaze merge") -> argparse.ArgumentParser:
    """Command-line options of ``python -m gaze merge``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaze_file_path", default="data_5runs", help="run files folder (default: %(default)s)")
    parser.add_argument("--out", default="Fixation.txt", help="aggregate file to write (default: %(default)s)")
    parser.add_argument(
        "--min_duration", type=float, default=MIN_DURATION_MS,
        help="drop fixations shorter than this many ms (default: %(default)g, CUB-GHA README)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the merge command; return 0 on success, 1 when the inputs cannot be used."""
    args = build_parser().parse_args(argv)
    try:
        summary = write_merged(args.gaze_file_path, args.out, args.min_duration)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
