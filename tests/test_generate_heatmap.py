"""generate_heatmap.py end to end: real ids, published layout, re-runs, atomicity, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import generate_heatmap
from gaze.attention import gha
from gaze.attention.fixations import filter_by_duration, merge_by_image, read_fixations
from gaze.attention.heatmap import render_heatmap
from tests.published_cub_gha import published_display_map, published_parse

REAL_IDS = ["1", "2", "3", "100", "11788"]


def run_cli(*args: str) -> int:
    return generate_heatmap.main([*map(str, args), "--workers", "1"])


def test_all_fixation_maps_of_real_ids_match_the_renderer(real_runs_dir, tmp_path):
    assert run_cli("--gaze_file_path", real_runs_dir, "--CUB_GHA_save_path", tmp_path, "--ids", ",".join(REAL_IDS)) == 0
    written = sorted(p.name for p in (tmp_path / "All_Fixation").glob("*.jpg"))
    assert written == sorted(f"{i}.jpg" for i in REAL_IDS)
    records = merge_by_image(read_fixations(real_runs_dir).records)
    for image_id in REAL_IDS:
        record = records[image_id]
        saved = np.asarray(Image.open(tmp_path / "All_Fixation" / f"{image_id}.jpg"), dtype=np.float64)
        assert Image.open(tmp_path / "All_Fixation" / f"{image_id}.jpg").mode == "L"
        assert saved.shape == (record.height, record.width)
        expected = render_heatmap(filter_by_duration(record, 100)).numpy() * 255
        assert np.abs(saved - expected).mean() < 2.0  # JPEG quality 75 noise only
        peak = np.unravel_index(expected.argmax(), expected.shape)
        assert saved[peak] > 240


def test_single_fixation_maps_follow_the_published_recipe(real_runs_dir, tmp_path):
    assert run_cli("--gaze_file_path", real_runs_dir, "--CUB_GHA_save_path", tmp_path, "--ids", "1-3", "--single_fixation") == 0
    records = merge_by_image(read_fixations(real_runs_dir).records)
    for image_id in ("1", "2", "3"):
        kept = int((records[image_id].duration >= 350).sum())
        files = sorted((tmp_path / "Single_Fixation" / image_id).glob("*.jpg"))
        assert [f.name for f in files] == [f"{k}.jpg" for k in range(min(kept, 7))]
        peaks = [np.asarray(Image.open(f)).max() for f in files]
        assert min(peaks) > 240


def test_rerun_skips_finished_images_unless_overwrite(real_runs_dir, tmp_path):
    args = ("--gaze_file_path", real_runs_dir, "--CUB_GHA_save_path", tmp_path, "--ids", "1,2")
    assert run_cli(*args) == 0
    target = tmp_path / "All_Fixation" / "1.jpg"
    target.write_bytes(b"marker")  # a finished file is not touched again
    assert run_cli(*args) == 0
    assert target.read_bytes() == b"marker"
    assert run_cli(*args, "--overwrite") == 0
    assert Image.open(target).size == (500, 335)


def test_rerun_with_another_recipe_is_refused(real_runs_dir, tmp_path, capsys):
    args = ("--gaze_file_path", real_runs_dir, "--CUB_GHA_save_path", tmp_path, "--ids", "1")
    assert run_cli(*args) == 0
    assert run_cli(*args, "--sigma", "10") == 1
    assert "sigma" in capsys.readouterr().err
    assert run_cli(*args, "--sigma", "10", "--overwrite") == 0


def test_interrupted_write_leaves_no_half_file(real_runs_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed while writing the second map
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        run_cli("--gaze_file_path", real_runs_dir, "--CUB_GHA_save_path", tmp_path, "--ids", "1-3")
    folder = tmp_path / "All_Fixation"
    assert len(list(folder.glob("*.jpg"))) == 1
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(Image.Image, "save", original)
    assert run_cli("--gaze_file_path", real_runs_dir, "--CUB_GHA_save_path", tmp_path, "--ids", "1-3") == 0
    assert len(list(folder.glob("*.jpg"))) == 3


def test_bad_line_names_file_and_line(tmp_path, capsys):
    gaze_file = tmp_path / "Fixation_run1.txt"
    gaze_file.write_text("1,100,80,10,10,300\r\n2,100,80,10,ten,300\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out") == 1
    assert f"{gaze_file}:2" in capsys.readouterr().err
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out", "--skip_bad_lines") == 0
    assert [p.name for p in (tmp_path / "out" / "All_Fixation").glob("*.jpg")] == ["1.jpg"]


def test_compat_drops_the_last_fixation_of_each_line(tmp_path):
    gaze_file = tmp_path / "Fixation.txt"
    # Two fixations: the last (long) one at the right edge dominates the default map.
    gaze_file.write_text("7,120,90,20,45,200,100,45,900\r\n")
    for flag, folder in (((), "default"), (("--compat",), "compat")):
        assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / folder, *flag) == 0
    default = np.asarray(Image.open(tmp_path / "default" / "All_Fixation" / "7.jpg"), dtype=float)
    compat = np.asarray(Image.open(tmp_path / "compat" / "All_Fixation" / "7.jpg"), dtype=float)
    assert np.unravel_index(default.argmax(), default.shape)[1] > 90
    assert np.unravel_index(compat.argmax(), compat.shape)[1] < 30


def test_compat_equals_the_published_arithmetic_with_off_screen_fixations(tmp_path):
    # Display-layout lines with fixations past every screen edge (and the last triple, which
    # the published parser drops); both the ids' maps must equal the published loop's, as
    # written by the same JPEG encoder.
    lines = [
        "3,500,375,1000,750,460,165,700,400,500,-30,500,900,900,-20,800,1300,700,400,1100,600,300",
        "4,480,270,1920,1080,0,0,960,540,400,1990,500,900,700,1100,950,-499,300,700,-900,500,1000,100,100,900",
        "5,333,500,720,1080,1200,0,1500,300,600,1925,900,800,1400,1085,700,1600,500,250",
    ]
    gaze_file = tmp_path / "Fixation.txt"
    gaze_file.write_text("\r\n".join(lines) + "\r\n")
    out = tmp_path / "gha"
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", out, "--compat", "--min_duration", "0") == 0
    for line in lines:
        width, height, rect, triples = published_parse(line)
        expected = Image.fromarray(published_display_map(width, height, rect, triples))
        buffer = io.BytesIO()
        expected.save(buffer, format="JPEG")  # the published script's im.save(...jpg), PIL defaults
        saved = (out / "All_Fixation" / f"{line.split(',')[0]}.jpg").read_bytes()
        assert saved == buffer.getvalue()


def test_missing_default_gaze_file_explains_how_to_get_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert generate_heatmap.main([]) == 1
    assert "--download" in capsys.readouterr().err


def test_parse_ids_ranges_and_files(tmp_path):
    assert generate_heatmap.parse_ids("1,3-5, 9") == {"1", "3", "4", "5", "9"}
    listing = tmp_path / "ids.txt"
    listing.write_text("10\n\n12\n")
    assert generate_heatmap.parse_ids(f"@{listing}") == {"10", "12"}


def test_worker_processes_give_the_same_maps(real_runs_dir, tmp_path):
    records = list(merge_by_image(read_fixations(real_runs_dir).records).values())[:40]
    one = gha.build_gha(records, tmp_path / "one", workers=1, chunk_size=8)
    two = gha.build_gha(records, tmp_path / "two", workers=2, chunk_size=8)
    assert one.maps_written == two.maps_written == 40
    for path in (tmp_path / "one" / "All_Fixation").glob("*.jpg"):
        assert path.read_bytes() == (tmp_path / "two" / "All_Fixation" / path.name).read_bytes()


def test_single_fixation_maps_from_the_display_layout(tmp_path):
    """Display-layout fixations are merged on the screen and rendered with the published recipe."""
    gaze_file = tmp_path / "Fixation.txt"
    # A 200x100 image shown as 800x400 at (560, 340); 9 fixations of >= 350 ms merge down to 7.
    triples = [(600 + 80 * k, 400 + 30 * (k % 3), 400) for k in range(9)]
    gaze_file.write_text("5,200,100,800,400,560,340," + ",".join(f"{x},{y},{d}" for x, y, d in triples) + "\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out", "--single_fixation") == 0
    maps = sorted((tmp_path / "out" / "Single_Fixation" / "5").glob("*.jpg"))
    assert len(maps) == 7
    first = np.asarray(Image.open(maps[0]), dtype=float)
    assert first.shape == (100, 200)
    # Fixations 0 and 1 are the closest pair (first in row-major order): merged on the screen
    # at (640, 415), which is image ((640-560)/4, (415-340)/4) = (20, 18.75).
    row, col = np.unravel_index(first.argmax(), first.shape)
    assert abs(col - 20) <= 1 and abs(row - 18.75) <= 1


def test_overlay_on_cub_photos(tmp_path):
    """--overlay blends each map on its photo (found through images.txt); a grey photo works too."""
    cub = tmp_path / "CUB_200_2011"
    (cub / "images" / "001.Synthetic").mkdir(parents=True)
    Image.new("L", (120, 90), 200).save(cub / "images" / "001.Synthetic" / "a.jpg")
    (cub / "images.txt").write_text("7 001.Synthetic/a.jpg\n8 001.Synthetic/missing.jpg\n")
    gaze_file = tmp_path / "Fixation.txt"
    gaze_file.write_text("7,120,90,100,45,900\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out",
                   "--CUB_dir_path", cub, "--overlay") == 0
    overlay = np.asarray(Image.open(tmp_path / "out" / "Overlay" / "7.jpg"), dtype=float)
    assert overlay.shape == (90, 120, 3)
    red, blue = overlay[..., 0], overlay[..., 2]
    assert red[45, 100] > red[45, 5] + 60  # jet: hot (red) at the fixation ...
    assert blue[45, 5] > blue[45, 100] + 60  # ... cold (blue) far from it


def test_overlay_without_photos_is_an_error(tmp_path, capsys):
    gaze_file = tmp_path / "Fixation.txt"
    gaze_file.write_text("7,120,90,100,45,900\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out",
                   "--CUB_dir_path", tmp_path / "nowhere", "--overlay") == 1
    assert "images.txt" in capsys.readouterr().err


@pytest.mark.parametrize("bad_id", ["../../escaped_map", "/tmp/escaped_map", "sub/dir", ".."])
def test_ids_that_are_paths_never_write_outside(tmp_path, capsys, bad_id):
    gaze_file = tmp_path / "gaze" / "runs.txt"
    gaze_file.parent.mkdir()
    gaze_file.write_text(f"1,100,80,10,10,300\r\n{bad_id},100,80,20,20,300\r\n")
    out = tmp_path / "deep" / "out"
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", out) == 1
    assert f"{gaze_file}:2: image id" in capsys.readouterr().err
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", out, "--skip_bad_lines") == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    assert written == ["deep/out/All_Fixation/1.jpg"]
    assert not Path("/tmp/escaped_map.jpg").exists()


def test_huge_lines_and_images_are_bad_lines_not_memory(tmp_path, capsys):
    gaze_file = tmp_path / "runs.txt"
    long_line = "2,100,80," + ",".join(["10,10,300"] * 400)  # 4 KB
    gaze_file.write_text(f"1,100,80,10,10,300\r\n{long_line}\r\n3,40000,40000,10,10,300\r\n")
    out = tmp_path / "out"
    args = ("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", out, "--max_line_bytes", "1000")
    assert run_cli(*args) == 1
    assert f"{gaze_file}:2: line of {len(long_line):,} bytes exceeds max_line_bytes=1,000" in capsys.readouterr().err
    assert run_cli(*args, "--skip_bad_lines") == 0
    err = capsys.readouterr().err
    assert f"{gaze_file}:3: image size exceeds max_image_side=20,000 px" in err
    assert [p.name for p in (out / "All_Fixation").glob("*.jpg")] == ["1.jpg"]
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "few",
                   "--max_fixations_per_line", "100", "--skip_bad_lines") == 0
    assert "400 fixations exceed max_fixations=100" in capsys.readouterr().err


def test_empty_inputs_are_an_error_unless_allowed(tmp_path, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "Fixation_run1.txt").write_text("")
    assert run_cli("--gaze_file_path", folder, "--CUB_GHA_save_path", tmp_path / "out") == 1
    assert "no fixation line to render" in capsys.readouterr().err
    assert run_cli("--gaze_file_path", folder, "--CUB_GHA_save_path", tmp_path / "out", "--allow_empty") == 0


def test_lines_with_every_fixation_outside_the_image_are_counted(tmp_path, capsys):
    gaze_file = tmp_path / "runs.txt"
    gaze_file.write_text("1,100,80,10,10,300\r\n2,100,80,-5000,10,300,9000,40,300\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert "1 with every fixation outside the image" in captured.out
    assert "warning: 1 images have every fixation outside the image (e.g. id 2)" in captured.err


def test_a_bom_at_the_start_of_a_gaze_file_is_accepted(tmp_path):
    gaze_file = tmp_path / "runs.txt"
    gaze_file.write_bytes(b"\xef\xbb\xbf1,100,80,10,10,300\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out") == 0
    assert (tmp_path / "out" / "All_Fixation" / "1.jpg").is_file()


def test_a_full_disk_names_the_file_that_could_not_be_written(tmp_path, capsys, monkeypatch):
    import errno

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(gha, "atomic_write_bytes", full_disk)
    gaze_file = tmp_path / "runs.txt"
    gaze_file.write_text("1,100,80,10,10,300\r\n")
    assert run_cli("--gaze_file_path", gaze_file, "--CUB_GHA_save_path", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(tmp_path / "out" / "All_Fixation") in err
