"""Tests for gaze/attention/fixations.py: both layouts, errors with file:line, writing, merging runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gaze.attention.fixations import (
    DisplayRect,
    FixationFormatError,
    FixationRecord,
    ReadLimits,
    detect_layout,
    display_to_image,
    filter_by_duration,
    list_fixation_files,
    merge_by_image,
    merge_nearest,
    read_fixation_file,
    read_fixations,
    write_fixations,
)

# Three image-layout lines (id, w, h, (x, y, ms)*) with known values.
IMAGE_LINES = [
    "1,500,375,10,20,300,499,374,150",
    "2,400,300,0,0,60",
    "3,320,240",
]


def write_lines(path: Path, lines: list[str], newline: str = "\r\n", trailing: bool = True) -> Path:
    """Write text lines with the given line ending; ``trailing`` ends the last line too."""
    text = newline.join(lines) + (newline if trailing else "")
    path.write_bytes(text.encode("ascii"))
    return path


def make_record(x, y, duration, image_id="7", width=100, height=80, run=None) -> FixationRecord:
    """An image-layout record built directly from arrays."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    return FixationRecord(
        image_id=image_id,
        width=width,
        height=height,
        x=x,
        y=np.asarray(y, dtype=np.float64),
        duration=np.asarray(duration, dtype=np.float64),
        run=np.full(n, -1, dtype=np.int64) if run is None else np.asarray(run, dtype=np.int64),
    )


def assert_record(record: FixationRecord, image_id, size, x, y, duration) -> None:
    assert record.image_id == image_id
    assert (record.width, record.height) == size
    np.testing.assert_array_equal(record.x, x)
    np.testing.assert_array_equal(record.y, y)
    np.testing.assert_array_equal(record.duration, duration)
    assert record.x.dtype == np.float64 and record.run.dtype == np.int64


# --- image layout ------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
@pytest.mark.parametrize("trailing", [True, False])
def test_image_layout_parses_values(tmp_path, newline, trailing):
    path = write_lines(tmp_path / "gaze.txt", IMAGE_LINES, newline, trailing)
    result = read_fixation_file(path)
    assert result.skipped == []
    assert len(result.records) == 3 and result.num_fixations == 3
    first, second, third = result.records
    assert_record(first, "1", (500, 375), [10, 499], [20, 374], [300, 150])
    assert_record(second, "2", (400, 300), [0], [0], [60])
    assert_record(third, "3", (320, 240), [], [], [])
    assert first.display is None and first.display_x is None
    assert [r.source for r in result.records] == [(f"{path}:{k}",) for k in (1, 2, 3)]
    np.testing.assert_array_equal(first.run, [-1, -1])  # no run<N> in the name


def test_crlf_and_lf_files_give_the_same_records(tmp_path):
    crlf = read_fixation_file(write_lines(tmp_path / "a.txt", IMAGE_LINES, "\r\n")).records
    lf = read_fixation_file(write_lines(tmp_path / "b.txt", IMAGE_LINES, "\n")).records
    for one, other in zip(crlf, lf, strict=True):
        assert_record(other, one.image_id, (one.width, one.height), one.x, one.y, one.duration)


def test_trailing_blank_lines_are_fine(tmp_path):
    path = write_lines(tmp_path / "gaze.txt", IMAGE_LINES + ["", "  ", ""])
    result = read_fixation_file(path)
    assert len(result.records) == 3 and result.skipped == []


def test_empty_file_gives_no_records(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    result = read_fixation_file(path)
    assert result.records == [] and result.skipped == []


# --- display layout -----------------------------------------------------------------------


def test_display_layout_maps_screen_to_image_pixels(tmp_path):
    # A 500x375 image shown as 1000x750 at (460, 165): the scale is 2 on both axes.
    lines = ["5,500,375,1000,750,460,165,960,540,400,460,165,120,1459,914,80"]
    record = read_fixation_file(write_lines(tmp_path / "Fixation.txt", lines)).records[0]
    assert record.display == DisplayRect(width=1000, height=750, x0=460, y0=165)
    np.testing.assert_allclose(record.x, [250.0, 0.0, 499.5])
    np.testing.assert_allclose(record.y, [187.5, 0.0, 374.5])
    np.testing.assert_array_equal(record.duration, [400, 120, 80])
    np.testing.assert_array_equal(record.display_x, [960, 460, 1459])
    np.testing.assert_array_equal(record.display_y, [540, 165, 914])
    assert (record.width, record.height) == (500, 375)


def test_display_to_image_does_not_clip():
    rect = DisplayRect(width=800, height=600, x0=100, y0=50)
    x, y = display_to_image(np.array([0.0, 900.0]), np.array([0.0, 650.0]), rect, 400, 300)
    np.testing.assert_allclose(x, [-50.0, 400.0])
    np.testing.assert_allclose(y, [-25.0, 300.0])


@pytest.mark.parametrize(
    "num_fields, layout",
    [(3, "image"), (6, "image"), (9, "image"), (7, "display"), (10, "display"),
     (1, None), (2, None), (4, None), (5, None), (8, None), (11, None)],
)
def test_detect_layout_by_field_count(num_fields, layout):
    assert detect_layout(num_fields) == layout


def test_auto_detection_picks_each_layout(tmp_path):
    image = write_lines(tmp_path / "image.txt", IMAGE_LINES)
    display = write_lines(tmp_path / "display.txt", ["5,500,375,1000,750,460,165,960,540,400"])
    assert read_fixation_file(image).records[0].display is None
    assert read_fixation_file(display).records[0].display is not None
    # Forcing the other layout makes every line a wrong field count.
    with pytest.raises(FixationFormatError, match=r"image\.txt:1: 9 fields; the display layout"):
        read_fixation_file(image, layout="display")
    with pytest.raises(FixationFormatError, match=r"display\.txt:1: 10 fields; the image layout"):
        read_fixation_file(display, layout="image")


def test_auto_detection_with_a_bad_first_line(tmp_path):
    path = write_lines(tmp_path / "gaze.txt", ["1,500,375,10"] + IMAGE_LINES)
    with pytest.raises(FixationFormatError, match=r"gaze\.txt:1: 4 fields fit neither"):
        read_fixation_file(path)
    result = read_fixation_file(path, skip_bad_lines=True)
    assert [r.image_id for r in result.records] == ["1", "2", "3"]
    assert [s.location for s in result.skipped] == [f"{path}:1"]


# --- files, folders and runs --------------------------------------------------------------


def test_run_index_from_file_name_and_position(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    write_lines(folder / "Fixation_run10.txt", ["1,500,375,1,2,100"])
    write_lines(folder / "Fixation_run2.txt", ["1,500,375,3,4,200"])
    (folder / "notes.md").write_text("not a fixation file")
    files = list_fixation_files(folder)
    assert [f.name for f in files] == ["Fixation_run2.txt", "Fixation_run10.txt"]  # natural order
    records = read_fixations(folder).records
    assert [int(r.run[0]) for r in records] == [2, 10]
    assert read_fixation_file(folder / "Fixation_run10.txt").records[0].run.tolist() == [10]
    assert read_fixation_file(folder / "Fixation_run10.txt", run=4).records[0].run.tolist() == [4]


def test_several_files_without_run_in_name_use_their_position(tmp_path):
    a = write_lines(tmp_path / "a.txt", ["1,500,375,1,2,100"])
    b = write_lines(tmp_path / "b.txt", ["1,500,375,3,4,200", "2,10,10,5,5,50"])
    result = read_fixations([b, a])
    assert [(r.image_id, int(r.run[0])) for r in result.records] == [("1", 1), ("2", 1), ("1", 2)]
    assert read_fixations(a).records[0].run.tolist() == [1]  # one file: position 1


def test_merge_by_image_pools_lines_and_keeps_runs(tmp_path):
    run1 = ["1,500,375,1,2,100,3,4,110", "2,40,30,5,6,120", "1,500,375,7,8,130"]
    write_lines(tmp_path / "Fixation_run1.txt", run1)
    write_lines(tmp_path / "Fixation_run2.txt", ["2,40,30,9,10,140", "1,500,375,11,12,150"])
    merged = merge_by_image(read_fixations(tmp_path).records)
    assert list(merged) == ["1", "2"]
    one, two = merged["1"], merged["2"]
    assert_record(one, "1", (500, 375), [1, 3, 7, 11], [2, 4, 8, 12], [100, 110, 130, 150])
    np.testing.assert_array_equal(one.run, [1, 1, 1, 2])
    assert_record(two, "2", (40, 30), [5, 9], [6, 10], [120, 140])
    np.testing.assert_array_equal(two.run, [1, 2])
    assert len(one.source) == 3 and one.source[-1].endswith("Fixation_run2.txt:2")


def test_merge_by_image_keeps_display_only_when_rectangles_agree(tmp_path):
    lines = [
        "5,500,375,1000,750,460,165,960,540,400",
        "5,500,375,1000,750,460,165,460,165,100",
        "6,500,375,1000,750,460,165,960,540,400",
        "6,500,375,500,375,0,0,250,100,100",
    ]
    merged = merge_by_image(read_fixation_file(write_lines(tmp_path / "d.txt", lines)).records)
    assert merged["5"].display == DisplayRect(1000, 750, 460, 165)
    np.testing.assert_array_equal(merged["5"].display_x, [960, 460])
    assert merged["6"].display is None and merged["6"].display_x is None
    np.testing.assert_allclose(merged["6"].x, [250, 250])  # image pixels of both lines


def test_missing_file_or_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such fixation file or folder"):
        read_fixations(tmp_path / "absent.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no"):
        read_fixations(empty)
    with pytest.raises(FileNotFoundError):
        read_fixation_file(tmp_path / "absent.txt")


# --- malformed lines ----------------------------------------------------------------------

BAD_LINES = {
    "wrong field count": ("9,500,375,1,2", "5 fields; the image layout needs"),
    "not a number": ("9,500,375,1,abc,100", "'abc' is not a number"),
    "nan": ("9,500,375,1,nan,100", "non-finite"),
    "inf": ("9,500,375,inf,2,100", "non-finite"),
    "negative size": ("9,-500,375,1,2,100", "positive whole pixels"),
    "zero size": ("9,500,0,1,2,100", "positive whole pixels"),
    "fractional size": ("9,500.5,375,1,2,100", "positive whole pixels"),
    "negative duration": ("9,500,375,1,2,-100", "negative fixation duration"),
    "empty line": ("", "empty line"),
    "blank line": ("   ", "empty line"),
    "empty id": (",500,375,1,2,100", "empty image id"),
}


@pytest.mark.parametrize("bad, reason", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_line_raises_with_file_and_line(tmp_path, bad, reason):
    path = write_lines(tmp_path / "gaze.txt", [IMAGE_LINES[0], IMAGE_LINES[1], bad, IMAGE_LINES[2]])
    with pytest.raises(FixationFormatError, match=rf"gaze\.txt:3: .*{reason}"):
        read_fixation_file(path)
    result = read_fixation_file(path, skip_bad_lines=True)
    assert [r.image_id for r in result.records] == ["1", "2", "3"]
    assert len(result.skipped) == 1
    assert result.skipped[0].location == f"{path}:3" and reason in result.skipped[0].reason
    assert_record(result.records[0], "1", (500, 375), [10, 499], [20, 374], [300, 150])


BAD_DISPLAY_LINES = {
    "zero displayed width": ("5,500,375,0,750,460,165,960,540,400", "displayed size must be positive"),
    "fractional offset": ("5,500,375,1000,750,460.5,165,960,540,400", "whole pixels"),
    "missing field": ("5,500,375,1000,750,460,165,960,540", "9 fields; the display layout needs"),
}


@pytest.mark.parametrize("bad, reason", BAD_DISPLAY_LINES.values(), ids=BAD_DISPLAY_LINES.keys())
def test_bad_display_line(tmp_path, bad, reason):
    good = "5,500,375,1000,750,460,165,960,540,400"
    path = write_lines(tmp_path / "Fixation.txt", [good, bad])
    with pytest.raises(FixationFormatError, match=rf"Fixation\.txt:2: .*{reason}"):
        read_fixation_file(path)
    result = read_fixation_file(path, skip_bad_lines=True)
    assert len(result.records) == 1 and result.skipped[0].location == f"{path}:2"


def test_several_bad_lines_are_all_counted(tmp_path):
    lines = ["x,1", IMAGE_LINES[0], "9,500,375,1,2,-5", "", IMAGE_LINES[1], "9,5,5,a,b,c"]
    path = write_lines(tmp_path / "gaze.txt", lines)
    with pytest.raises(FixationFormatError, match=r"gaze\.txt:1: "):  # the first bad line
        read_fixation_file(path, layout="image")
    result = read_fixation_file(path, layout="image", skip_bad_lines=True)
    assert [s.location.rsplit(":", 1)[1] for s in result.skipped] == ["1", "3", "4", "6"]
    assert [r.image_id for r in result.records] == ["1", "2"]


def test_non_ascii_byte_names_its_line(tmp_path):
    path = tmp_path / "gaze.txt"
    path.write_bytes(b"1,500,375,1,2,100\r\n2,500,375,1,2,100\r\n3,500,375,\xc3\xa9,2,100\r\n")
    with pytest.raises(FixationFormatError, match=r"gaze\.txt:3: non-ASCII"):
        read_fixation_file(path)


def test_line_numbers_count_only_line_feeds(tmp_path):
    # A form feed is ASCII but no line break: the bad line is still line 3.
    path = write_lines(tmp_path / "gaze.txt", ["1,500,375,1,2,100\x0c", IMAGE_LINES[1], "9,500,375,1,2"])
    with pytest.raises(FixationFormatError, match=r"gaze\.txt:3: 5 fields"):
        read_fixation_file(path)


def test_duplicate_id_with_another_size_names_both_lines(tmp_path):
    write_lines(tmp_path / "Fixation_run1.txt", ["1,500,375,1,2,100", "2,40,30,1,2,100"])
    write_lines(tmp_path / "Fixation_run2.txt", ["2,40,30,3,4,100", "1,375,500,1,2,100"])
    first = f"{tmp_path / 'Fixation_run1.txt'}:1"
    second = f"{tmp_path / 'Fixation_run2.txt'}:2"
    with pytest.raises(FixationFormatError) as error:
        read_fixations(tmp_path)
    message = str(error.value)
    assert message.startswith(second) and first in message
    assert "375x500 here but 500x375" in message
    result = read_fixations(tmp_path, skip_bad_lines=True)
    assert [(r.image_id, int(r.run[0])) for r in result.records] == [("1", 1), ("2", 1), ("2", 2)]
    assert [s.location for s in result.skipped] == [second]


def test_duplicate_id_with_the_same_size_is_kept(tmp_path):
    path = write_lines(tmp_path / "gaze.txt", ["1,500,375,1,2,100", "1,500,375,3,4,200"])
    records = read_fixations(path).records
    assert len(records) == 2 and merge_by_image(records)["1"].x.tolist() == [1.0, 3.0]


# --- writing -------------------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path):
    records = [
        make_record([10.5, 0, 499.25], [20.125, 7, 1], [300, 60, 9363], image_id="12", width=500, height=375),
        make_record([], [], [], image_id="13", width=40, height=30),
        make_record([1e-3, 123456.75], [2.0, 3.0], [0.5, 1], image_id="abc"),
    ]
    path = tmp_path / "out" / "Fixation.txt"
    assert write_fixations(records, path) == 3
    expected_start = b"12,500,375,10.5,20.125,300,0,7,60,499.25,1,9363\r\n13,40,30\r\n"
    assert path.read_bytes().startswith(expected_start)
    back = read_fixation_file(path).records
    for written, read in zip(records, back, strict=True):
        size = (written.width, written.height)
        assert_record(read, written.image_id, size, written.x, written.y, written.duration)
    assert [p.name for p in path.parent.iterdir()] == ["Fixation.txt"]  # no temp file left


def test_write_display_records_in_image_layout(tmp_path):
    path = write_lines(tmp_path / "Fixation.txt", ["5,500,375,1000,750,460,165,960,540,400"])
    out = tmp_path / "image.txt"
    write_fixations(read_fixation_file(path).records, out)
    assert out.read_bytes() == b"5,500,375,250,187.5,400\r\n"


# --- duration filter and merging of nearest fixations ---------------------------------------


def test_filter_by_duration_keeps_at_least_the_threshold():
    record = make_record([1, 2, 3, 4], [5, 6, 7, 8], [99, 100, 350, 20], run=[1, 2, 3, 4])
    kept = filter_by_duration(record, 100)
    assert_record(kept, "7", (100, 80), [2, 3], [6, 7], [100, 350])
    np.testing.assert_array_equal(kept.run, [2, 3])
    assert len(filter_by_duration(record, 351)) == 0 and len(record) == 4


def brute_force_merge(x, y, duration, max_fixations, compat):
    """The recipe of cub_pim.md §1.10 with plain lists, written independently of the module.

    Default: closest pair i < j (first in row-major order), i moves to the exact midpoint,
    j is deleted. Compat: the published loop: full distance matrix with every zero (the
    diagonal too) replaced by the maximum, first argmin, integer midpoints, and
    ``points.remove(points[j])``.
    """
    points = [[float(a), float(b), float(c)] for a, b, c in zip(x, y, duration)]
    while len(points) > max_fixations:
        n = len(points)
        matrix = [[float(np.hypot(p[0] - q[0], p[1] - q[1])) for q in points] for p in points]
        if compat:
            largest = max(max(row) for row in matrix)
            matrix = [[largest if d == 0 else d for d in row] for row in matrix]
            pairs = [(i, j) for i in range(n) for j in range(n)]
        else:
            pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        i, j = min(pairs, key=lambda pair: matrix[pair[0]][pair[1]])  # first minimum
        middle = [(a + b) / 2 for a, b in zip(points[i], points[j])]
        points[i] = [math.floor(v) for v in middle] if compat else middle
        if compat:
            points.remove(points[j])
        else:
            del points[j]
    return np.array(points, dtype=np.float64).reshape(-1, 3)


@pytest.mark.parametrize("compat", [False, True])
def test_merge_nearest_matches_brute_force(compat):
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 16))
        spread = 6 if trial % 2 else 400  # a small grid makes ties and coincident points
        if compat or trial % 3 == 0:
            x, y = rng.integers(0, spread, n).astype(float), rng.integers(0, spread, n).astype(float)
        else:
            x, y = rng.uniform(0, spread, n), rng.uniform(0, spread, n)
        duration = rng.integers(60, 120 if trial % 2 else 3000, n).astype(float)
        max_fixations = int(rng.integers(1, 9))
        merged = merge_nearest(make_record(x, y, duration), max_fixations, compat=compat)
        expected = brute_force_merge(x, y, duration, max_fixations, compat)
        assert len(merged) == min(n, max_fixations)
        np.testing.assert_array_equal(np.stack([merged.x, merged.y, merged.duration], axis=1), expected)


def test_merge_nearest_coincident_points_depend_on_mode():
    # Fixations 0 and 1 share a pixel; 2 and 3 are 5 px apart; 4 is far away.
    record = make_record([10, 10, 50, 53, 90], [10, 10, 50, 54, 90], [100, 301, 200, 400, 500])
    default = merge_nearest(record, max_fixations=4)
    np.testing.assert_array_equal(default.x, [10, 50, 53, 90])
    np.testing.assert_array_equal(default.duration, [200.5, 200, 400, 500])
    compat = merge_nearest(record, max_fixations=4, compat=True)
    np.testing.assert_array_equal(compat.x, [10, 10, 51, 90])
    np.testing.assert_array_equal(compat.y, [10, 10, 52, 90])
    np.testing.assert_array_equal(compat.duration, [100, 301, 300, 500])


def test_merge_nearest_keeps_small_records_and_the_input():
    record = make_record([1.5, 20, 40], [2.5, 30, 50], [100.5, 200, 300], run=[1, 2, 3])
    for compat in (False, True):
        same = merge_nearest(record, max_fixations=3, compat=compat)
        assert_record(same, "7", (100, 80), record.x, record.y, record.duration)
        np.testing.assert_array_equal(same.run, [1, 2, 3])
    merged = merge_nearest(record, max_fixations=1)
    assert len(merged) == 1 and merged.run.tolist() == [1]
    np.testing.assert_array_equal(record.x, [1.5, 20, 40])  # input untouched
    with pytest.raises(ValueError, match="max_fixations"):
        merge_nearest(record, max_fixations=0)


# --- the real CUB-GHA run files -------------------------------------------------------------


@pytest.fixture(scope="module")
def real_records(real_runs_dir):
    return read_fixations(real_runs_dir).records


def test_real_data_counts(real_records):
    assert len(real_records) == 58_489
    runs = np.array([int(r.run[0]) for r in real_records])
    assert np.bincount(runs)[1:].tolist() == [11634, 11721, 11747, 11601, 11786]
    lengths = np.array([len(r) for r in real_records])
    assert lengths.sum() == 442_629 and lengths.min() == 1 and lengths.max() == 23
    durations = np.concatenate([r.duration for r in real_records])
    assert (durations.min(), np.median(durations), durations.max()) == (60, 275, 9363)
    assert int((durations < 100).sum()) == 12_742


def test_real_data_fixations_inside_images(real_records):
    x = np.concatenate([r.x for r in real_records])
    y = np.concatenate([r.y for r in real_records])
    width = np.concatenate([np.full(len(r), r.width) for r in real_records])
    height = np.concatenate([np.full(len(r), r.height) for r in real_records])
    assert (x >= 0).all() and (x < width).all() and (y >= 0).all() and (y < height).all()


def test_real_data_images_and_repeats(real_records):
    merged = merge_by_image(real_records)
    assert len(merged) == 11_788 and set(merged) == {str(k) for k in range(1, 11_789)}
    runs_per_image = np.bincount([len(np.unique(r.run)) for r in merged.values()])
    assert runs_per_image[3:].tolist() == [34, 1461, 10293]
    run1_ids = [r.image_id for r in real_records if r.run[0] == 1]
    lines_per_id = np.bincount(np.unique(run1_ids, return_counts=True)[1])
    assert lines_per_id[2:].tolist() == [499, 21, 179]
    assert lines_per_id[2:].sum() == 699 and len(run1_ids) - len(set(run1_ids)) == 1_078


def test_real_data_write_reproduces_each_run_file(real_records, real_runs_dir, tmp_path):
    for run in range(1, 6):
        source = real_runs_dir / f"Fixation_run{run}.txt"
        target = tmp_path / source.name
        records = [r for r in real_records if r.run[0] == run]
        assert write_fixations(records, target) == len(records)
        assert target.read_bytes() == source.read_bytes(), source.name


def test_bounded_reading_reports_long_lines_bom_and_non_ascii(tmp_path):
    long_line = "7,100,80," + ",".join(["10,10,300"] * 50)
    path = tmp_path / "runs.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(["1,100,80,10,10,300", long_line, "", "2,100,80,20,20,400"]).encode()
                     + b"\r\n\r\n")
    result = read_fixation_file(path, skip_bad_lines=True, limits=ReadLimits(max_line_bytes=100))
    assert [r.image_id for r in result.records] == ["1", "2"]
    assert [(b.location, b.reason) for b in result.skipped] == [
        (f"{path}:2", f"line of {len(long_line):,} bytes exceeds max_line_bytes=100"), (f"{path}:3", "empty line")]
    path.write_bytes(b"1,100,80,10,10,300\n2,100,80,\xc3\xa9,10,300\n")
    with pytest.raises(FixationFormatError, match=f"{path}:2: non-ASCII byte"):
        read_fixation_file(path)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_line_length_bound_is_exact(tmp_path, ending):
    fits = b"1,100,80," + b",".join([b"10,10,300"] * 9)  # 99 bytes
    fits += b"0" * (100 - len(fits))  # 100 bytes: a longer duration, still a number
    over = b"2" + fits  # 101 bytes
    path = tmp_path / "runs.txt"
    path.write_bytes(fits + ending + over + ending)
    result = read_fixation_file(path, skip_bad_lines=True, limits=ReadLimits(max_line_bytes=100))
    assert [r.image_id for r in result.records] == ["1"]
    assert [b.reason for b in result.skipped] == ["line of 101 bytes exceeds max_line_bytes=100"]
