"""Tests for gaze/synthetic/cxr.py: the synthetic CXR-Eye (EGD-CXR + MIMIC-CXR-JPG) miniature."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from gaze.synthetic import cub as demo
from gaze.synthetic import cxr as demo_cxr
from gaze.synthetic.cxr import (
    EGD_DIR,
    MARKER_NAME,
    MIMIC_DIR,
    ensure_synthetic_cxr_eye,
    image_to_screen,
    make_synthetic_cxr_eye,
    screen_padding,
)
from gaze.attention.egd import screen_to_image

SMALL = dict(images_per_class=6, image_size=(120, 160), seed=3)
MASTER_COLUMNS = [
    "dicom_id",
    "path",
    "patient_id",
    "study_id",
    "stay_id",
    "gender",
    "anchor_age",
    "image_top_pad",
    "image_bottom_pad",
    "image_left_pad",
    "image_right_pad",
    "Normal",
    "CHF",
    "pneumonia",
    "cardiomegaly__chx",
    "edema__chx",
    "pleural_effusion__chx",
    "pneumonia__chx",
    "consolidation__chx",
    "no_finding__chx",
]
FIXATION_COLUMNS = [
    "SESSION_ID",
    "DICOM_ID",
    "CNT",
    "Time (in secs)",
    "TIMETICK",
    "FPOGX",
    "FPOGY",
    "FPOGS",
    "FPOGD",
    "FPOGID",
    "FPOGV",
    "X_ORIGINAL",
    "Y_ORIGINAL",
]
PAD_COLUMNS = ["image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad"]
DICOM_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return make_synthetic_cxr_eye(tmp_path_factory.mktemp("cxr") / "synthetic_cxr", **SMALL)


def _master(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / EGD_DIR / "master_sheet.csv")


def _fixations(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / EGD_DIR / "fixations.csv")


def _jpg(root: Path, path: str) -> Path:
    return root / MIMIC_DIR / (path[: -len(".dcm")] + ".jpg")


def _image_sizes(root: Path, master: pd.DataFrame) -> dict[str, tuple[int, int]]:
    sizes = {}
    for dicom_id, path in zip(master.dicom_id, master.path):
        with Image.open(_jpg(root, path)) as image:
            sizes[dicom_id] = image.size
    return sizes


def _published_mapping(fpogx, fpogy, top, bottom, left, right, width, height) -> tuple[int, int]:
    """cxr.md §1.3, written out per point in plain Python."""
    ex, ey = fpogx * 1920, fpogy * 1080
    if left < ex < 1920 - right and top < ey < 1080 - bottom:
        even_width, even_height = width + width % 2, height + height % 2
        x = int((ex - left) * even_width / (1920 - left - right))
        y = int((ey - top) * even_height / (1080 - top - bottom))
        return x, y
    return -1, -1


def test_layout_and_master_sheet(small_set):
    assert (small_set / "README.txt").read_text().startswith("SYNTHETIC DATA")
    marker = json.loads((small_set / MARKER_NAME).read_text())
    assert marker["num_images"] == 18 and marker["seed"] == SMALL["seed"]
    assert marker["generator_version"] == demo_cxr.GENERATOR_VERSION
    assert MARKER_NAME == demo.MARKER_NAME
    master = _master(small_set)
    assert list(master.columns) == MASTER_COLUMNS and len(master) == 18
    assert master.dicom_id.is_unique and all(DICOM_ID.match(d) for d in master.dicom_id)
    for row in master.itertuples():
        patient, study = str(row.patient_id), str(row.study_id)
        assert len(patient) == 8 and patient[0] == "1" and len(study) == 8 and study[0] == "5"
        assert row.path == f"files/p{patient[:2]}/p{patient}/s{study}/{row.dicom_id}.dcm"
        assert row.gender in ("M", "F") and re.fullmatch(r"[2-7]0 - [3-8]0", row.anchor_age)
    assert master.study_id.is_unique
    chexpert = master[[c for c in MASTER_COLUMNS if c.endswith("__chx")]].to_numpy()
    assert set(np.unique(chexpert[~np.isnan(chexpert)])) <= {-1.0, 0.0, 1.0}
    assert (master.loc[master.Normal == 1, "cardiomegaly__chx"].fillna(0) != 1).all()


def test_labels_are_one_hot_and_balanced(small_set):
    master = _master(small_set)
    labels = master[["Normal", "CHF", "pneumonia"]].to_numpy()
    assert set(np.unique(labels)) == {0, 1} and (labels.sum(axis=1) == 1).all()
    assert labels.sum(axis=0).tolist() == [6, 6, 6]
    assert labels.argmax(axis=1).tolist() != sorted(labels.argmax(axis=1).tolist())  # rows shuffled


def test_jpgs_are_grey_portrait_with_the_recorded_padding(small_set):
    master = _master(small_set)
    widths = []
    for row in master.itertuples():
        with Image.open(_jpg(small_set, row.path)) as image:
            assert image.format == "JPEG" and image.mode == "L"
            width, height = image.size
        widths.append(width)
        assert 120 <= height <= 160 and 0.77 <= width / height <= 0.96
        shown_width = round(width * 1024 / height)  # longer side (height) shown at 1024 px
        assert (row.image_top_pad, row.image_bottom_pad) == (28, 28)
        assert row.image_left_pad == (1920 - shown_width) // 2
        assert row.image_left_pad + row.image_right_pad == 1920 - shown_width
        padding = demo_cxr.ScreenPadding(28, 28, row.image_left_pad, row.image_right_pad)
        assert screen_padding(width, height) == padding
        heatmap = small_set / EGD_DIR / "fixation_heatmaps" / row.dicom_id / "heatmap.png"
        with Image.open(heatmap) as image:
            assert image.mode == "RGBA" and image.size == (width, height)


def test_same_seed_same_tables_other_seed_differs(small_set, tmp_path):
    again = make_synthetic_cxr_eye(tmp_path / "again", **SMALL)
    for name in ("master_sheet.csv", "fixations.csv"):
        assert (again / EGD_DIR / name).read_bytes() == (small_set / EGD_DIR / name).read_bytes()
    first = _master(small_set).path.iloc[0]
    assert _jpg(again, first).read_bytes() == _jpg(small_set, first).read_bytes()
    other = make_synthetic_cxr_eye(tmp_path / "other", **dict(SMALL, seed=4), with_heatmap_pngs=False)
    fixations = EGD_DIR + "/fixations.csv"
    assert (other / fixations).read_bytes() != (small_set / fixations).read_bytes()
    assert set(_master(other).dicom_id).isdisjoint(_master(small_set).dicom_id)
    assert not (other / EGD_DIR / "fixation_heatmaps").exists()


def test_original_coordinates_follow_the_published_mapping(small_set):
    master = _master(small_set).set_index("dicom_id")
    sizes = _image_sizes(small_set, master.reset_index())
    fixations = _fixations(small_set)
    assert list(fixations.columns) == FIXATION_COLUMNS
    cxr = fixations[fixations.DICOM_ID.str.lower().isin(master.index)]
    outside = 0
    for row in cxr.itertuples(index=False):
        dicom_id = row.DICOM_ID.lower()
        pads = master.loc[dicom_id, PAD_COLUMNS]
        expected = _published_mapping(row.FPOGX, row.FPOGY, *pads.tolist(), *sizes[dicom_id])
        assert (row.X_ORIGINAL, row.Y_ORIGINAL) == expected
        width, height = sizes[dicom_id]
        assert -1 <= row.X_ORIGINAL < width and -1 <= row.Y_ORIGINAL < height
        outside += row.X_ORIGINAL == -1
    assert 0 < outside < 0.12 * len(cxr)  # ~5 % in the screen padding
    assert (cxr.X_ORIGINAL == -1).equals(cxr.Y_ORIGINAL == -1)


def test_inverse_mapping_round_trips_for_every_pixel_bin():
    rng = np.random.default_rng(0)
    for width, height in [(101, 128), (100, 128), (307, 390), (2544, 3056), (2545, 3057)]:
        pad = screen_padding(width, height)
        x = np.concatenate([rng.uniform(0, width, 500), [0.0, width - 1e-6, width - 1.0]])
        y = np.concatenate([rng.uniform(0, height, 500), [height - 1e-6, 0.0, 0.5]])
        fpogx, fpogy = image_to_screen(x, y, width, height, pad)
        assert np.array_equal(fpogx, np.round(fpogx, 5))  # written with 5 decimals
        mapped_x, mapped_y, _ = screen_to_image(fpogx, fpogy, pad.top, pad.bottom, pad.left, pad.right, width, height)
        assert np.array_equal(mapped_x, np.floor(x).astype(int))
        assert np.array_equal(mapped_y, np.floor(y).astype(int))
        independent = [
            _published_mapping(fx, fy, pad.top, pad.bottom, pad.left, pad.right, width, height)
            for fx, fy in zip(fpogx[:50].tolist(), fpogy[:50].tolist())
        ]
        assert independent == list(zip(mapped_x[:50].tolist(), mapped_y[:50].tolist()))
    pad = screen_padding(100, 128)
    x, y, _ = screen_to_image(np.array([0.1, 0.5, 0.5]), np.array([0.5, 0.01, 0.5]),
                              pad.top, pad.bottom, pad.left, pad.right, 100, 128)
    assert x.tolist() == [-1, -1, 50] and y.tolist() == [-1, -1, 64]


def test_calibration_images_are_truncated_ids_absent_from_the_sheet(small_set):
    master = _master(small_set)
    fixations = _fixations(small_set)
    calibration = fixations[~fixations.DICOM_ID.str.lower().isin(master.dicom_id)]
    ids = set(calibration.DICOM_ID)
    assert len(ids) >= 1
    truncated = {d[:-5].upper() for d in master.dicom_id}
    assert ids <= truncated and all(len(i) == 44 - 5 for i in ids)
    assert (calibration.X_ORIGINAL == -1).all() and (calibration.Y_ORIGINAL == -1).all()
    assert np.abs(calibration.FPOGX - 0.5).max() < 0.03 and np.abs(calibration.FPOGY - 0.5).max() < 0.03
    assert set(fixations.DICOM_ID[~fixations.DICOM_ID.isin(ids)].str.lower()) == set(master.dicom_id)


def test_fixation_timing_and_sessions(small_set):
    master = _master(small_set)
    fixations = _fixations(small_set)
    cxr = fixations[fixations.DICOM_ID.str.lower().isin(master.dicom_id)]
    counts = cxr.groupby("DICOM_ID").size()
    assert len(counts) == 18 and counts.min() >= 25 and counts.max() <= 60
    assert cxr.FPOGD.min() > 0.06 and 0.22 <= cxr.FPOGD.median() <= 0.34
    assert cxr.FPOGV.mean() > 0.9 and set(cxr.FPOGV) <= {0, 1}
    for _, session in fixations.groupby("SESSION_ID"):
        assert session.DICOM_ID.nunique() <= 30
        assert (np.diff(session.FPOGS) > 0).all() and (np.diff(session.CNT) > 0).all()
        assert (np.diff(session.TIMETICK) > 0).all() and (np.diff(session.FPOGID) == 1).all()
        assert np.allclose(session["Time (in secs)"], session.FPOGS + session.FPOGD, atol=2e-5)
        # each image's fixations are contiguous within its session
        changes = (session.DICOM_ID != session.DICOM_ID.shift()).sum()
        assert changes == session.DICOM_ID.nunique()


def test_gaze_goes_to_the_findings(small_set):
    """CHF: heart borders and costophrenic angles pull fixations down; pneumonia: one cluster."""
    master = _master(small_set)
    sizes = _image_sizes(small_set, master)
    fixations = _fixations(small_set)
    fixations = fixations[fixations.X_ORIGINAL >= 0]
    labels = master[["Normal", "CHF", "pneumonia"]].to_numpy().argmax(axis=1)
    label = dict(zip(master.dicom_id.str.upper(), labels))
    depth = {0: [], 1: []}
    clustered = {0: [], 2: []}
    for dicom_id, group in fixations.groupby("DICOM_ID"):
        width, height = sizes[dicom_id.lower()]
        y = group.Y_ORIGINAL.to_numpy() / height
        if label[dicom_id] in depth:
            depth[label[dicom_id]].append(y.mean())
        if label[dicom_id] in clustered:
            points = group[["X_ORIGINAL", "Y_ORIGINAL"]].to_numpy() / height
            near = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1)) < 0.06
            clustered[label[dicom_id]].append(near.sum(axis=1).max() / len(points))
    assert np.mean(depth[1]) > np.mean(depth[0]) + 0.04
    assert np.mean(clustered[2]) > np.mean(clustered[0]) + 0.1


def test_heatmap_png_is_the_published_recipe(small_set):
    master = _master(small_set)
    sizes = _image_sizes(small_set, master)
    fixations = _fixations(small_set)
    viridis = matplotlib.colormaps["viridis"]
    for dicom_id in master.dicom_id[:6]:
        width, height = sizes[dicom_id]
        group = fixations[(fixations.DICOM_ID == dicom_id.upper()) & (fixations.X_ORIGINAL >= 0)]
        counts = np.zeros((height, width))
        np.add.at(counts, (group.Y_ORIGINAL.to_numpy(), group.X_ORIGINAL.to_numpy()), 1)
        expected = gaussian_filter(counts, sigma=150 * max(width, height) / 3056)
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        with Image.open(small_set / EGD_DIR / "fixation_heatmaps" / dicom_id / "heatmap.png") as image:
            rgba = np.asarray(image)
        assert rgba.shape == (height, width, 4) and (rgba[..., 3] == 255).all()
        assert (rgba == viridis(expected, bytes=True)).all(axis=2).mean() > 0.999
        brightest = np.unravel_index(np.argmax(rgba[..., 0].astype(int) + rgba[..., 1]), (height, width))
        peak = np.unravel_index(np.argmax(expected), (height, width))
        assert np.hypot(*np.subtract(brightest, peak)) <= 0.03 * height
        assert tuple(rgba[brightest][:3]) == tuple(viridis(1.0, bytes=True)[:3])  # viridis yellow


def test_patients_with_two_images_share_ids(tmp_path):
    root = make_synthetic_cxr_eye(
        tmp_path / "bigger", images_per_class=12, image_size=(64, 80), seed=1, with_heatmap_pngs=False
    )
    master = _master(root)
    per_patient = master.groupby("patient_id")
    twice = [group for _, group in per_patient if len(group) == 2]
    assert len(twice) == 3 and per_patient.size().max() == 2  # one pair per class
    for group in twice:
        assert group.study_id.nunique() == 2 and group.dicom_id.nunique() == 2
        assert group[["Normal", "CHF", "pneumonia"]].nunique().max() == 1  # same class
        assert group.gender.nunique() == 1 and group.anchor_age.nunique() == 1
        assert group.path.str.split("/").str[2].nunique() == 1  # the same pXXXXXXXX folder
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["num_patients"] == master.patient_id.nunique() == 33


def test_ensure_reuses_regenerates_and_refuses(tmp_path, capsys):
    root = tmp_path / "synthetic_cxr"
    kwargs = dict(images_per_class=1, image_size=(64, 72))
    ensure_synthetic_cxr_eye(root, **kwargs)
    assert "SYNTHETIC" in capsys.readouterr().out
    sheet = root / EGD_DIR / "master_sheet.csv"
    os.utime(sheet, ns=(1, 1))  # any rewrite would move the mtime
    ensure_synthetic_cxr_eye(root, **dict(kwargs, image_size=[64, 72]))
    assert "SYNTHETIC" in capsys.readouterr().out and sheet.stat().st_mtime_ns == 1

    ensure_synthetic_cxr_eye(root, verbose=False, **dict(kwargs, images_per_class=2))  # other parameters
    assert json.loads((root / MARKER_NAME).read_text())["images_per_class"] == 2 and len(_master(root)) == 6

    (root / MARKER_NAME).unlink()  # as if killed before the end
    ensure_synthetic_cxr_eye(root, verbose=False, **dict(kwargs, images_per_class=2))
    assert (root / MARKER_NAME).is_file()

    real = tmp_path / "egd-cxr"
    real.mkdir()
    (real / "master_sheet.csv").write_text("dicom_id,path\n")
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        ensure_synthetic_cxr_eye(real, verbose=False, **kwargs)
    assert (real / "master_sheet.csv").read_text() == "dicom_id,path\n"


def test_main_writes_the_set(tmp_path):
    root = tmp_path / "cli"
    args = [str(root), "--images-per-class", "1", "--image-size", "64", "72", "--seed", "5"]
    args.append("--no-heatmap-pngs")
    assert demo_cxr.main(args) == 0
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["seed"] == 5 and marker["with_heatmap_pngs"] is False and marker["num_images"] == 3
    assert not (root / EGD_DIR / "fixation_heatmaps").exists()


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_cxr_eye(tmp_path / "a", images_per_class=1, image_size=(200, 100))
    with pytest.raises(ValueError, match="images_per_class"):
        make_synthetic_cxr_eye(tmp_path / "b", images_per_class=0)
