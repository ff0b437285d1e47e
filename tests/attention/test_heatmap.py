"""Tests for gaze/attention/heatmap.py: the Gaussian formula, batching, the published display recipe, files."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gaze.atomic
import torch
from PIL import Image

from gaze.attention.fixations import (
    DisplayRect,
    FixationRecord,
    display_to_image,
    merge_by_image,
    read_fixation_file,
)
from tests.published_cub_gha import published_display_map, published_parse
from gaze.attention.heatmap import (
    drop_last_fixation,
    heatmap_to_uint8,
    iter_heatmaps,
    load_heatmap,
    render_display_heatmap,
    render_heatmap,
    render_heatmaps,
    render_single_fixation_maps,
    save_heatmap,
    screen_fit_sigma,
)


def make_record(fixations, width=40, height=30, image_id="1") -> FixationRecord:
    """Image-layout record from (x, y, ms) triples."""
    values = np.asarray(fixations, dtype=np.float64).reshape(-1, 3)
    return FixationRecord(
        image_id=image_id,
        width=width,
        height=height,
        x=values[:, 0].copy(),
        y=values[:, 1].copy(),
        duration=values[:, 2].copy(),
        run=np.full(len(values), -1, dtype=np.int64),
    )


def make_display_record(fixations, rect: DisplayRect, width=500, height=375) -> FixationRecord:
    """Display-layout record from (screen x, screen y, ms) triples."""
    values = np.asarray(fixations, dtype=np.float64).reshape(-1, 3)
    x, y = display_to_image(values[:, 0], values[:, 1], rect, width, height)
    record = make_record(np.stack([x, y, values[:, 2]], axis=1), width, height)
    return FixationRecord(
        **{**record.__dict__, "display": rect, "display_x": values[:, 0], "display_y": values[:, 1]}
    )


def formula_map(fixations, width, height, sigma_x, sigma_y=None, weighted=True) -> np.ndarray:
    """H(x, y) = sum_i d_i exp(-(x - x_i)^2 / (2 sx^2) - (y - y_i)^2 / (2 sy^2)), min-max normalised."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    total = np.zeros((height, width))
    for x, y, d in np.asarray(fixations, dtype=np.float64).reshape(-1, 3):
        gauss = np.exp(-((cols - x) ** 2) / (2 * sigma_x**2) - (rows - y) ** 2 / (2 * sigma_y**2))
        total += (d if weighted else 1.0) * gauss
    return (total - total.min()) / (total.max() - total.min())


def peak(heatmap: torch.Tensor) -> tuple[int, int]:
    """(row, column) of the maximum."""
    row, col = np.unravel_index(int(torch.argmax(heatmap)), tuple(heatmap.shape))
    return int(row), int(col)


def assert_valid_map(heatmap: torch.Tensor, shape: tuple[int, int]) -> None:
    assert heatmap.dtype == torch.float32 and tuple(heatmap.shape) == shape
    assert torch.isfinite(heatmap).all()
    assert float(heatmap.min()) >= 0.0 and float(heatmap.max()) <= 1.0


# --- image-coordinate maps -------------------------------------------------------------------

THREE = [(5, 7, 100), (30.5, 20, 250), (12, 25, 50)]


def test_three_fixations_match_the_formula():
    heatmap = render_heatmap(make_record(THREE), sigma=4.0)
    assert_valid_map(heatmap, (30, 40))
    np.testing.assert_allclose(heatmap.numpy(), formula_map(THREE, 40, 30, 4.0), atol=1e-5)
    assert float(heatmap.min()) == 0.0 and float(heatmap.max()) == 1.0


def test_default_sigma_is_screen_fit():
    record = make_record([(100, 80, 300), (400, 300, 200)], width=500, height=375)
    heatmap = render_heatmap(record)
    expected = formula_map([(100, 80, 300), (400, 300, 200)], 500, 375, 75 / 2.88)
    np.testing.assert_allclose(heatmap.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize(
    "width, height, sigma",
    [(500, 375, 26.0416667), (375, 500, 34.7222222), (500, 333, 23.125), (1920, 1080, 75.0)],
)
def test_screen_fit_sigma(width, height, sigma):
    assert screen_fit_sigma(width, height) == pytest.approx(sigma, rel=1e-7)


def test_single_fixation_peaks_at_its_pixel():
    heatmap = render_heatmap(make_record([(17, 23, 500)], width=60, height=50), sigma=3.0)
    assert_valid_map(heatmap, (50, 60))
    assert peak(heatmap) == (23, 17) and float(heatmap[23, 17]) == 1.0


@pytest.mark.parametrize("size", [(240, 300), (40, 300), (80, 100)])
def test_render_at_another_size_scales_the_peak(size):
    out_h, out_w = size
    scale_x, scale_y = out_w / 100, out_h / 80
    heatmap = render_heatmap(make_record([(30, 20, 200)], width=100, height=80), sigma=5.0, size=size)
    assert_valid_map(heatmap, size)
    # Pixel centres map to pixel centres: c -> (c + 0.5) * scale - 0.5.
    centre_x, centre_y = (30 + 0.5) * scale_x - 0.5, (20 + 0.5) * scale_y - 0.5
    assert peak(heatmap) == (round(centre_y), round(centre_x))
    expected = formula_map([(centre_x, centre_y, 1)], out_w, out_h, 5.0 * scale_x, 5.0 * scale_y)
    np.testing.assert_allclose(heatmap.numpy(), expected, atol=1e-5)


def test_unweighted_ignores_durations():
    fixations = [(5, 7, 100), (30, 20, 900)]
    unweighted = render_heatmap(make_record(fixations), sigma=4.0, weighted=False)
    ones = render_heatmap(make_record([(5, 7, 1), (30, 20, 1)]), sigma=4.0)
    weighted = render_heatmap(make_record(fixations), sigma=4.0)
    torch.testing.assert_close(unweighted, ones)
    expected = formula_map(fixations, 40, 30, 4.0, weighted=False)
    np.testing.assert_allclose(unweighted.numpy(), expected, atol=1e-5)
    assert (weighted - unweighted).abs().max() > 0.1


def test_record_without_fixations_gives_zeros():
    empty = make_record([], width=40, height=30)
    heatmap = render_heatmap(empty)
    assert_valid_map(heatmap, (30, 40))
    assert not heatmap.any()
    # In a batch with other records it stays zero and leaves the others as they are.
    other = make_record(THREE)
    maps = render_heatmaps([empty, other], sigma=4.0)
    assert not maps[0].any()
    np.testing.assert_allclose(maps[1].numpy(), formula_map(THREE, 40, 30, 4.0), atol=1e-5)


def mixed_records() -> list[FixationRecord]:
    rng = np.random.default_rng(1)
    records = []
    for k, (width, height) in enumerate([(40, 30), (50, 20), (40, 30), (50, 20), (40, 30), (33, 47)]):
        n = k % 4 + 1
        x, y, duration = rng.uniform(0, width, n), rng.uniform(0, height, n), rng.uniform(60, 900, n)
        fixations = np.stack([x, y, duration], axis=1)
        records.append(make_record(fixations, width, height, image_id=str(k)))
    return records


def test_iter_heatmaps_over_mixed_sizes():
    records = mixed_records()
    seen = {}
    for record, heatmap in iter_heatmaps(records, sigma=3.0, batch_size=2):
        assert_valid_map(heatmap, (record.height, record.width))
        fixations = np.stack([record.x, record.y, record.duration], axis=1)
        expected = formula_map(fixations, record.width, record.height, 3.0)
        np.testing.assert_allclose(heatmap.numpy(), expected, atol=1e-5)
        seen[id(record)] = heatmap
    assert set(seen) == {id(r) for r in records}


def test_render_heatmaps_keeps_input_order():
    records = mixed_records()
    maps = render_heatmaps(records, sigma=3.0, batch_size=2)
    singles = [render_heatmap(r, sigma=3.0) for r in records]
    assert len(maps) == len(records)
    for record, heatmap, single in zip(records, maps, singles):
        assert tuple(heatmap.shape) == (record.height, record.width)
        torch.testing.assert_close(heatmap, single, atol=1e-6, rtol=0)
    from_generator = render_heatmaps((r for r in records), sigma=3.0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(from_generator, maps, strict=True))


def test_render_heatmaps_at_one_size_for_mixed_records():
    records = mixed_records()
    maps = render_heatmaps(records, sigma=3.0, size=(16, 24))
    assert [tuple(m.shape) for m in maps] == [(16, 24)] * len(records)


def test_single_fixation_maps():
    fixations = [(5, 7, 100), (30, 20, 2500), (12, 25, 50), (39, 0, 60)]
    maps = render_single_fixation_maps(make_record(fixations), sigma=4.0)
    assert maps.dtype == torch.float32 and tuple(maps.shape) == (4, 30, 40)
    for heatmap, (x, y, _) in zip(maps, fixations):
        assert peak(heatmap) == (y, int(x))
        np.testing.assert_allclose(heatmap.numpy(), formula_map([(x, y, 1)], 40, 30, 4.0), atol=1e-5)
    assert tuple(render_single_fixation_maps(make_record([]), size=(8, 9)).shape) == (0, 8, 9)


def test_drop_last_fixation():
    record = make_record(THREE)
    dropped = drop_last_fixation(record)
    np.testing.assert_array_equal(dropped.x, [5, 30.5])
    np.testing.assert_array_equal(dropped.duration, [100, 250])
    assert len(drop_last_fixation(make_record([]))) == 0


# --- the published display recipe -------------------------------------------------------------


def random_screen_fixations(rng, rect: DisplayRect, n: int) -> list[tuple[int, int, int]]:
    x = rng.integers(rect.x0 - 100, rect.x0 + rect.width + 100, n)
    y = rng.integers(rect.y0 - 100, rect.y0 + rect.height + 100, n)
    durations = rng.choice(np.arange(60, 3000), n, replace=False)
    return [(int(a), int(b), int(c)) for a, b, c in zip(x, y, durations)]


# Off the screen beyond each edge: the published script drops those left of or above it (also
# far off, -900: no wrap-around), keeps those right of or below it, clipped at its canvas, and
# broadcasts one kernel column at exactly -499 px.
OFF_SCREEN = [(-30, 400, 700), (900, -20, 800), (1990, 500, 900), (700, 1100, 950), (-900, 500, 1000),
              (-499, 300, 1200), (2100, 1200, 1100)]

RECTS = [
    (500, 375, DisplayRect(1000, 750, 460, 165)),
    (500, 375, DisplayRect(1440, 1080, 240, 0)),  # as large as fits the screen
    (333, 500, DisplayRect(720, 1080, 0, 0)),  # touching the top-left corner
    (333, 500, DisplayRect(720, 1080, 1200, 0)),  # touching the right edge
]


@pytest.mark.parametrize("width, height, rect", RECTS)
def test_display_compat_is_bit_identical_to_the_published_recipe(width, height, rect):
    rng = np.random.default_rng(width + rect.x0)
    for n in (1, 5, 12):
        fixations = random_screen_fixations(rng, rect, n) + OFF_SCREEN
        record = make_display_record(fixations, rect, width, height)
        heatmap = render_display_heatmap(record, compat=True)
        assert_valid_map(heatmap, (height, width))
        expected = published_display_map(width, height, rect, fixations)
        np.testing.assert_array_equal(heatmap_to_uint8(heatmap), expected)


@pytest.mark.parametrize("width, height, rect", RECTS)
def test_display_default_keeps_off_screen_fixations(width, height, rect):
    rng = np.random.default_rng(7)
    fixations = random_screen_fixations(rng, rect, 6) + OFF_SCREEN
    record = make_display_record(fixations, rect, width, height)
    default = heatmap_to_uint8(render_display_heatmap(record))
    expected = published_display_map(width, height, rect, fixations, keep_all=True)
    np.testing.assert_array_equal(default, expected)
    assert (default != heatmap_to_uint8(render_display_heatmap(record, compat=True))).any()


def test_display_off_screen_tail_reaches_the_image():
    # The only long fixation is 20 px above the screen: its tail lights the top of the image.
    rect = DisplayRect(1000, 750, 460, 165)
    fixations = [(960, 540, 100), (900, -20, 5000)]
    record = make_display_record(fixations, rect)
    default, compat = render_display_heatmap(record), render_display_heatmap(record, compat=True)
    assert peak(default)[0] == 0 and float(default[0].max()) > 0.9
    on_screen = render_display_heatmap(make_display_record(fixations[:1], rect))
    torch.testing.assert_close(compat, on_screen, atol=0, rtol=0)  # the off-screen one is dropped
    assert published_display_map(500, 375, rect, fixations)[0].max() < 255


EDGE_RECT = DisplayRect(1920, 1080, 0, 0)  # the whole screen: every edge is inside the image


@pytest.mark.parametrize(
    "off_screen, kept",
    [
        ((-1, 540, 3000), False),  # left: x set to 0, kernel cut by 1 -> shape mismatch, dropped
        ((960, -1, 3000), False),  # top
        ((-900, 540, 3000), False),  # far left: dropped, not wrapped to the right side
        ((1921, 540, 3000), True),  # right: clipped at the canvas, kept
        ((960, 1300, 3000), True),  # bottom, 220 px below: its tail still reaches the screen
        ((2400, 2400, 3000), True),  # far past the bottom-right corner: kept, adds nothing visible
        ((0, 0, 3000), True),  # on the corner itself: the whole kernel
        ((1920, 1080, 3000), True),
    ],
)
def test_compat_edges_follow_the_published_arithmetic(off_screen, kept):
    on_screen = [(700, 400, 500), (1300, 700, 400)]
    record = make_display_record(on_screen + [off_screen], EDGE_RECT, 480, 270)
    compat = heatmap_to_uint8(render_display_heatmap(record, compat=True))
    np.testing.assert_array_equal(compat, published_display_map(480, 270, EDGE_RECT, on_screen + [off_screen]))
    without = heatmap_to_uint8(render_display_heatmap(make_display_record(on_screen, EDGE_RECT, 480, 270), compat=True))
    changes_map = off_screen[:2] != (2400, 2400)
    assert (compat != without).any() == (kept and changes_map)


def test_compat_broadcasts_one_kernel_column_at_minus_499():
    # numpy broadcasting: the single remaining kernel column G[:, 499] is added to canvas
    # columns 0..499, i.e. a constant exp(-249^2 / (2 * 75^2)) * d over screen columns 0..249.
    record = make_display_record([(-499, 540, 1000)], EDGE_RECT, 1920, 1080)
    heatmap = render_display_heatmap(record, compat=True).numpy()
    assert np.ptp(heatmap[540, :250]) == 0 and heatmap[540, 0] == 1.0
    assert heatmap[540, 250:].max() == 0.0
    expected = published_display_map(1920, 1080, EDGE_RECT, [(-499, 540, 1000)])
    np.testing.assert_array_equal(heatmap_to_uint8(heatmap), expected)


def test_display_layout_file_renders_like_the_published_script(tmp_path):
    rect = DisplayRect(1000, 750, 460, 165)
    rng = np.random.default_rng(3)
    lines = []
    for _ in range(3):
        triples = random_screen_fixations(rng, rect, 6)
        lines.append(",".join(map(str, [9, 500, 375, 1000, 750, 460, 165, *np.ravel(triples)])))
    path = tmp_path / "Fixation.txt"
    path.write_text("\r\n".join(lines) + "\r\n")
    records = read_fixation_file(path).records
    for line, record in zip(lines, records, strict=True):
        width, height, parsed_rect, triples = published_parse(line)
        expected = published_display_map(width, height, parsed_rect, triples)
        compat = render_display_heatmap(drop_last_fixation(record), compat=True)
        np.testing.assert_array_equal(heatmap_to_uint8(compat), expected)


def test_parser_defect_only_removes_each_line_last_fixation(tmp_path):
    rect = DisplayRect(1000, 750, 460, 165)
    rng = np.random.default_rng(5)
    lines = [random_screen_fixations(rng, rect, n) for n in (4, 6, 3)]

    def write(name, fixation_lines):
        text = "".join(
            ",".join(map(str, [9, 500, 375, 1000, 750, 460, 165, *np.ravel(triples)])) + "\r\n"
            for triples in fixation_lines
        )
        (tmp_path / name).write_text(text)
        return read_fixation_file(tmp_path / name).records

    records = write("full.txt", lines)
    without_last = write("without_last.txt", [triples[:-1] for triples in lines])
    default = render_display_heatmap(merge_by_image(records)["9"])
    defect = render_display_heatmap(merge_by_image([drop_last_fixation(r) for r in records])["9"])
    expected = render_display_heatmap(merge_by_image(without_last)["9"])
    torch.testing.assert_close(defect, expected, atol=0, rtol=0)
    assert (defect - default).abs().max() > 0


def test_display_render_needs_display_geometry():
    with pytest.raises(ValueError, match="no display geometry"):
        render_display_heatmap(make_record(THREE))


# --- heatmap files --------------------------------------------------------------------------


def smooth_map() -> torch.Tensor:
    return render_heatmap(make_record([(20, 10, 300), (60, 40, 200)], width=80, height=60), sigma=8.0)


def test_save_load_png_is_exact(tmp_path):
    heatmap = smooth_map()
    path = tmp_path / "maps" / "1.png"
    save_heatmap(path, heatmap)
    loaded = load_heatmap(path)
    assert loaded.dtype == torch.float32 and tuple(loaded.shape) == (60, 80)
    np.testing.assert_array_equal(loaded.numpy(), heatmap_to_uint8(heatmap) / np.float32(255))
    assert (loaded - heatmap).abs().max() <= 0.5 / 255 + 1e-6
    assert os.listdir(path.parent) == ["1.png"]


def test_save_load_jpeg_is_close(tmp_path):
    heatmap = smooth_map()
    path = tmp_path / "1.jpg"
    save_heatmap(path, heatmap)
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.mode == "L"
    difference = (load_heatmap(path) - heatmap).abs()
    assert float(difference.max()) < 0.05 and float(difference.mean()) < 0.01
    resized = load_heatmap(path, size=(30, 40))
    assert tuple(resized.shape) == (30, 40)


def test_load_rgb_heatmap_as_grey(tmp_path):
    grey = heatmap_to_uint8(smooth_map())
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_heatmap(tmp_path / "rgb.png").numpy(), grey / np.float32(255))


def test_heatmap_to_uint8_rounds_and_clips():
    values = np.array([[-0.1, 0.0, 0.5 / 255 - 1e-4, 0.5, 1.0, 1.2]])
    np.testing.assert_array_equal(heatmap_to_uint8(values), [[0, 0, 0, 128, 255, 255]])


def break_pil_save(monkeypatch) -> None:
    """Make the file write put half the bytes on disk and then fail."""
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, handle, mode):
            self.file = real_fdopen(handle, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise OSError("disk full")

    monkeypatch.setattr(gaze.atomic.os, "fdopen", HalfWriter)


@pytest.mark.parametrize("name", ["1.jpg", "1.png"])
def test_failed_save_leaves_nothing(tmp_path, monkeypatch, name):
    break_pil_save(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_heatmap(tmp_path / name, smooth_map())
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "1.png"
    save_heatmap(path, smooth_map())
    old = path.read_bytes()
    break_pil_save(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_heatmap(path, torch.zeros(60, 80))
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["1.png"]
