"""Read eye-tracking fixation files into one record type, validate them and merge runs.

Two CUB-GHA layouts parse to the same :class:`FixationRecord` (DESIGN.md §2):

* **image layout** (``data_5runs/Fixation_run*.txt``, and the aggregate file written by
  :func:`write_fixations`): ``id, width, height, (x, y, ms)*`` with x, y in original-image
  pixels (spec cub_pim.md §1.11);
* **display layout** (the aggregate ``Fixation.txt`` of the CUB-GHA README):
  ``id, width, height, disp_w, disp_h, disp_x0, disp_y0, (x, y, ms)*`` with x, y in pixels
  of the 1920x1080 screen the image was shown on (spec cub_pim.md §1.10). The record keeps
  the display rectangle so the published rendering recipe can be applied exactly.

The two layouts are told apart by the number of fields modulo 3 (image: 0, display: 1),
so detection is unambiguous per line. Malformed lines raise :class:`FixationFormatError`
naming ``file:line``; with ``skip_bad_lines=True`` they are skipped and reported instead.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from gaze.atomic import atomic_write_bytes
from gaze.safe_paths import plain_name_problem

Layout = Literal["auto", "image", "display"]

#: Header fields before the (x, y, ms) triples, per layout.
HEADER_FIELDS = {"image": 3, "display": 7}
#: Screen the CUB-GHA recordings were made on (spec cub_pim.md §1.10).
SCREEN_WIDTH, SCREEN_HEIGHT = 1920, 1080


class FixationFormatError(ValueError):
    """A fixation file line that does not follow its layout; the message names file:line."""


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on one line of a fixation file; a line beyond them is a bad line (``file:line``).

    The real CUB-GHA lines hold at most 23 fixations (76 per image pooled), at most ~1.5 KB,
    of images at most 500 px wide; the bounds stop a corrupted or hostile file before it
    exhausts memory (a 200 MB line, a 40000x40000 image).

    Attributes:
        max_line_bytes: longest line, in bytes.
        max_fixations: most (x, y, ms) triples on one line.
        max_image_side: largest image width or height (and displayed size), in pixels.
    """

    max_line_bytes: int = 1_000_000
    max_fixations: int = 10_000
    max_image_side: int = 20_000


#: UTF-8 byte-order mark some editors put at the start of a text file.
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class DisplayRect:
    """Where an image was shown on the screen, in screen pixels (display layout only)."""

    width: int
    height: int
    x0: int
    y0: int


@dataclass(frozen=True, eq=False)
class FixationRecord:
    """All fixations of one scanpath (one line) or of one image (after :func:`merge_by_image`).

    Attributes:
        image_id: the dataset's image id as written in the file (CUB: ``images.txt`` index).
        width, height: original image size in pixels.
        x, y: (N,) float64 fixation positions in original-image pixels.
        duration: (N,) float64 fixation durations in milliseconds.
        run: (N,) int64 run (observer/session) index of each fixation; -1 where unknown.
        display: the displayed rectangle (display layout) or None.
        display_x, display_y: (N,) float64 screen positions (display layout) or None.
        source: ``"file:line"`` of every line the record was built from.
    """

    image_id: str
    width: int
    height: int
    x: np.ndarray
    y: np.ndarray
    duration: np.ndarray
    run: np.ndarray
    display: DisplayRect | None = None
    display_x: np.ndarray | None = None
    display_y: np.ndarray | None = None
    source: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, keep: np.ndarray) -> "FixationRecord":
        """Return the record restricted to fixations selected by a bool mask or index array."""
        return replace(
            self,
            x=self.x[keep],
            y=self.y[keep],
            duration=self.duration[keep],
            run=self.run[keep],
            display_x=None if self.display_x is None else self.display_x[keep],
            display_y=None if self.display_y is None else self.display_y[keep],
        )


@dataclass
class BadLine:
    """A line skipped by ``skip_bad_lines=True``: where it was and why."""

    location: str
    reason: str


@dataclass
class ParseResult:
    """Records read from one or more files, plus the lines that were skipped."""

    records: list[FixationRecord]
    skipped: list[BadLine] = field(default_factory=list)

    @property
    def num_fixations(self) -> int:
        return sum(len(r) for r in self.records)


def detect_layout(num_fields: int) -> Literal["image", "display"] | None:
    """Name the layout a line with ``num_fields`` comma-separated fields follows, or None."""
    if num_fields >= HEADER_FIELDS["display"] and num_fields % 3 == 1:
        return "display"
    if num_fields >= HEADER_FIELDS["image"] and num_fields % 3 == 0:
        return "image"
    return None


def _run_index(path: Path, position: int) -> int:
    """Run index of a file: the number in ``..run<N>..`` if present, else its 1-based position."""
    match = re.search(r"run[_-]?(\d+)", path.stem, flags=re.IGNORECASE)
    return int(match.group(1)) if match else position


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def display_to_image(
    display_x: np.ndarray, display_y: np.ndarray, display: DisplayRect, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Map screen pixels to original-image pixels through the displayed rectangle.

    ``x = (display_x - x0) * width / disp_w`` and likewise for y: the image of ``width``
    pixels was scaled to ``disp_w`` screen pixels and placed at ``x0`` (cub_pim.md §1.12).
    Points outside the rectangle map outside ``[0, width)``; nothing is clipped here.
    """
    x = (np.asarray(display_x, dtype=np.float64) - display.x0) * (width / display.width)
    y = (np.asarray(display_y, dtype=np.float64) - display.y0) * (height / display.height)
    return x, y


def _read_lines(path: Path, max_line_bytes: int) -> tuple[list[str], dict[int, int]]:
    """The file's lines (CRLF or LF) without trailing blank lines; non-ASCII is an error.

    Read with a bounded ``readline``, so a line longer than ``max_line_bytes`` is never held
    in memory: it is skipped to its end and reported (an empty string in the list, its
    length in the returned dict). A UTF-8 byte-order mark at the very start is dropped
    (Windows editors write one). Only LF (with an optional CR before it) ends a line:
    ``str.splitlines`` would also split at form feeds and shift the line numbers.

    Returns:
        The lines, and {0-based line index: length in bytes} of the over-long ones.
    """
    lines: list[str] = []
    too_long: dict[int, int] = {}
    with open(path, "rb") as file:
        while chunk := file.readline(max_line_bytes + 3):  # a line of max_line_bytes + CR LF, and one more
            if not lines and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM):]
            length = len(chunk)
            while chunk and not chunk.endswith(b"\n") and length > max_line_bytes + 2:  # skip the rest unread
                chunk = file.readline(1 << 20)
                length += len(chunk)
            length -= chunk.endswith(b"\n") + chunk.endswith(b"\r\n")
            if length > max_line_bytes:
                too_long[len(lines)] = length
                lines.append("")
                continue
            try:
                text = chunk.decode("ascii")
            except UnicodeDecodeError:
                raise FixationFormatError(f"{path}:{len(lines) + 1}: non-ASCII byte; not a fixation file") from None
            text = text[:-1] if text.endswith("\n") else text
            lines.append(text[:-1] if text.endswith("\r") else text)
    while lines and not lines[-1].strip() and len(lines) - 1 not in too_long:
        lines.pop()
    return lines, too_long


def _detect_file_layout(
    path: Path, counts: np.ndarray, blank: np.ndarray, skip_bad_lines: bool
) -> Literal["image", "display"]:
    """The layout of the first non-blank line (of the first line that fits one, when skipping)."""
    candidates = np.flatnonzero(~blank)
    if len(candidates) == 0:
        return "image"
    for index in candidates if skip_bad_lines else candidates[:1]:
        detected = detect_layout(int(counts[index]))
        if detected is not None:
            return detected
    first = int(candidates[0])
    raise FixationFormatError(
        f"{path}:{first + 1}: {counts[first]} fields fit neither the image layout "
        "(3 + 3k: id,w,h,(x,y,ms)*) nor the display layout "
        "(7 + 3k: id,w,h,disp_w,disp_h,disp_x,disp_y,(x,y,ms)*)"
    )


def _layout_problem(num_fields: int, layout: str) -> str:
    if layout == "image":
        expected = "3 + 3k fields (id, width, height, then x, y, ms triples)"
    else:
        expected = "7 + 3k fields (id, width, height, disp_w, disp_h, disp_x, disp_y, then x, y, ms triples)"
    return f"{num_fields} fields; the {layout} layout needs {expected}"


def read_fixation_file(
    path: str | os.PathLike,
    layout: Layout = "auto",
    skip_bad_lines: bool = False,
    run: int | None = None,
    limits: ReadLimits = ReadLimits(),
) -> ParseResult:
    """Read one fixation file (CRLF or LF) into records, one per line.

    The whole file is converted to numbers in one vectorised pass; every check (field
    count, numbers, finite values, positive whole image size, positive displayed size,
    non-negative durations, empty lines, plain image ids, the ``limits``) is done per line
    on those arrays; over-long lines are rejected before they are split.

    Args:
        path: the text file.
        layout: ``"image"``, ``"display"``, or ``"auto"`` to detect it from the first
            non-blank line (with ``skip_bad_lines``, the first line that fits a layout).
        skip_bad_lines: skip malformed lines (reported in ``ParseResult.skipped``) instead
            of raising :class:`FixationFormatError` for the first one.
        run: run index stored with every fixation; default from the file name
            (``Fixation_run3.txt`` -> 3) or -1.
        limits: bounds on line length, fixations per line and image size.

    Returns:
        ParseResult with the records in file order.
    """
    path = Path(path)
    run = _run_index(path, position=-1) if run is None else run
    lines, lengths = _read_lines(path, limits.max_line_bytes)
    too_long = np.zeros(len(lines), dtype=bool)
    too_long[list(lengths)] = True
    counts = np.array([line.count(",") + 1 for line in lines], dtype=np.int64)
    blank = np.array([not line.strip() for line in lines], dtype=bool) & ~too_long
    problems: dict[int, str] = {
        index: f"line of {length:,} bytes exceeds max_line_bytes={limits.max_line_bytes:,}"
        for index, length in lengths.items()}
    if layout == "auto":
        layout = _detect_file_layout(path, counts, blank | too_long, skip_bad_lines)
    header = HEADER_FIELDS[layout]
    problems.update({int(i): "empty line" for i in np.flatnonzero(blank)})
    wrong_count = ~blank & ~too_long & ((counts < header) | ((counts - header) % 3 != 0))
    problems.update({int(i): _layout_problem(int(counts[i]), layout) for i in np.flatnonzero(wrong_count)})
    too_many = ~blank & ~too_long & ~wrong_count & ((counts - header) // 3 > limits.max_fixations)
    problems.update({int(i): f"{(counts[i] - header) // 3:,} fixations exceed max_fixations={limits.max_fixations:,}"
                     for i in np.flatnonzero(too_many)})
    candidates = np.flatnonzero(~blank & ~too_long & ~wrong_count & ~too_many)
    records = _parse_lines(path, lines, candidates, counts[candidates], layout, run, problems, limits)
    skipped = [BadLine(f"{path}:{i + 1}", problems[i]) for i in sorted(problems)]
    if skipped and not skip_bad_lines:
        raise FixationFormatError(f"{skipped[0].location}: {skipped[0].reason}")
    return ParseResult(records=records, skipped=skipped)


def _parse_lines(
    path: Path,
    lines: list[str],
    line_index: np.ndarray,
    counts: np.ndarray,
    layout: Literal["image", "display"],
    run: int,
    problems: dict[int, str],
    limits: ReadLimits,
) -> list[FixationRecord]:
    """Vectorised parse of well-shaped lines; adds bad lines to ``problems``, returns the rest."""
    if len(line_index) == 0:
        return []
    fields = ",".join(lines[i] for i in line_index).split(",")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ids = [fields[s].strip() for s in starts]
    for s in starts:
        fields[s] = "0"
    bad = np.zeros(len(line_index), dtype=bool)
    try:
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        numeric = np.array([_is_number(f) for f in fields], dtype=bool)
        owner = np.repeat(np.arange(len(line_index)), counts)
        for k in np.unique(owner[~numeric]):
            field_text = fields[np.flatnonzero(~numeric & (owner == k))[0]].strip()
            problems[int(line_index[k])] = f"field {field_text!r} is not a number"
            bad[k] = True
        values = np.array([f if ok else "nan" for f, ok in zip(fields, numeric)], dtype=np.float64)
    checks = _line_checks(values, starts, counts, layout, limits)
    checks.insert(0, ("empty image id", np.array([not i for i in ids], dtype=bool)))
    for reason, failed in checks:
        for k in np.flatnonzero(failed & ~bad):
            problems[int(line_index[k])] = reason
        bad |= failed
    for k in np.flatnonzero(~bad):  # an id names output files (<id>.jpg): never a path
        problem = plain_name_problem(ids[k])
        if problem is not None:
            problems[int(line_index[k])] = f"image id {problem}; ids name output files and must be plain names"
            bad[k] = True
    good = np.flatnonzero(~bad)
    return _build_records(path, values, starts[good], counts[good], line_index[good], [ids[k] for k in good], layout, run)


def _line_checks(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, layout: str, limits: ReadLimits
) -> list[tuple[str, np.ndarray]]:
    """Per-line (reason, failed mask) for the value checks of a layout."""
    header = HEADER_FIELDS[layout]
    position = np.arange(len(values)) - np.repeat(starts, counts)
    is_duration = (position >= header) & ((position - header) % 3 == 2)
    width, height = values[starts + 1], values[starts + 2]
    side = limits.max_image_side
    checks = [
        ("non-finite number (nan/inf)", np.logical_or.reduceat(~np.isfinite(values), starts)),
        (
            "image size must be positive whole pixels",
            (width <= 0) | (height <= 0) | (width != np.floor(width)) | (height != np.floor(height)),
        ),
        (f"image size exceeds max_image_side={side:,} px", (width > side) | (height > side)),
        ("negative fixation duration", np.logical_or.reduceat(is_duration & (values < 0), starts)),
    ]
    if layout == "display":
        geometry = values[starts[:, None] + np.arange(3, 7)]  # disp_w, disp_h, disp_x, disp_y
        checks.append(
            ("displayed size must be positive", (geometry[:, 0] <= 0) | (geometry[:, 1] <= 0))
        )
        checks.append(
            (f"displayed size exceeds max_image_side={side:,} px", (geometry[:, :2] > side).any(1))
        )
        # The published script slices the screen with these numbers: they are whole pixels.
        checks.append(
            ("displayed rectangle must be whole pixels", (geometry != np.floor(geometry)).any(1))
        )
    return checks


def _build_records(
    path: Path,
    values: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    line_index: np.ndarray,
    ids: list[str],
    layout: Literal["image", "display"],
    run: int,
) -> list[FixationRecord]:
    """Slice the checked value array into one record per line (arrays are views)."""
    header = HEADER_FIELDS[layout]
    num_fixations = (counts - header) // 3
    triple_starts = np.repeat(starts + header, num_fixations)
    within = np.arange(num_fixations.sum()) - np.repeat(np.cumsum(num_fixations) - num_fixations, num_fixations)
    first = triple_starts + 3 * within  # index of each fixation's x
    xs, ys, durations = values[first], values[first + 1], values[first + 2]
    runs = np.full(len(first), run, dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(num_fixations)])
    widths = values[starts + 1].astype(np.int64)
    heights = values[starts + 2].astype(np.int64)
    records = []
    for k, image_id in enumerate(ids):
        part = slice(bounds[k], bounds[k + 1])
        record = FixationRecord(
            image_id=image_id,
            width=int(widths[k]),
            height=int(heights[k]),
            x=xs[part],
            y=ys[part],
            duration=durations[part],
            run=runs[part],
            source=(f"{path}:{line_index[k] + 1}",),
        )
        if layout == "display":
            record = _with_display(record, values[starts[k] + 3 : starts[k] + 7])
        records.append(record)
    return records


def _with_display(record: FixationRecord, geometry: np.ndarray) -> FixationRecord:
    """Attach the displayed rectangle and convert screen positions to image pixels."""
    display = DisplayRect(*(int(v) for v in geometry))
    x, y = display_to_image(record.x, record.y, display, record.width, record.height)
    return replace(record, x=x, y=y, display=display, display_x=record.x, display_y=record.y)


def list_fixation_files(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a file, a folder (its ``*.txt`` files, naturally sorted) or a list of both."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found = sorted(item.glob("*.txt"), key=_natural_key)
            if not found:
                raise FileNotFoundError(f"{item}: folder holds no *.txt fixation files")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such fixation file or folder")
    return files


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_fixations(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    layout: Layout = "auto",
    skip_bad_lines: bool = False,
    limits: ReadLimits = ReadLimits(),
) -> ParseResult:
    """Read one file, several files, or a folder of run files; check sizes agree per image.

    Each file's fixations carry its run index (from ``run<N>`` in the name, else the file's
    1-based position). An image id seen with two different sizes raises
    :class:`FixationFormatError` naming both lines (or skips the later line).
    """
    files = list_fixation_files(path)
    result = ParseResult(records=[])
    for position, file in enumerate(files, start=1):
        part = read_fixation_file(
            file, layout, skip_bad_lines, run=_run_index(file, position), limits=limits
        )
        result.records.extend(part.records)
        result.skipped.extend(part.skipped)
    result.records = _check_sizes(result.records, result.skipped, skip_bad_lines)
    return result


def _check_sizes(
    records: list[FixationRecord], skipped: list[BadLine], skip_bad_lines: bool
) -> list[FixationRecord]:
    """Keep records whose image size agrees with the first line seen for their id."""
    first: dict[str, FixationRecord] = {}
    kept = []
    for record in records:
        seen = first.setdefault(record.image_id, record)
        if (seen.width, seen.height) != (record.width, record.height):
            message = (
                f"{record.source[0]}: image {record.image_id} is {record.width}x{record.height} "
                f"here but {seen.width}x{seen.height} at {seen.source[0]}"
            )
            if not skip_bad_lines:
                raise FixationFormatError(message)
            skipped.append(BadLine(record.source[0], message.split(": ", 1)[1]))
            continue
        kept.append(record)
    return kept


def merge_by_image(records: Iterable[FixationRecord]) -> dict[str, FixationRecord]:
    """Pool every line of each image into one record (input order kept, run index kept).

    Lines must agree on the image size (checked by :func:`read_fixations`). The display
    rectangle of the first line is kept; display positions are kept only when every line
    of the image was shown in the same rectangle.
    """
    groups: dict[str, list[FixationRecord]] = defaultdict(list)
    for record in records:
        groups[record.image_id].append(record)
    return {image_id: _concatenate(lines) for image_id, lines in groups.items()}


def _concatenate(lines: list[FixationRecord]) -> FixationRecord:
    if len(lines) == 1:
        return lines[0]
    first = lines[0]
    same_display = first.display is not None and all(r.display == first.display for r in lines)
    return FixationRecord(
        image_id=first.image_id,
        width=first.width,
        height=first.height,
        x=np.concatenate([r.x for r in lines]),
        y=np.concatenate([r.y for r in lines]),
        duration=np.concatenate([r.duration for r in lines]),
        run=np.concatenate([r.run for r in lines]),
        display=first.display if same_display else None,
        display_x=np.concatenate([r.display_x for r in lines]) if same_display else None,
        display_y=np.concatenate([r.display_y for r in lines]) if same_display else None,
        source=tuple(s for r in lines for s in r.source),
    )


def filter_by_duration(record: FixationRecord, min_ms: float) -> FixationRecord:
    """Drop fixations shorter than ``min_ms`` milliseconds (CUB-GHA README: 100 ms)."""
    return record.subset(record.duration >= min_ms)


def merge_nearest(record: FixationRecord, max_fixations: int = 7, compat: bool = False) -> FixationRecord:
    """Merge the closest pair of fixations until at most ``max_fixations`` remain.

    The single-fixation recipe of CUB-GHA (cub_pim.md §1.10, ``aggregate_gaze_points``):
    find the pair (i, j), i < j, at the smallest Euclidean distance (first in row-major order
    on ties), move i to the pair's midpoint (x, y and duration), delete j.

    Distances and midpoints are taken in screen pixels when the record has them (the
    display layout, as the published script does) and in image pixels otherwise; image
    positions of a display record follow from the merged screen positions.

    Args:
        record: fixations of one image.
        max_fixations: N of the recipe (7 in the published script).
        compat: reproduce the published script exactly: integer (floored) midpoints; every
            zero of the full distance matrix, its diagonal included, is replaced by the
            matrix maximum, so two fixations at the same pixel are never the closest pair;
            the first minimum of the full matrix is taken (which is the diagonal when all
            non-zero distances are equal); and j is removed by value (the first fixation
            equal to it in x, y and duration). The default uses exact midpoints and merges
            coincident fixations first, which is what the recipe means.
    """
    if max_fixations < 1:
        raise ValueError(f"max_fixations must be >= 1, got {max_fixations}")
    on_screen = record.display_x is not None and record.display is not None
    x = (record.display_x if on_screen else record.x).astype(np.float64)  # copies
    y = (record.display_y if on_screen else record.y).astype(np.float64)
    duration = record.duration.astype(np.float64)
    keep = np.ones(len(x), dtype=bool)
    while keep.sum() > max_fixations:
        alive = np.flatnonzero(keep)
        distances = np.hypot(x[alive, None] - x[alive], y[alive, None] - y[alive])
        if compat:
            distances[distances == 0] = distances.max()
        else:
            distances[np.tril_indices(len(alive))] = np.inf
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        i, j = alive[i], alive[j]
        for values in (x, y, duration):
            midpoint = (values[i] + values[j]) / 2
            values[i] = math.floor(midpoint) if compat else midpoint
        if compat:  # list.remove(points[j]): the first point equal to j goes
            equal = (x[alive] == x[j]) & (y[alive] == y[j]) & (duration[alive] == duration[j])
            j = alive[np.argmax(equal)]
        keep[j] = False
    if on_screen:
        image_x, image_y = display_to_image(x, y, record.display, record.width, record.height)
        merged = replace(record, x=image_x, y=image_y, duration=duration, display_x=x, display_y=y)
    else:
        merged = replace(record, x=x, y=y, duration=duration)
    return merged.subset(keep)


def write_fixations(records: Iterable[FixationRecord], path: str | os.PathLike) -> int:
    """Write records in the image layout (``id,w,h,(x,y,ms)*``, CRLF), atomically.

    Values are written with up to 10 significant digits and without trailing zeros, so
    integer data (the CUB-GHA runs) round-trips byte-for-byte. Returns the lines written.
    """
    path = Path(path)
    lines = []
    for record in records:
        triples = np.stack([record.x, record.y, record.duration], axis=1).ravel()
        numbers = ",".join(f"{v:.10g}" for v in triples)
        header = f"{record.image_id},{record.width},{record.height}"
        lines.append(f"{header},{numbers}" if numbers else header)
    atomic_write_bytes(path, ("\r\n".join(lines) + "\r\n").encode("ascii"))
    return len(lines)
