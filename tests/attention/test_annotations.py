"""gaze/attention/annotations.py: GRADIA's mask and rating files, PNG masks, gaze masks, weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gaze.attention.annotations import (
    AnnotationFormatError,
    check_known_images,
    gradia_masks,
    mask_from_gaze,
    read_attention_masks,
    read_mask_pngs,
    read_reasonability,
    sample_weights,
)
from gaze.safe_paths import UnsafeNameError


def write(path, value):
    path.write_text(json.dumps(value))
    return path


def square(size=4, corner=1):
    mask = np.zeros((size, size), int)
    mask[:corner, :corner] = 1
    return mask.tolist()


def test_update_replaces_remove_drops_and_test_adds(tmp_path):
    val = write(tmp_path / "attention_val.json", [{"img": "gender_data/val/men/a.jpg", "attention": square(corner=1)},
                                                  {"img": "gender_data/val/women/b.jpg", "attention": square(corner=2)}])
    update = write(tmp_path / "attention_val_update.json", [{"img": "x/a.jpg", "attention": square(corner=3)}])
    remove = write(tmp_path / "attention_val_remove.json", [{"img": "y\\b.jpg"}])
    test = write(tmp_path / "attention_test.json", [{"img": "t/c.jpg", "attention": [[True, False], [False, False]]}])
    masks = gradia_masks(val, update, remove, test)
    assert sorted(masks) == ["a.jpg", "c.jpg"]
    assert masks["a.jpg"].sum() == 9 and masks["a.jpg"].dtype == bool  # the update's mask won
    assert masks["c.jpg"].shape == (2, 2)
    missing = write(tmp_path / "remove_missing.json", [{"img": "z.jpg"}])
    with pytest.raises(AnnotationFormatError, match=r"remove_missing\.json: z\.jpg is removed but has no mask"):
        gradia_masks(val, remove=missing)


@pytest.mark.parametrize("content, message", [
    ("{not json", r"bad\.json: not valid JSON"),
    ('{"img": "a.jpg"}', r"bad\.json: expected a JSON list"),
    ('[{"attention": [[1]]}]', r"bad\.json: entry 0 has no 'img'"),
    ('[{"img": "a.jpg"}]', r"bad\.json: entry 0 \(a\.jpg\): no 'attention' mask"),
    ('[{"img": "a.jpg", "attention": [1, 0]}]', r"entry 0 \(a\.jpg\): 'attention' must be a 2-D mask, got shape \(2,\)"),
    ('[{"img": "a.jpg", "attention": [[1, 2]]}]', r"entry 0 \(a\.jpg\): 'attention' must hold only 0/1"),
    ('[{"img": "a.jpg", "attention": [[1]]}, {"img": "b/a.jpg", "attention": [[0]]}]', r"entry 1 .*a\.jpg is listed twice"),
])
def test_malformed_mask_files_name_the_file_and_entry(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(AnnotationFormatError, match=message):
        read_attention_masks(tmp_path / "bad.json")


def test_reasonability_labels_and_unknown_label(tmp_path):
    path = write(tmp_path / "reasonablity_val.json", {"a.jpg": "Reasonable Accurate", "b.jpg": "Unreasonable Accurate",
                                                      "c.jpg": "Reasonable Inaccurate", "d.jpg": "Unreasonable Inaccurate"})
    assert read_reasonability(path) == {"a.jpg": "RA", "b.jpg": "UA", "c.jpg": "RI", "d.jpg": "UI"}
    bad = write(tmp_path / "bad.json", {"a.jpg": "Reasonable"})
    with pytest.raises(AnnotationFormatError, match=r"bad\.json: entry 'a\.jpg' has label 'Reasonable'"):
        read_reasonability(bad)
    with pytest.raises(AnnotationFormatError, match="1 entry match no image of the dataset, e.g. 'zz.jpg'"):
        check_known_images({"a.jpg": 1, "zz.jpg": 2}, ["a.jpg"], "ratings")


def test_the_published_weight_table_and_attention_samples():
    assert [sample_weights(code, True) for code in ("UI", "UA", "RI", "RA", None)] == [
        (1.0, 1.0), (0.4, 1.6), (0.8, 0.2), (1.0, 0.0), (1.0, 0.0)]
    assert sample_weights("UA", False) == (1.0, 0.0)  # no mask: CE only
    assert sample_weights(None, True, "all") == (1.0, 1.0) and sample_weights("RA", True, "all") == (1.0, 1.0)
    assert sample_weights("UA", True, "all") == (0.4, 1.6)
    with pytest.raises(ValueError, match="attention_samples"):
        sample_weights(None, True, "some")


def test_png_masks_any_size_and_unsafe_ids(tmp_path):
    picture = np.zeros((30, 20), np.uint8)
    picture[5:10, 5:8] = 255
    Image.fromarray(picture).save(tmp_path / "img1.png")
    masks = read_mask_pngs(tmp_path, ["img1", "img2"])
    assert list(masks) == ["img1"] and masks["img1"].shape == (30, 20) and masks["img1"].sum() == 15
    with pytest.raises(UnsafeNameError):
        read_mask_pngs(tmp_path, ["../outside"])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG nope")
    with pytest.raises(AnnotationFormatError, match=r"broken\.png: cannot be read"):
        read_mask_pngs(tmp_path, ["broken"])


def test_mask_from_gaze_thresholds_the_normalised_map():
    gaze = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]])
    masks = mask_from_gaze(gaze)  # > 0.3 of each map's range
    assert masks.tolist() == [[[False, False], [True, True]], [[False, False], [False, False]]]
    assert mask_from_gaze(gaze, threshold=0.2).tolist()[0] == [[False, True], [True, True]]
