"""Tests for cub/dataset.py on fake CUB trees built in tmp dirs (mmpretrain TestCUB pattern)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cub.dataset import CUBDataset, CUBFormatError
from gaze.attention.fixations import (
    FixationRecord,
    filter_by_duration,
    merge_by_image,
    read_fixations,
    write_fixations,
)
from gaze.attention.heatmap import render_heatmap, save_heatmap
from gaze.data.transforms import build_transforms
from gaze.synthetic.cub import make_synthetic_cub

TEST_TRANSFORM = build_transforms(train=False, input_size=32)
NUM_CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 4, 2


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_fake_cub(root: Path) -> Path:
    """3 classes x (4 train + 2 test) images of 40x30; image 2 is grey, image 3 is CMYK."""
    rng = np.random.default_rng(0)
    images, labels, split, boxes = [], [], [], []
    image_id = 0
    for label in range(1, NUM_CLASSES + 1):
        for k in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            image_id += 1
            relpath = f"{label:03d}.Bird_{label}/Bird_{label}_{k:04d}.jpg"
            pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if image_id == 2:
                image = image.convert("L")
            elif image_id == 3:
                image = image.convert("CMYK")
            (root / "images" / relpath).parent.mkdir(parents=True, exist_ok=True)
            image.save(root / "images" / relpath)
            images.append(f"{image_id} {relpath}")
            labels.append(f"{image_id} {label}")
            split.append(f"{image_id} {int(k < TRAIN_PER_CLASS)}")
            boxes.append(f"{image_id} 1.0 2.0 30.0 20.0")
    _write(root / "images.txt", images)
    _write(root / "image_class_labels.txt", labels)
    _write(root / "train_test_split.txt", split)
    _write(root / "bounding_boxes.txt", boxes)
    _write(root / "classes.txt", [f"{c} {c:03d}.Bird_{c}" for c in range(1, NUM_CLASSES + 1)])
    return root


def write_fake_fixations(root: Path, ids, extra_ids=(), size=(40, 30)) -> Path:
    rng = np.random.default_rng(1)
    records = []
    for image_id in list(ids) + list(extra_ids):
        n = 6
        records.append(
            FixationRecord(
                image_id=str(image_id),
                width=size[0],
                height=size[1],
                x=rng.integers(0, size[0], n).astype(float),
                y=rng.integers(0, size[1], n).astype(float),
                duration=np.full(n, 300.0),
                run=np.ones(n, dtype=np.int64),
            )
        )
    path = root / "gaze" / "Fixation_run1.txt"
    write_fixations(records, path)
    return path


@pytest.fixture()
def fake_cub(tmp_path) -> Path:
    return make_fake_cub(tmp_path / "CUB_200_2011")


@pytest.fixture(scope="module")
def demo_cub(tmp_path_factory) -> Path:
    return make_synthetic_cub(
        tmp_path_factory.mktemp("demo") / "Synthetic_CUB",
        num_classes=3,
        train_per_class=6,
        test_per_class=3,
        image_size=(64, 96),
        seed=1,
    )


# ----------------------------------------------------------------------------- layout and splits
def test_splits_labels_and_items(fake_cub):
    sizes = {
        s: len(CUBDataset(fake_cub, s, TEST_TRANSFORM, val_fraction=0.25))
        for s in ("train", "val", "test", "trainval")
    }
    assert sizes == {"trainval": 12, "test": 6, "val": 3, "train": 9}
    data = CUBDataset(fake_cub, "trainval", TEST_TRANSFORM, num_classes=3)
    assert data.class_names == ["Bird_1", "Bird_2", "Bird_3"] and data.num_classes == 3
    assert data.ids[:4] == ["1", "2", "3", "4"] and data.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert data.bounding_boxes.shape == (12, 4) and data.bounding_boxes[0].tolist() == [1.0, 2.0, 30.0, 20.0]
    for index in (1, 2):  # the grey and the CMYK image
        item = data[index]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["label"].dtype == torch.long and item["label"].ndim == 0 and item["id"] == str(index + 1)
        assert "gaze" not in item
    grey = data[1]["image"]
    assert torch.allclose(grey[0] * 0.229 + 0.485, grey[1] * 0.224 + 0.456, atol=1e-5)  # R == G


def test_val_split_is_stratified_seeded_and_disjoint(fake_cub):
    train = CUBDataset(fake_cub, "train", TEST_TRANSFORM, val_fraction=0.25, seed=5)
    val = CUBDataset(fake_cub, "val", TEST_TRANSFORM, val_fraction=0.25, seed=5)
    trainval = CUBDataset(fake_cub, "trainval", TEST_TRANSFORM)
    assert not set(train.ids) & set(val.ids) and sorted(train.ids + val.ids, key=int) == trainval.ids
    assert np.bincount(val.labels).tolist() == [1, 1, 1]
    assert CUBDataset(fake_cub, "val", TEST_TRANSFORM, val_fraction=0.25, seed=5).ids == val.ids
    with pytest.raises(ValueError, match="val_fraction"):
        CUBDataset(fake_cub, "val", TEST_TRANSFORM, val_fraction=0.0)


def test_test_split_excludes_training_images(fake_cub):
    test = CUBDataset(fake_cub, "test", TEST_TRANSFORM)
    assert test.ids == ["5", "6", "11", "12", "17", "18"]


# ----------------------------------------------------------------------------- errors
def test_missing_image_names_file_and_line(fake_cub):
    (fake_cub / "images" / "002.Bird_2" / "Bird_2_0001.jpg").unlink()  # id 8, line 8
    with pytest.raises(FileNotFoundError, match=r"Bird_2_0001\.jpg.*images\.txt:8.*1 of 12"):
        CUBDataset(fake_cub, "trainval", TEST_TRANSFORM)
    data = CUBDataset(fake_cub, "trainval", TEST_TRANSFORM, check_files=False)
    with pytest.raises(FileNotFoundError, match="Bird_2_0001.jpg"):
        data[data.ids.index("8")]


def test_bad_split_lines_name_file_and_line(fake_cub):
    path = fake_cub / "train_test_split.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + ["5 2"] + lines[5:]) + "\n")
    with pytest.raises(CUBFormatError, match=r"train_test_split\.txt:5: 2 must be one of \[0, 1\]"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)
    path.write_text("\n".join(lines[:6] + ["7 1 extra"] + lines[7:]) + "\n")
    with pytest.raises(CUBFormatError, match=r"train_test_split\.txt:7: expected 2 fields"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)


def test_malformed_images_txt_and_missing_metadata(fake_cub):
    images = fake_cub / "images.txt"
    lines = images.read_text().splitlines()
    images.write_text("\n".join(lines[:2] + ["x 001.Bird_1/Bird_1_0002.jpg"] + lines[3:]) + "\n")
    with pytest.raises(CUBFormatError, match=r"images\.txt:3: id 'x' is not an integer"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)
    images.write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(CUBFormatError, match=r"images\.txt:19: id 1 already on line 1"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)
    images.write_text("\n".join(lines) + "\n")
    (fake_cub / "image_class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match="image_class_labels.txt"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)


def test_id_mismatch_between_metadata_files(fake_cub):
    labels = fake_cub / "image_class_labels.txt"
    labels.write_text("\n".join(labels.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(
        CUBFormatError, match=r"image_class_labels\.txt: ids differ.*1 missing \(e\.g\. \[18\]\)"
    ):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)


def test_num_classes_mismatch(fake_cub):
    with pytest.raises(CUBFormatError, match="num_classes=200 but the metadata has 3 classes"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM, num_classes=200)
    (fake_cub / "classes.txt").write_text("1 001.Bird_1\n2 002.Bird_2\n")
    with pytest.raises(CUBFormatError, match="label 3 but classes.txt lists 2 classes"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)


# ----------------------------------------------------------------------------- gaze
def test_gaze_id_mismatches_are_counted_and_missing_gaze_is_an_error(fake_cub):
    write_fake_fixations(fake_cub, ids=range(2, 19), extra_ids=[900, 901])  # id 1 has no gaze
    with pytest.warns(UserWarning, match=r"1 of 18 images .* no gaze; 2 gaze ids are not in images.txt"):
        test = CUBDataset(fake_cub, "test", TEST_TRANSFORM, gaze={"fixations": "gaze"})
    assert test.gaze_report == {"images_without_gaze": 1, "gaze_ids_not_in_images_txt": 2}
    assert test[0]["gaze"].shape == (1, 32, 32)
    with (
        pytest.warns(UserWarning),
        pytest.raises(FileNotFoundError, match=r"no gaze for 1 of 12 trainval images \(e\.g\. ids \['1'\]"),
    ):
        CUBDataset(fake_cub, "trainval", TEST_TRANSFORM, gaze={"fixations": "gaze"})
    with pytest.warns(UserWarning):
        filled = CUBDataset(
            fake_cub, "trainval", TEST_TRANSFORM, gaze={"fixations": "gaze", "missing": "uniform"}
        )
    assert torch.all(filled[0]["gaze"] == 1.0)
    assert 0.9 < filled[1]["gaze"].max() <= 1.0 and filled[1]["gaze"].min() == 0.0  # a rendered map, cropped


def test_gaze_option_errors(fake_cub):
    with pytest.raises(KeyError, match="unknown gaze option"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM, gaze={"fixations": "gaze", "sigmaa": 3})
    with pytest.raises(ValueError, match="exactly one of"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM, gaze={"sigma": 3})
    with pytest.raises(FileNotFoundError, match="CUB_GHA"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM, gaze={"dir": "CUB_GHA"})


def test_gaze_of_another_image_shape_is_an_error(fake_cub):
    write_fake_fixations(fake_cub, ids=range(1, 19), size=(30, 40))  # portrait; the images are 40x30
    data = CUBDataset(fake_cub, "test", TEST_TRANSFORM, gaze={"fixations": "gaze"})
    with pytest.raises(ValueError, match="image is 40x30 but its gaze map .* is 30x40"):
        data[0]


def test_a_truncated_map_in_gha_dir_names_the_file(demo_cub, tmp_path):
    folder = tmp_path / "CUB_GHA"
    data = CUBDataset(demo_cub, "test", TEST_TRANSFORM, gaze={"fixations": "gaze"})
    for image_id in data.ids:
        save_heatmap(folder / f"{image_id}.jpg", torch.rand(96, 64))
    broken = folder / f"{data.ids[0]}.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # cut short
    with pytest.warns(UserWarning, match="have no gaze"):  # the train images have no map here
        maps = CUBDataset(demo_cub, "test", TEST_TRANSFORM, gaze={"dir": str(folder)})
    with pytest.raises(OSError, match=f"{broken}: cannot read the attention map .*truncated"):
        maps[0]


def test_images_txt_paths_must_stay_in_the_images_folder(fake_cub):
    lines = (fake_cub / "images.txt").read_text().splitlines()
    lines[1] = "2 ../../../etc/passwd"
    _write(fake_cub / "images.txt", lines)
    with pytest.raises(ValueError, match=r"images\.txt:2: '\.\./\.\./\.\./etc/passwd' must be a relative path inside"):
        CUBDataset(fake_cub, "test", TEST_TRANSFORM)


def test_demo_gaze_from_fixations_matches_gha_folder(demo_cub):
    merged = merge_by_image(read_fixations(demo_cub / "gaze").records)
    for image_id, record in merged.items():
        save_heatmap(
            demo_cub / "CUB_GHA" / f"{image_id}.jpg", render_heatmap(filter_by_duration(record, 100))
        )
    from_runs = CUBDataset(demo_cub, "test", TEST_TRANSFORM, gaze={"fixations": "gaze"}, num_classes=3)
    from_maps = CUBDataset(demo_cub, "test", TEST_TRANSFORM, gaze={"dir": str(demo_cub / "CUB_GHA")})
    assert len(from_runs) == 9 and from_runs.ids == from_maps.ids
    for index in range(len(from_runs)):
        a, b = from_runs[index], from_maps[index]
        assert torch.equal(a["image"], b["image"]) and a["id"] == b["id"] and a["label"] == b["label"]
        assert (a["gaze"] - b["gaze"]).abs().mean() < 0.01 and (a["gaze"] - b["gaze"]).abs().max() < 0.08
        assert a["gaze"].min() >= 0 and a["gaze"].max() <= 1


def test_rendered_maps_are_cached_on_disk(demo_cub, tmp_path, monkeypatch):
    options = {"fixations": "gaze", "cache_dir": str(tmp_path / "cache"), "cache_size": 2}
    first = CUBDataset(demo_cub, "val", TEST_TRANSFORM, gaze=options, val_fraction=0.2)
    expected = [first[i]["gaze"] for i in range(len(first))]
    assert len(list((tmp_path / "cache").rglob("*.png"))) == len(first) == 4
    import cub.dataset as module

    monkeypatch.setattr(module, "render_heatmap", lambda *a, **k: pytest.fail("rendered again"))
    again = CUBDataset(demo_cub, "val", TEST_TRANSFORM, gaze=options, val_fraction=0.2)
    assert all(torch.equal(again[i]["gaze"], expected[i]) for i in range(len(again)))


def test_dataloader_batches_follow_the_contract(demo_cub):
    data = CUBDataset(
        demo_cub, "train", build_transforms(True, 32), gaze={"fixations": "gaze"}, val_fraction=0.2
    )
    batch = next(
        iter(DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0)))
    )
    assert batch["image"].shape == (5, 3, 32, 32) and batch["gaze"].shape == (5, 1, 32, 32)
    assert batch["label"].shape == (5,) and batch["label"].dtype == torch.long
    assert isinstance(batch["id"], list) and all(isinstance(i, str) for i in batch["id"])
    assert batch["gaze"].min() >= 0 and batch["gaze"].max() <= 1
    assert "split='train'" in repr(data) and "gaze=fixations" in repr(data)


def test_real_cub_gha_runs_cover_every_cub_id(tmp_path, real_runs_dir):
    """The real run files against a fake 11,788-line images.txt: no id mismatch either way."""
    root = tmp_path / "CUB_200_2011"
    ids = range(1, 11789)
    _write(root / "images.txt", [f"{i} 001.Bird/{i}.jpg" for i in ids])
    _write(root / "image_class_labels.txt", [f"{i} {1 + i % 200}" for i in ids])
    _write(root / "train_test_split.txt", [f"{i} {i % 2}" for i in ids])
    data = CUBDataset(
        root, "test", TEST_TRANSFORM, gaze={"fixations": real_runs_dir}, check_files=False, num_classes=200
    )
    assert len(data) == 5894 and data.gaze_report == {
        "images_without_gaze": 0,
        "gaze_ids_not_in_images_txt": 0,
    }
    record = data._records[data.ids[0]]
    attention = data._attention(0, (record.width, record.height))
    assert attention.shape == (record.height, record.width) and attention.max() == 1.0
