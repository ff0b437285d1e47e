"""Tests for gaze/attention/egd.py: master sheet, screen->image mapping, fixations.csv, heatmaps, PNG decoding."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from PIL import Image
from scipy.ndimage import gaussian_filter

from gaze.attention.egd import (
    CLASS_NAMES,
    EGD_SIGMA,
    SCREEN_SIZE,
    EgdFormatError,
    decode_viridis,
    egd_heatmap,
    read_egd_fixations,
    read_heatmap_png,
    read_master_sheet,
    screen_to_image,
)
from gaze.attention.fixations import FixationRecord

# MIMIC-CXR style ids (5 groups of 8 hex digits).
ID_A = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"
ID_B = "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"
ID_C = "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"  # in the sheet, no image size
ID_D = "3f1e0c22-77a1b2c3-d4e5f607-18293a4b-5c6d7e8f"  # in the sheet and sized, no fixation
# Calibration images: a real id minus its last 5 characters, upper case (cxr.md §1, §5).
CAL_A = ID_A[:-5].upper()
CAL_B = ID_B[:-5].upper()

# (width, height) and screen pads (top, bottom, left, right) of the two gazed images.
SIZE_A, PADS_A = (2544, 3056), (28, 28, 535, 535)
SIZE_B, PADS_B = (2539, 3050), (28, 28, 536, 536)  # odd width
IMAGE_SIZES = {ID_A: SIZE_A, ID_B.upper(): SIZE_B, ID_D: (2000, 2000)}


def sheet_rows(pad_names=("image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad")):
    rows = [
        (ID_A, 101, (1, 0, 0), PADS_A),
        (ID_B, 102, (0, 1, 0), PADS_B),
        (ID_C, 103, (0, 0, 1), (28, 28, 500, 500)),
        (ID_D, 104, (1, 0, 0), (28, 28, 448, 448)),
    ]
    records = []
    for dicom_id, patient, onehot, pads in rows:
        record = {"dicom_id": dicom_id, "path": f"files/p10/p{patient}/s1/{dicom_id}.dcm", "patient_id": patient}
        record.update(dict(zip(CLASS_NAMES, onehot)))
        record.update(dict(zip(pad_names, pads)))
        record["gender"] = "F"
        records.append(record)
    return records


def write_sheet(tmp_path: Path, rows=None, name="master_sheet.csv", **kwargs) -> Path:
    path = tmp_path / name
    pd.DataFrame(rows if rows is not None else sheet_rows(**kwargs)).to_csv(path, index=False)
    return path


# SESSION_ID, DICOM_ID, FPOGX, FPOGY, FPOGD (s), FPOGV; line = position + 2.
FIXATION_ROWS = [
    (1, CAL_A, 0.52, 0.49, 0.20, 1),  # line 2: calibration, not its last sample
    (1, CAL_A, 0.51, 0.48, 0.30, 1),  # line 3: last sample of CAL_A
    (1, ID_A.upper(), 0.3, 0.8, 0.25, 1),  # line 4: inside A
    (1, ID_A.upper(), 0.1, 0.5, 0.40, 1),  # line 5: in A's left padding
    (1, ID_A[:9].upper() + ID_A[9:], 0.5, 0.5, 0.50, 1),  # line 6: mixed case, inside A
    (2, ID_B.upper(), 0.5, 0.5, 0.10, 0),  # line 7: inside B, invalid
    (2, ID_B.upper(), 0.45, 0.55, 0.30, 1),  # line 8: inside B
    (2, ID_C.upper(), 0.5, 0.5, 0.20, 1),  # line 9: no size for C
    (2, CAL_B, 0.47, 0.51, 0.60, 1),  # line 10: last sample of CAL_B
]


def write_fixations(tmp_path: Path, rows=FIXATION_ROWS, drop=()) -> Path:
    frame = pd.DataFrame(rows, columns=["SESSION_ID", "DICOM_ID", "FPOGX", "FPOGY", "FPOGD", "FPOGV"])
    frame.insert(2, "Time (in secs)", np.arange(len(frame)) * 0.5)  # ignored
    path = tmp_path / "fixations.csv"
    frame.drop(columns=list(drop)).to_csv(path, index=False)
    return path


@pytest.fixture
def master(tmp_path) -> pd.DataFrame:
    return read_master_sheet(write_sheet(tmp_path))


# ----------------------------------------------------------------------------- master sheet


@pytest.mark.parametrize(
    "pad_names",
    [
        ("image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad"),
        ("image_top", "image_bottom", "image_left", "image_right"),
    ],
)
def test_master_sheet_both_padding_spellings(tmp_path, pad_names):
    rows = sheet_rows(pad_names)
    rows[0]["dicom_id"] = "  " + ID_A.upper() + " "
    sheet = read_master_sheet(write_sheet(tmp_path, rows))
    assert list(sheet["dicom_id"]) == [ID_A, ID_B, ID_C, ID_D]
    assert list(sheet["patient_id"]) == ["101", "102", "103", "104"]
    assert list(sheet["label"]) == [0, 1, 2, 0]
    assert sheet["label"].dtype == np.int64
    assert tuple(sheet.loc[0, ["pad_top", "pad_bottom", "pad_left", "pad_right"]]) == PADS_A
    assert set(pad_names) | {"gender", "path", *CLASS_NAMES} <= set(sheet.columns)


def test_master_sheet_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_master_sheet(tmp_path / "nowhere.csv")


def test_master_sheet_missing_columns(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("CHF", "image_left_pad")} for r in sheet_rows()]
    with pytest.raises(EgdFormatError, match=r"master_sheet\.csv.*CHF.*found"):
        read_master_sheet(write_sheet(tmp_path, rows))
    rows = [{k: v for k, v in r.items() if k != "image_left_pad"} for r in sheet_rows()]
    with pytest.raises(EgdFormatError, match=r"master_sheet\.csv.*image_left_pad.*found"):
        read_master_sheet(write_sheet(tmp_path, rows))


def test_master_sheet_duplicate_id_names_both_lines(tmp_path):
    rows = sheet_rows()
    rows[3]["dicom_id"] = ID_B.upper()  # same id as line 3 after lower-casing
    with pytest.raises(EgdFormatError, match=r"master_sheet\.csv.*" + ID_B + r".*\[3, 5\]"):
        read_master_sheet(write_sheet(tmp_path, rows))


@pytest.mark.parametrize("onehot", [(1, 1, 0), (0, 0, 0), (2, 0, 0), ("x", 1, 0)])
def test_master_sheet_not_one_hot(tmp_path, onehot):
    rows = sheet_rows()
    rows[2].update(dict(zip(CLASS_NAMES, onehot)))
    with pytest.raises(EgdFormatError, match=r"master_sheet\.csv:4: labels"):
        read_master_sheet(write_sheet(tmp_path, rows))


@pytest.mark.parametrize("value", [-3, "abc", 2.5])
def test_master_sheet_bad_padding(tmp_path, value):
    rows = sheet_rows()
    rows[1]["image_bottom_pad"] = value
    with pytest.raises(EgdFormatError, match=r"master_sheet\.csv:3: column image_bottom_pad"):
        read_master_sheet(write_sheet(tmp_path, rows))


@pytest.mark.parametrize("column, value, message", [
    ("dicom_id", "../../escaped", r"master_sheet\.csv:4: dicom_id: '\.\./\.\./escaped' holds '/'"),
    ("dicom_id", "..", r"master_sheet\.csv:4: dicom_id: '\.\.' refers to a folder"),
    ("path", "/etc/passwd.dcm", r"master_sheet\.csv:4: path: '/etc/passwd\.dcm' must be a relative path"),
    ("path", "files/../../x.dcm", r"master_sheet\.csv:4: path: .* must be a relative path"),
])
def test_master_sheet_ids_and_paths_never_leave_their_folders(tmp_path, column, value, message):
    # dicom ids name heatmap folders, cache files and panels; paths are read below mimic_root.
    rows = sheet_rows()
    rows[2][column] = value
    with pytest.raises(ValueError, match=message):
        read_master_sheet(write_sheet(tmp_path, rows))


# ----------------------------------------------------------------------------- screen -> image


def test_screen_to_image_hand_computed_point():
    # ex = 0.3 * 1920 = 576, ey = 0.8 * 1080 = 864; W, H even already.
    # x = int((576 - 535) * 2544 / (1920 - 1070)) = int(104304 / 850) = int(122.71) = 122
    # y = int((864 - 28) * 3056 / (1080 - 56)) = int(2554816 / 1024) = int(2494.94) = 2494
    x, y, inside = screen_to_image(0.3, 0.8, 28, 28, 535, 535, 2544, 3056)
    assert (int(x), int(y), bool(inside)) == (122, 2494, True)
    assert x.dtype == np.int64 and y.dtype == np.int64


def test_screen_to_image_outside_points_and_broadcasting():
    fpogx = np.array([0.1, 0.5, 1.2, -0.1, 0.5])
    fpogy = np.array([0.5, 0.01, 0.5, 0.5, 0.5])  # left pad, top pad, off-screen x2, inside
    x, y, inside = screen_to_image(fpogx, fpogy, 28, 28, 535, 535, 2544, 3056)
    assert inside.tolist() == [False, False, False, False, True]
    assert x[:4].tolist() == [-1] * 4 and y[:4].tolist() == [-1] * 4
    # (960 - 535) * 2544 / 850 = 1272 and (540 - 28) * 3056 / 1024 = 1528 exactly.
    assert (x[4], y[4]) == (1272, 1528)


def test_screen_to_image_strict_borders():
    # ex exactly on the left border (535) and ey exactly on the bottom border (1052): outside.
    _, _, inside = screen_to_image(0.0, 0.5, 28, 28, 535, 535, 2544, 3056, offset=(535.0, 0.0))
    assert not inside
    _, _, inside = screen_to_image(0.5, 0.0, 28, 28, 535, 535, 2544, 3056, offset=(0.0, 1052.0))
    assert not inside
    _, _, inside = screen_to_image(0.0, 0.5, 28, 28, 535, 535, 2544, 3056, offset=(535.5, 0.0))
    assert inside


def test_screen_to_image_odd_width_is_padded_then_clipped():
    # W = 851 -> W_even = 852, displayed over 1920 - 1070 = 850 screen px.
    # ex = 1384.9: int(849.9 * 852 / 850) = int(851.9) = 851 = W -> clipped to 850.
    # ex = 1384.0: int(849 * 852 / 850) = int(850.998) = 850 -> unchanged.
    # ex = 960: int(425 * 852 / 850) = int(426.0) = 426 (even-padded width, not 851).
    x, y, inside = screen_to_image(
        0.0, 0.5, 28, 28, 535, 535, 851, 1023, offset=(np.array([1384.9, 1384.0, 960.0]), 0.0)
    )
    assert inside.all()
    assert x.tolist() == [850, 850, 426]
    # H = 1023 -> H_even = 1024 over 1024 screen px: y = int(512 * 1024 / 1024) = 512.
    assert y.tolist() == [512] * 3


# ----------------------------------------------------------------------------- fixations.csv


def expected_xy(fpogx, fpogy, size, pads, offset=(0.0, 0.0)):
    return screen_to_image(np.array(fpogx), np.array(fpogy), *pads, *size, offset=offset)


def test_read_fixations_counts_and_records(tmp_path, master):
    path = write_fixations(tmp_path)
    gaze = read_egd_fixations(path, master, IMAGE_SIZES)
    assert gaze.rows == 9
    assert gaze.calibration_rows == 3
    # The calibration ids are prefixes of real ids, yet they are not matched to them.
    assert gaze.calibration_ids == sorted([CAL_A.lower(), CAL_B.lower()])
    assert ID_A.startswith(gaze.calibration_ids[0])
    assert gaze.outside_rows == 1 and gaze.unmatched_rows == 1 and gaze.invalid_rows == 0
    assert gaze.missing_ids == [ID_D]
    assert list(gaze.records) == [ID_A, ID_B]

    a = gaze.records[ID_A]
    assert isinstance(a, FixationRecord)
    assert (a.image_id, a.width, a.height) == (ID_A, *SIZE_A)
    x, y, inside = expected_xy([0.3, 0.5], [0.8, 0.5], SIZE_A, PADS_A)
    assert inside.all()
    np.testing.assert_array_equal(a.x, x.astype(np.float64))
    np.testing.assert_array_equal(a.y, y.astype(np.float64))
    assert (a.x[0], a.y[0]) == (122.0, 2494.0)  # the hand-computed point above
    np.testing.assert_allclose(a.duration, [250.0, 500.0])  # FPOGD s -> ms
    assert a.run.tolist() == [0, 0] and a.run.dtype == np.int64
    assert a.x.dtype == np.float64 and a.duration.dtype == np.float64
    assert a.source == (f"{path}:4-6",)

    b = gaze.records[ID_B]
    x, y, _ = expected_xy([0.5, 0.45], [0.5, 0.55], SIZE_B, PADS_B)
    np.testing.assert_array_equal(b.x, x)
    np.testing.assert_array_equal(b.y, y)
    assert b.run.tolist() == [1, 1]
    assert "9 rows" in gaze.summary() and "3 rows of 2 calibration images" in gaze.summary()


def test_read_fixations_valid_only_and_no_session(tmp_path, master):
    gaze = read_egd_fixations(write_fixations(tmp_path), master, IMAGE_SIZES, valid_only=True)
    assert gaze.invalid_rows == 1
    assert len(gaze.records[ID_B]) == 1
    np.testing.assert_allclose(gaze.records[ID_B].duration, [300.0])
    gaze = read_egd_fixations(write_fixations(tmp_path, drop=["SESSION_ID"]), master, IMAGE_SIZES)
    assert gaze.records[ID_A].run.tolist() == [-1, -1]


def test_read_fixations_calibrate_shifts_by_offset(tmp_path, master):
    gaze = read_egd_fixations(write_fixations(tmp_path), master, IMAGE_SIZES, calibrate=True)
    # Last samples: CAL_A (0.51, 0.48) -> (979.2, 518.4); CAL_B (0.47, 0.51) -> (902.4, 550.8).
    # Offset = centre - mean = (960 - 940.8, 540 - 534.6) = (19.2, 5.4).
    np.testing.assert_allclose(gaze.offset, (19.2, 5.4), atol=1e-9)
    x, y, _ = expected_xy([0.3, 0.5], [0.8, 0.5], SIZE_A, PADS_A, offset=gaze.offset)
    np.testing.assert_array_equal(gaze.records[ID_A].x, x)
    np.testing.assert_array_equal(gaze.records[ID_A].y, y)
    plain = read_egd_fixations(write_fixations(tmp_path), master, IMAGE_SIZES)
    assert gaze.records[ID_A].x[0] > plain.records[ID_A].x[0]  # shifted right by 19.2 screen px


def test_read_fixations_errors(tmp_path, master):
    with pytest.raises(FileNotFoundError, match="fixations.csv"):
        read_egd_fixations(tmp_path / "fixations.csv", master, IMAGE_SIZES)
    path = write_fixations(tmp_path, drop=["FPOGD"])
    with pytest.raises(EgdFormatError, match=r"fixations\.csv.*FPOGD.*found.*DICOM_ID"):
        read_egd_fixations(path, master, IMAGE_SIZES)
    rows = list(FIXATION_ROWS)
    rows[4] = (1, ID_A.upper(), "n/a", 0.5, 0.5, 1)
    path = write_fixations(tmp_path, rows)
    with pytest.raises(EgdFormatError, match=r"fixations\.csv:6: column FPOGX"):
        read_egd_fixations(path, master, IMAGE_SIZES)


# ----------------------------------------------------------------------------- heatmaps


def test_egd_heatmap_matches_gaussian_filter_of_counts():
    height, width, sigma = 60, 80, 5.0
    xs = np.array([10, 10, 40, 79, 0])
    ys = np.array([5, 5, 30, 59, 20])  # two fixations on one pixel; some on the border
    record = FixationRecord(
        image_id="x", width=width, height=height, x=xs.astype(np.float64), y=ys.astype(np.float64),
        duration=np.array([100.0, 900.0, 50.0, 300.0, 10.0]), run=np.full(5, -1, dtype=np.int64),
    )
    counts = np.zeros((height, width))
    np.add.at(counts, (ys, xs), 1.0)
    expected = gaussian_filter(counts, sigma, mode="constant", cval=0.0, truncate=20.0)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    heatmap = egd_heatmap(record, sigma=sigma)
    assert heatmap.shape == (height, width)
    np.testing.assert_allclose(heatmap.numpy(), expected, atol=1e-5)
    weighted = egd_heatmap(record, sigma=sigma, duration_weighted=True)
    assert not np.allclose(weighted.numpy(), heatmap.numpy(), atol=1e-3)
    assert egd_heatmap(record, sigma=sigma, size=(30, 40)).shape == (30, 40)
    assert EGD_SIGMA == 150.0 and SCREEN_SIZE == (1920, 1080)


# ----------------------------------------------------------------------------- heatmap PNGs


def viridis_uint8() -> np.ndarray:
    """matplotlib's viridis table as plt.imsave writes it: (256, 3) uint8."""
    return colormaps["viridis"](np.arange(256), bytes=True)[:, :3]


def shared_level(levels: np.ndarray) -> np.ndarray:
    """Mean index of the table entries with the same uint8 colour as each level."""
    lut = viridis_uint8().astype(int)
    same = (lut[:, None, :] == lut[None, :, :]).all(-1)  # (256, 256)
    means = (same * np.arange(256)).sum(1) / same.sum(1)
    return means[levels]


def test_viridis_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([np.linspace(0, 1, 64 * 8), rng.random(64 * 24)]).reshape(64, 32)
    path = tmp_path / "heatmap.png"
    plt.imsave(path, values, cmap="viridis")  # min-max, viridis, RGBA: as the EGD script
    decoded = read_heatmap_png(path)
    assert decoded.shape == values.shape and decoded.dtype == np.float32
    normalised = (values - values.min()) / (values.max() - values.min())
    levels = np.minimum(np.floor(normalised * 256), 255).astype(int)  # matplotlib's quantiser
    np.testing.assert_allclose(decoded, shared_level(levels) / 255, atol=1e-7)
    error = np.abs(decoded - normalised)
    tied = shared_level(levels) != levels  # two levels share one uint8 colour: decoded between
    assert tied.any() and (~tied).any()
    assert error[~tied].max() <= 1 / 255 + 1e-6
    assert error[tied].max() <= 1.5 / 255


def test_luma_reading_matches_published_values(tmp_path):
    values = np.linspace(0, 1, 256).reshape(16, 16)
    path = tmp_path / "heatmap.png"
    plt.imsave(path, values, cmap="viridis")
    luma = read_heatmap_png(path, mode="luma")
    lut = viridis_uint8().astype(np.float64)
    rec601 = (0.299 * lut[:, 0] + 0.587 * lut[:, 1] + 0.114 * lut[:, 2]) / 255
    assert luma.min() == pytest.approx(rec601[0], abs=1 / 255)
    assert luma.max() == pytest.approx(rec601[255], abs=1 / 255)
    assert luma.min() == pytest.approx(0.12, abs=0.01)
    assert luma.max() == pytest.approx(0.85, abs=0.01)


def test_decode_viridis_perturbed_colours_go_to_nearest_level():
    lut = viridis_uint8().astype(int)
    rng = np.random.default_rng(1)
    levels = np.array([0, 17, 60, 128, 200, 255])
    noisy = np.clip(lut[levels] + rng.integers(-2, 3, size=(6, 3)), 0, 255)
    picture = np.concatenate([noisy, np.full((6, 1), 255)], 1).astype(np.uint8)[None]  # (1, 6, 4)
    decoded = decode_viridis(picture)[0] * 255
    distances = np.sqrt(((noisy[:, None, :] - lut[None, :, :]) ** 2).sum(-1))  # (6, 256)
    chosen = distances[np.arange(6), np.floor(decoded + 1e-4).astype(int)]
    np.testing.assert_allclose(chosen, distances.min(1))
    assert np.abs(decoded - levels).max() <= 3


def test_read_heatmap_png_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_heatmap_png(tmp_path / "missing.png")
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(EgdFormatError, match="grey.png"):
        read_heatmap_png(tmp_path / "grey.png")
    Image.fromarray(np.repeat(grey[..., None], 3, 2)).save(tmp_path / "grey_rgb.png")
    with pytest.raises(EgdFormatError, match="grey_rgb.png"):
        read_heatmap_png(tmp_path / "grey_rgb.png")
    assert read_heatmap_png(tmp_path / "grey.png", mode="luma").max() == pytest.approx(252 / 255)
