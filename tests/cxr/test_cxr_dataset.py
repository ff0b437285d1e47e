"""Tests for cxr/dataset.py: the MIMIC-CXR-JPG + EGD-CXR catalogue, gaze maps, dataset items."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cxr.dataset import (
    GAZE_RENDER_SIDE,
    CXREyeDataset,
    gaze_sigma_for,
    image_path,
    load_catalogue,
    render_size,
)
from gaze.data.images import load_rgb_image
from gaze.synthetic.cxr import EGD_DIR, MIMIC_DIR, make_synthetic_cxr_eye
from gaze.attention.egd import CLASS_NAMES, egd_heatmap, read_egd_fixations, read_heatmap_png, read_master_sheet
from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_resize_transforms, denormalize

TINY = dict(images_per_class=4, image_size=(80, 100), seed=5, with_heatmap_pngs=True)


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> Path:
    """A synthetic CXR-Eye tree of 12 small radiographs, with heatmap PNGs."""
    return make_synthetic_cxr_eye(tmp_path_factory.mktemp("cxr_dataset") / "synthetic", **TINY)


@pytest.fixture(scope="module")
def catalogue(tiny_tree):
    return load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, gaze_source="fixations")


@pytest.fixture(scope="module")
def png_catalogue(tiny_tree):
    return load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, gaze_source="heatmaps")


def _raw_master(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / EGD_DIR / "master_sheet.csv", dtype={"dicom_id": str, "patient_id": str})


def _jpg(root: Path, sheet_path: str) -> Path:
    return root / MIMIC_DIR / (sheet_path[: -len(".dcm")] + ".jpg")


def _jpeg_sizes(root: Path) -> dict[str, tuple[int, int]]:
    master = _raw_master(root)
    sizes = {}
    for dicom_id, path in zip(master.dicom_id, master.path):
        with Image.open(_jpg(root, path)) as image:
            sizes[dicom_id] = image.size
    return sizes


def _copy_tree(tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    return copy


# ----------------------------------------------------------------------------- catalogue
def test_catalogue_has_every_image_with_labels_sizes_and_report(tiny_tree, catalogue):
    master = _raw_master(tiny_tree)
    frame = catalogue.frame
    assert len(master) == 3 * TINY["images_per_class"]
    assert sorted(frame["dicom_id"]) == sorted(master["dicom_id"])
    expected_label = dict(zip(master.dicom_id, master[list(CLASS_NAMES)].to_numpy().argmax(1)))
    assert {d: int(l) for d, l in zip(frame.dicom_id, frame.label)} == expected_label
    sizes = _jpeg_sizes(tiny_tree)
    assert {d: (int(w), int(h)) for d, w, h in zip(frame.dicom_id, frame.width, frame.height)} == sizes
    paths = dict(zip(master.dicom_id, master.path))
    assert all(Path(p) == _jpg(tiny_tree, paths[d]) for d, p in zip(frame.dicom_id, frame.image_path))
    assert dict(zip(frame.dicom_id, frame.patient_id)) == dict(zip(master.dicom_id, master.patient_id))
    assert catalogue.gaze_source == "fixations"
    assert catalogue.counts == {"master_rows": 12, "images_missing": 0, "images_without_gaze": 0, "images": 12}

    fixations = pd.read_csv(tiny_tree / EGD_DIR / "fixations.csv", dtype={"DICOM_ID": str})
    calibration = ~fixations.DICOM_ID.str.lower().isin(master.dicom_id)
    rows, images = int(calibration.sum()), fixations.DICOM_ID[calibration].nunique()
    assert rows > 0  # the generator writes at least one calibration image
    assert f"Dropped {rows} rows of {images} calibration images" in catalogue.report
    per_class = master[list(CLASS_NAMES)].sum()
    assert f"used: 12 images of {master.patient_id.nunique()} patients" in catalogue.report
    assert ", ".join(f"{c} {int(per_class[c])}" for c in CLASS_NAMES) in catalogue.report


def test_sigma_and_render_size():
    assert gaze_sigma_for((2544, 3056), None) == pytest.approx(150.0)
    assert gaze_sigma_for((3056, 2544), None) == pytest.approx(150.0)
    assert gaze_sigma_for((80, 100), None) == pytest.approx(150.0 * 100 / 3056)
    assert gaze_sigma_for((80, 100), 7) == 7.0
    assert render_size((2544, 3056)) == (GAZE_RENDER_SIDE, round(2544 * 512 / 3056))  # (H, W)
    assert render_size((3056, 2544)) == (round(2544 * 512 / 3056), GAZE_RENDER_SIDE)
    assert render_size((1000, 500)) == (256, 512)
    assert render_size((512, 300)) == (300, 512)
    for size in [(80, 94), (73, 82), (300, 200)]:  # never upsized
        assert render_size(size) == (size[1], size[0])


def _independent_map(root: Path, dicom_id: str, sizes: dict) -> torch.Tensor:
    master = read_master_sheet(root / EGD_DIR / "master_sheet.csv")
    record = read_egd_fixations(root / EGD_DIR / "fixations.csv", master, sizes).records[dicom_id]
    size = sizes[dicom_id]
    return egd_heatmap(record, sigma=gaze_sigma_for(size, None), size=render_size(size))


def test_cached_map_is_the_rendered_recipe_in_8_bit(tiny_tree, catalogue):
    sizes = _jpeg_sizes(tiny_tree)
    for dicom_id in catalogue.frame.dicom_id[:5]:
        cached = catalogue.cache.get(dicom_id)
        expected = _independent_map(tiny_tree, dicom_id, sizes)
        width, height = sizes[dicom_id]
        assert cached.shape == (height, width) == expected.shape
        assert cached.dtype == torch.float32 and cached.max() == 1.0 and cached.min() == 0.0
        torch.testing.assert_close(cached, expected, atol=1 / 255 + 1e-6, rtol=0)
        assert torch.equal(cached * 255, (cached * 255).round())  # multiples of 1/255


def test_cached_map_of_a_large_image_is_rendered_at_the_working_size(tiny_tree, tmp_path):
    root = _copy_tree(tiny_tree, tmp_path)
    master = _raw_master(root)
    dicom_id, sheet_path = master.dicom_id[0], master.path[0]
    jpg = _jpg(root, sheet_path)
    with Image.open(jpg) as image:
        big = image.resize((image.width * 7, image.height * 7), Image.BILINEAR)
    big.save(jpg, quality=90)  # longer side > 512: the map is rendered smaller than the image
    catalogue = load_catalogue(root / MIMIC_DIR, root / EGD_DIR)
    row = catalogue.frame.set_index("dicom_id").loc[dicom_id]
    assert (row.width, row.height) == big.size
    cached = catalogue.cache.get(dicom_id)
    expected = _independent_map(root, dicom_id, _jpeg_sizes(root))
    assert cached.shape == render_size(big.size) and max(cached.shape) == GAZE_RENDER_SIDE
    assert cached.shape[0] < big.height
    torch.testing.assert_close(cached, expected, atol=1 / 255 + 1e-6, rtol=0)


def test_heatmap_pngs_give_maps_close_to_the_fixation_maps(catalogue, png_catalogue):
    assert png_catalogue.gaze_source == "heatmaps" and len(png_catalogue.frame) == len(catalogue.frame)
    assert "12 heatmap.png files for the 12 images (read as viridis)" in png_catalogue.report
    for dicom_id in catalogue.frame.dicom_id:
        rendered = catalogue.cache.get(dicom_id).numpy()
        decoded = png_catalogue.cache.get(dicom_id).numpy()
        assert decoded.shape == rendered.shape
        assert decoded.min() == 0.0 and decoded.max() == 1.0
        pearson = np.corrcoef(rendered.ravel(), decoded.ravel())[0, 1]
        assert pearson > 0.95, (dicom_id, pearson)
        peak_rendered = np.unravel_index(rendered.argmax(), rendered.shape)
        peak_decoded = np.unravel_index(decoded.argmax(), decoded.shape)
        assert np.hypot(*np.subtract(peak_rendered, peak_decoded)) <= 3.0, dicom_id


def test_luma_reading_is_the_published_grey(tiny_tree, catalogue):
    dicom_id = catalogue.frame.dicom_id[0]
    path = tiny_tree / EGD_DIR / "fixation_heatmaps" / dicom_id / "heatmap.png"
    luma = read_heatmap_png(path, mode="luma")
    with Image.open(path) as image:
        rgb = np.asarray(image)[..., :3].astype(np.float64)
    rec601 = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    assert luma.shape == rec601.shape and luma.dtype == np.float32
    assert np.abs(luma - rec601).max() <= 1 / 255 + 1e-6
    assert luma.min() == pytest.approx(0.12, abs=0.01)  # viridis dark purple, not 0
    assert luma.max() == pytest.approx(0.85, abs=0.01)  # viridis yellow, not 1

    luma_catalogue = load_catalogue(
        tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, gaze_source="heatmaps", heatmap_png_mode="luma")
    cached = luma_catalogue.cache.get(dicom_id)
    assert "(read as luma)" in luma_catalogue.report
    assert float(cached.min()) == pytest.approx(0.12, abs=0.01)
    dataset = CXREyeDataset(luma_catalogue, [0], build_resize_transforms(False, (48, 40)), with_gaze=True)
    gaze = dataset[0]["gaze"]  # the raw luma reading reaches the model (HAFC's y_hm needs it)
    assert float(gaze.min()) == pytest.approx(0.12, abs=0.01) and float(gaze.max()) == pytest.approx(0.85, abs=0.03)


# ----------------------------------------------------------------------------- image paths
def test_image_path_under_root_or_files_folder(tmp_path):
    sheet = " files/p10/p10000032/s50414267/abc.dcm "
    assert image_path(tmp_path, sheet) == tmp_path / "files/p10/p10000032/s50414267/abc.jpg"
    assert image_path(tmp_path / "files", sheet) == tmp_path / "files/p10/p10000032/s50414267/abc.jpg"


def test_mimic_root_may_be_the_files_folder(tiny_tree, catalogue):
    other = load_catalogue(tiny_tree / MIMIC_DIR / "files", tiny_tree / EGD_DIR)
    assert list(other.frame.dicom_id) == list(catalogue.frame.dicom_id)
    assert [Path(p) for p in other.frame.image_path] == [Path(p) for p in catalogue.frame.image_path]
    assert all(Path(p).is_file() for p in other.frame.image_path)


def test_missing_image_is_left_out_and_reported(tiny_tree, tmp_path):
    root = _copy_tree(tiny_tree, tmp_path)
    master = _raw_master(root)
    missing = _jpg(root, master.path[3])
    missing.unlink()
    catalogue = load_catalogue(root / MIMIC_DIR, root / EGD_DIR)
    assert master.dicom_id[3] not in set(catalogue.frame.dicom_id)
    assert len(catalogue.frame) == len(master) - 1
    assert catalogue.counts["images_missing"] == 1 and catalogue.counts["images"] == len(master) - 1
    assert "1 images missing" in catalogue.report and str(missing) in catalogue.report


def test_no_matching_image_names_mimic_root(tiny_tree, tmp_path):
    nowhere = tmp_path / "not_mimic"
    nowhere.mkdir()
    with pytest.raises(FileNotFoundError, match="mimic_root") as error:
        load_catalogue(nowhere, tiny_tree / EGD_DIR)
    assert str(nowhere) in str(error.value)


def test_image_without_fixations_is_left_out_and_counted(tiny_tree, tmp_path):
    root = _copy_tree(tiny_tree, tmp_path)
    master = _raw_master(root)
    dropped = master.dicom_id[5]
    path = root / EGD_DIR / "fixations.csv"
    fixations = pd.read_csv(path, dtype=str, keep_default_na=False)
    kept = fixations[fixations.DICOM_ID.str.lower() != dropped]
    assert len(kept) < len(fixations)
    kept.to_csv(path, index=False, lineterminator="\n")
    catalogue = load_catalogue(root / MIMIC_DIR, root / EGD_DIR)
    assert dropped not in set(catalogue.frame.dicom_id) and len(catalogue.frame) == len(master) - 1
    assert catalogue.counts["images_without_gaze"] == 1 and catalogue.counts["images_missing"] == 0
    assert "1 images have no gaze" in catalogue.report and dropped in catalogue.report


def test_unknown_gaze_source_and_missing_heatmaps_dir(tiny_tree, tmp_path):
    with pytest.raises(ValueError, match="gaze_source"):
        load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, gaze_source="pngs")
    with pytest.raises(FileNotFoundError, match="heatmaps_dir"):
        load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, gaze_source="heatmaps",
                       heatmaps_dir=tmp_path / "absent")


# ----------------------------------------------------------------------------- dataset items
def test_dataset_items(tiny_tree, catalogue):
    rows = [0, 4, 7]
    transform = build_resize_transforms(False, (48, 40))
    with_gaze = CXREyeDataset(catalogue, rows, transform, with_gaze=True)
    without = CXREyeDataset(catalogue, rows, transform, with_gaze=False)
    assert len(with_gaze) == 3 and "images=3" in repr(with_gaze)
    for k, row in enumerate(rows):
        expected = catalogue.frame.iloc[row]
        item = with_gaze[k]
        assert set(item) == {"image", "label", "gaze", "id"}
        assert item["id"] == expected.dicom_id
        assert item["label"].dtype == torch.long and int(item["label"]) == int(expected.label)
        assert item["image"].shape == (3, 48, 40) and item["image"].dtype == torch.float32
        assert item["gaze"].shape == (1, 48, 40) and item["gaze"].dtype == torch.float32
        assert float(item["gaze"].min()) >= 0.0 and 0.9 < float(item["gaze"].max()) <= 1.0

        # Image: ImageNet-normalised resize of the grey JPEG (independent PIL resize).
        with Image.open(expected.image_path) as image:
            grey = np.asarray(image.convert("L").resize((40, 48), Image.BILINEAR), dtype=np.float64) / 255
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        assert abs(float((item["image"] * std + mean).mean()) - grey.mean()) < 0.01
        restored = denormalize(item["image"]).numpy()
        assert np.abs(restored - grey[None]).mean() < 0.02
        assert np.abs(restored[0] - restored[2]).max() < 1e-6  # still grey

        # Gaze: the cached map resized to 48x40, values as cached.
        cached = catalogue.cache.get(expected.dicom_id)[None, None]
        resized = F.interpolate(cached, size=(48, 40), mode="bilinear", antialias=True, align_corners=False)[0]
        torch.testing.assert_close(item["gaze"], resized.clamp(0, 1), atol=1e-4, rtol=0)

        plain = without[k]
        assert set(plain) == {"image", "label", "id"}
        assert torch.equal(plain["image"], item["image"]) and plain["id"] == item["id"]


def test_dataset_draft_size_keeps_the_output_shape(catalogue):
    transform = build_resize_transforms(False, (24, 20))
    row = catalogue.frame.iloc[1]
    draft_size = (20, 24)  # (W, H): the output size, as the training scripts request it
    with Image.open(row.image_path) as image:
        decoded = load_rgb_image(row.image_path, draft_size).size
        assert decoded[0] <= image.width / 2 + 1 and decoded[1] <= image.height / 2 + 1  # 1/2 or less
    full = CXREyeDataset(catalogue, [1], transform, with_gaze=True)[0]
    draft = CXREyeDataset(catalogue, [1], transform, with_gaze=True, draft_size=draft_size)[0]
    assert draft["image"].shape == (3, 24, 20) and draft["gaze"].shape == (1, 24, 20)
    assert draft["id"] == full["id"] and torch.equal(draft["label"], full["label"])
    # The map follows the (smaller) decoded image first, then the output size: nearly the same.
    assert (draft["gaze"] - full["gaze"]).abs().max() < 0.05
    assert (denormalize(draft["image"]) - denormalize(full["image"])).abs().mean() < 0.03


def test_disk_cache_is_shared_between_catalogues(tiny_tree, tmp_path):
    first = load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, cache_dir=tmp_path / "cache")
    dicom_id = first.frame.dicom_id[2]
    rendered = first.cache.get(dicom_id)
    files = list((tmp_path / "cache").glob(f"cxr-gaze-*/{dicom_id}.png"))
    assert len(files) == 1
    with Image.open(files[0]) as image:
        assert np.array_equal(np.asarray(image), np.rint(rendered.numpy() * 255).astype(np.uint8))
    Image.fromarray(np.full(tuple(rendered.shape), 77, dtype=np.uint8)).save(files[0])  # a marker
    second = load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, cache_dir=tmp_path / "cache")
    assert torch.allclose(second.cache.get(dicom_id), torch.full(tuple(rendered.shape), 77 / 255))
    other = load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, sigma=3.0, cache_dir=tmp_path / "cache")
    assert not torch.allclose(other.cache.get(dicom_id), torch.full(tuple(rendered.shape), 77 / 255))
    assert len(list((tmp_path / "cache").iterdir())) == 2  # sigma is part of the folder name


@pytest.mark.parametrize("source", ["fixations", "heatmaps"])
def test_dataset_pickles_for_spawned_workers(tiny_tree, source):
    catalogue = load_catalogue(tiny_tree / MIMIC_DIR, tiny_tree / EGD_DIR, gaze_source=source)
    dataset = CXREyeDataset(catalogue, [0, 1], build_resize_transforms(False, (24, 20)), with_gaze=True)
    clone = pickle.loads(pickle.dumps(dataset))  # what a spawned DataLoader worker receives
    item, copied = dataset[1], clone[1]
    assert copied["id"] == item["id"]
    assert torch.equal(copied["image"], item["image"]) and torch.equal(copied["gaze"], item["gaze"])
