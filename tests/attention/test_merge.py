"""Tests for gaze/attention/merge.py: pooling order, duration filter, id order, round trip, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaze import __main__ as gaze_cli
from gaze.attention.fixations import read_fixations
from gaze.attention.merge import image_order, main, merge_runs, write_merged

#: Synthetic runs: id 10 seen twice in run 1 (a repeat viewing), ids out of numeric order.
RUNS = {
    "Fixation_run1.txt": ["10,50,40,1,1,150,2,2,90", "2,30,20,3,3,200", "10,50,40,4,4,120"],
    "Fixation_run2.txt": ["2,30,20,5,5,99,6,6,100", "10,50,40,7,7,300"],
    "Fixation_run10.txt": ["10,50,40,8,8,500", "9,60,60,1,1,50"],
}


def write_runs(folder: Path, runs: dict[str, list[str]] = RUNS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in runs.items():
        (folder / name).write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return folder


def as_tuples(record) -> list[tuple[float, float, float]]:
    return list(zip(record.x.tolist(), record.y.tolist(), record.duration.tolist()))


def test_pooling_order_filter_and_id_order(tmp_path):
    records, summary = merge_runs(write_runs(tmp_path / "runs"), min_duration=100)
    assert [r.image_id for r in records] == ["2", "9", "10"]
    by_id = {r.image_id: r for r in records}
    # Run 1 (both lines, file order), then run 2, then run 10 (natural order); < 100 ms dropped.
    assert as_tuples(by_id["10"]) == [(1, 1, 150), (4, 4, 120), (7, 7, 300), (8, 8, 500)]
    assert by_id["10"].run.tolist() == [1, 1, 2, 10]
    assert as_tuples(by_id["2"]) == [(3, 3, 200), (6, 6, 100)]
    assert len(by_id["9"]) == 0 and (by_id["9"].width, by_id["9"].height) == (60, 60)
    assert (summary.files, summary.lines, summary.images) == (3, 7, 3)
    assert (summary.kept, summary.dropped) == (6, 3)


def test_min_duration_zero_keeps_everything(tmp_path):
    records, summary = merge_runs(write_runs(tmp_path / "runs"), min_duration=0)
    assert summary.dropped == 0 and summary.kept == 9
    assert [d for r in records for d in r.duration.tolist()] == [200, 99, 100, 50, 150, 90, 120, 300, 500]


def test_written_file_layout_and_round_trip(tmp_path):
    out = tmp_path / "Fixation.txt"
    write_merged(write_runs(tmp_path / "runs"), out)
    assert out.read_bytes() == b"2,30,20,3,3,200,6,6,100\r\n9,60,60\r\n10,50,40,1,1,150,4,4,120,7,7,300,8,8,500\r\n"
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob("*.tmp"))


def test_image_order_numeric_else_first_seen():
    assert image_order(["10", "9", "100", "1"]) == ["1", "9", "10", "100"]
    assert image_order(["b", "10", "a"]) == ["b", "10", "a"]


def test_refuses_to_write_into_run_folder(tmp_path):
    runs = write_runs(tmp_path / "runs")
    with pytest.raises(ValueError, match="run folder"):
        write_merged(runs, runs / "Fixation.txt")


def test_command_line(tmp_path, capsys):
    runs, out = write_runs(tmp_path / "runs"), tmp_path / "out" / "Fixation.txt"
    argv = ["merge", "--gaze_file_path", str(runs), "--out", str(out), "--min_duration", "150"]
    assert gaze_cli.main(argv) == 0
    assert "3 images, 4 fixations kept, 5 dropped" in capsys.readouterr().out
    assert main(["--gaze_file_path", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "missing" in capsys.readouterr().err


def expected_aggregate(folder: Path, min_duration: int) -> bytes:
    """The aggregate file computed independently with plain string handling (integer data)."""
    header: dict[int, list[str]] = {}
    pooled: dict[int, list[str]] = {}
    for run in range(1, 6):
        for line in (folder / f"Fixation_run{run}.txt").read_text().splitlines():
            fields = line.split(",")
            image_id = int(fields[0])
            header.setdefault(image_id, fields[:3])
            for x, y, ms in zip(fields[3::3], fields[4::3], fields[5::3]):
                if int(ms) >= min_duration:
                    pooled.setdefault(image_id, []).extend([x, y, ms])
    lines = [",".join(header[i] + pooled.get(i, [])) for i in sorted(header)]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def test_real_data(real_runs_dir, tmp_path):
    out = tmp_path / "Fixation.txt"
    summary = write_merged(real_runs_dir, out)
    assert (summary.files, summary.lines) == (5, 58_489)
    assert (summary.images, summary.kept, summary.dropped) == (11_788, 429_887, 12_742)
    lines = out.read_bytes().split(b"\r\n")
    assert len(lines) == 11_789 and lines[-1] == b"" and b"\n" not in b"".join(lines)
    assert out.read_bytes() == expected_aggregate(real_runs_dir, min_duration=100)

    written, _ = merge_runs(real_runs_dir)
    reread = read_fixations(out).records
    assert [r.image_id for r in reread] == [str(i) for i in range(1, 11_789)]
    for a, b in zip(written, reread):
        assert (a.image_id, a.width, a.height) == (b.image_id, b.width, b.height)
    for name in ("x", "y", "duration"):
        np.testing.assert_array_equal(
            np.concatenate([getattr(r, name) for r in written]),
            np.concatenate([getattr(r, name) for r in reread]),
        )
    assert min(float(r.duration.min()) for r in reread) >= 100
