"""Tests for gaze/synthetic/cub.py: the synthetic CUB-layout dataset and its simulated gaze."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaze.synthetic import cub as demo
from gaze.synthetic.cub import choose_bird_classes, ensure_synthetic_cub, make_synthetic_cub
from gaze.attention.fixations import merge_by_image, read_fixations

SMALL = dict(num_classes=4, train_per_class=5, test_per_class=4, image_size=(80, 120), seed=7)
#: CUB part ids (parts/parts.txt) of the head and discriminative parts: beak, crown,
#: forehead, left eye, left wing, right eye, right wing, tail.
HEAD_AND_PARTS = {2, 5, 6, 7, 9, 11, 13, 14}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return make_synthetic_cub(tmp_path_factory.mktemp("demo") / "Synthetic_CUB", **SMALL)


def _table(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(small_set, tmp_path):
    again = make_synthetic_cub(tmp_path / "again", **SMALL)
    assert _all_files(again) == _all_files(small_set)
    other = make_synthetic_cub(tmp_path / "other", **dict(SMALL, seed=8))
    first_image = _table(small_set / "images.txt")[0][1]
    assert (other / "images" / first_image).read_bytes() != (small_set / "images" / first_image).read_bytes()


def test_layout_parses_with_cub_counts(small_set):
    images = _table(small_set / "images.txt")
    labels = _table(small_set / "image_class_labels.txt")
    split = _table(small_set / "train_test_split.txt")
    classes = _table(small_set / "classes.txt")
    boxes = _table(small_set / "bounding_boxes.txt")
    per_class = SMALL["train_per_class"] + SMALL["test_per_class"]
    assert len(images) == len(labels) == len(split) == len(boxes) == SMALL["num_classes"] * per_class
    assert [int(r[0]) for r in images] == list(range(1, len(images) + 1))
    label_values = np.array([int(r[1]) for r in labels])
    assert np.array_equal(np.bincount(label_values), [0] + [per_class] * SMALL["num_classes"])  # 1-based
    is_train = np.array([int(r[1]) for r in split])
    for label in range(1, SMALL["num_classes"] + 1):
        assert is_train[label_values == label].sum() == SMALL["train_per_class"]
    assert [int(r[0]) for r in classes] == [1, 2, 3, 4]
    for (image_id, relpath), (_, label) in zip(images, labels):
        folder = relpath.split("/")[0]
        assert folder == classes[int(label) - 1][1] and folder.split(".", 1)[1].startswith("Synthetic_")
        with Image.open(small_set / "images" / relpath) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert all(80 <= side <= 120 for side in image.size)
    assert (small_set / "README.txt").read_text().startswith("SYNTHETIC DATA")
    assert len(_table(small_set / "parts" / "parts.txt")) == 15
    marker = json.loads((small_set / demo.MARKER_NAME).read_text())
    assert marker["num_images"] == len(images) and marker["seed"] == SMALL["seed"]


def test_fixation_files_follow_cub_gha_facts(small_set):
    files = sorted((small_set / "gaze").glob("Fixation_run*.txt"))
    assert [f.name for f in files] == [f"Fixation_run{k}.txt" for k in range(1, 6)]
    assert all(b"\r\n" in f.read_bytes() for f in files)
    result = read_fixations(small_set / "gaze")
    assert not result.skipped
    sizes = {}
    for image_id, relpath in _table(small_set / "images.txt"):
        with Image.open(small_set / "images" / relpath) as image:
            sizes[image_id] = image.size
    lengths = np.array([len(r) for r in result.records])
    assert lengths.min() >= 4 and lengths.max() <= 15
    merged = merge_by_image(result.records)
    assert set(merged) == set(sizes)
    for image_id, record in merged.items():
        assert (record.width, record.height) == sizes[image_id]
        assert 3 <= len(np.unique(record.run)) <= 5
        assert record.x.min() >= 0 and record.x.max() <= record.width - 1
        assert record.y.min() >= 0 and record.y.max() <= record.height - 1
    durations = np.concatenate([r.duration for r in result.records])
    assert durations.min() >= 60 and 220 <= np.median(durations) <= 330


def test_fixations_land_mostly_on_head_and_parts(small_set):
    parts: dict[str, list[tuple[float, float]]] = {}
    for image_id, part, x, y, visible in _table(small_set / "parts" / "part_locs.txt"):
        if int(visible) and int(part) in HEAD_AND_PARTS:
            parts.setdefault(image_id, []).append((float(x), float(y)))
    near = []
    for image_id, record in merge_by_image(read_fixations(small_set / "gaze").records).items():
        points = np.array(parts[image_id])
        distance = np.hypot(record.x[:, None] - points[:, 0], record.y[:, None] - points[:, 1]).min(axis=1)
        near.append(distance < 0.12 * min(record.width, record.height))
    fraction = np.concatenate(near).mean()
    assert 0.6 < fraction < 0.97  # mostly on parts, some on body and background


def test_bounding_boxes_inside_images(small_set):
    for (image_id, relpath), box in zip(
        _table(small_set / "images.txt"), _table(small_set / "bounding_boxes.txt")
    ):
        x, y, w, h = map(float, box[1:])
        with Image.open(small_set / "images" / relpath) as image:
            width, height = image.size
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w > 0.3 * width


def test_classes_differ_in_parts_and_are_stable():
    classes = choose_bird_classes(12)
    assert len({c.name for c in classes}) == 12 and classes == choose_bird_classes(12)
    assert choose_bird_classes(5) == classes[:5]
    one_part_apart = sum(any(demo._part_distance(a, b) == 1 for b in classes if b is not a) for a in classes)
    assert one_part_apart >= 10
    assert len(choose_bird_classes(240)) == 240
    with pytest.raises(ValueError, match="num_classes"):
        choose_bird_classes(241)


def test_ensure_generates_once_and_says_synthetic(tmp_path, capsys, monkeypatch):
    root = tmp_path / "Synthetic_CUB_200_2011"
    kwargs = dict(num_classes=2, train_per_class=2, test_per_class=1, image_size=(40, 50))
    ensure_synthetic_cub(root, **kwargs)
    assert "SYNTHETIC" in capsys.readouterr().out and (root / demo.MARKER_NAME).is_file()

    def fail(*args, **kw):
        raise AssertionError("regenerated although complete")

    monkeypatch.setattr(demo, "make_synthetic_cub", fail)
    ensure_synthetic_cub(root, **kwargs)
    assert "SYNTHETIC" in capsys.readouterr().out
    monkeypatch.undo()
    ensure_synthetic_cub(root, **dict(kwargs, num_classes=3))  # other parameters: rebuilt
    assert len(_table(root / "classes.txt")) == 3


def test_ensure_rebuilds_unfinished_and_refuses_foreign_folders(tmp_path):
    root = tmp_path / "set"
    make_synthetic_cub(root, num_classes=2, train_per_class=1, test_per_class=1, image_size=(40, 40))
    (root / demo.MARKER_NAME).unlink()  # as if killed before the end
    ensure_synthetic_cub(
        root, verbose=False, num_classes=2, train_per_class=1, test_per_class=1, image_size=(40, 40)
    )
    assert (root / demo.MARKER_NAME).is_file()
    real = tmp_path / "CUB_200_2011"
    real.mkdir()
    (real / "images.txt").write_text("1 001.Black_footed_Albatross/a.jpg\n")
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        ensure_synthetic_cub(real, verbose=False)
    assert (real / "images.txt").is_file()
