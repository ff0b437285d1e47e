"""gaze.data.human_attention: drawn masks through the image's geometry, weights, GRADIA's phase-2 split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gaze.attention.annotations import AnnotationFormatError, read_assessments
from gaze.data.human_attention import (
    HumanAttention,
    file_name_aliases,
    load_human_attention,
    phase_two_split,
    write_phase_two_train,
)
from gaze.data.transforms import build_transforms


def banded_picture(width: int = 96, height: int = 64) -> Image.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4] = 255  # a white band on the left
    return Image.fromarray(pixels)


def test_a_drawn_mask_and_the_gaze_get_the_image_crop_and_flip():
    picture = banded_picture()
    band = np.zeros((32, 48), bool)  # half the image's size: resized to it first
    band[:, :12] = True
    gaze = torch.zeros(64, 96)
    gaze[:, :24] = 1.0
    transform = build_transforms(train=True, input_size=48, color_jitter=None)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        image, moved_gaze, mask = transform.with_mask(picture, gaze, band)
        bright = image.mean(0) > 0
        assert mask.shape == moved_gaze.shape == (1, 48, 48)
        assert (bright == (mask[0] >= 0.5)).float().mean() > 0.97  # edges softened by the resize only
        assert torch.equal(mask[0] >= 0.5, moved_gaze[0] >= 0.5)
        seen.add(bool(bright[:, 0].any()))
    assert seen == {True, False}  # flipped and unflipped draws both happened


def test_items_carry_the_drawn_mask_else_the_gaze_mask_and_the_rating_weights():
    picture = banded_picture()
    gaze = torch.zeros(64, 96)
    gaze[:32, :48] = 1.0  # the top-left quarter
    drawn = np.zeros((64, 96), bool)
    drawn[32:, 48:] = True  # the bottom-right quarter
    human = HumanAttention({"a": drawn}, {"a": "UA", "b": "RI"}, "rated")
    transform = build_transforms(train=False, input_size=64, resize_size=64)  # 64x96 -> centre 64x64
    item_a = human.transform(transform, picture, gaze, "a")
    item_b = human.transform(transform, picture, gaze, "b")
    item_c = HumanAttention().transform(transform, picture, None, "c")
    assert (item_a["weight_ce"].item(), item_a["weight_att"].item()) == (pytest.approx(0.4), pytest.approx(1.6))
    assert (item_b["weight_ce"].item(), item_b["weight_att"].item()) == (pytest.approx(0.8), pytest.approx(0.2))
    assert (item_c["weight_ce"].item(), item_c["weight_att"].item()) == (1.0, 0.0)  # no mask at all
    expected_a = torch.zeros(64, 64, dtype=torch.bool)
    expected_a[32:, 32:] = True  # the bottom-right quarter after the 16-px centre crop
    assert torch.equal(item_a["mask"][0] >= 0.5, expected_a)
    expected_b = torch.zeros(64, 64, dtype=torch.bool)
    expected_b[:32, :32] = True  # the gaze quarter (cols 16..48 of the map) thresholded at 0.3
    assert torch.equal(item_b["mask"][0] >= 0.5, expected_b)
    assert item_b["gaze"].shape == (1, 64, 64) and not item_c["mask"].any()


def test_attention_samples_all_gives_every_masked_image_the_attention_term():
    picture = banded_picture()
    gaze = torch.rand(64, 96)
    transform = build_transforms(train=False, input_size=64)
    rated = HumanAttention({}, {}, "rated").transform(transform, picture, gaze, "x")
    every = HumanAttention({}, {}, "all").transform(transform, picture, gaze, "x")
    assert rated["weight_att"].item() == 0.0 and every["weight_att"].item() == 1.0
    with pytest.raises(ValueError, match="attention_samples='some'"):
        HumanAttention(attention_samples="some")


def test_phase_two_split_is_train_plus_rated_val_and_keeps_the_rest_for_selection(tmp_path):
    assert phase_two_split(["t1", "t2"], ["v1", "v2", "v3"], {"v2", "t1", "x9"}) == (["t1", "t2", "v2"], ["v1", "v3"])
    assert phase_two_split(["t1"], ["v1"], set()) == (["t1"], ["v1"])
    with pytest.raises(ValueError, match="every validation image is rated"):
        phase_two_split(["t1"], ["v1"], {"v1"})
    path = write_phase_two_train(pd.DataFrame({"id": ["1", "2"], "label": [0, 1]}), tmp_path / "run")
    assert path.name == "p2_train.csv" and pd.read_csv(path, dtype=str)["id"].tolist() == ["1", "2"]


def test_ratings_keyed_by_file_name_or_id_and_unknown_keys_name_the_file(tmp_path):
    ids = ["1", "2", "3"]
    aliases = file_name_aliases(ids, ["a/x.jpg", "b/y.jpg", "c/x.jpg"])
    assert aliases == {"y.jpg": "2"}  # x.jpg is ambiguous: only its id can rate it
    ratings = tmp_path / "reasonablity_val.json"
    ratings.write_text(json.dumps({"y.jpg": "Unreasonable Accurate", "3": "Reasonable Inaccurate"}))
    human = load_human_attention(ids, ratings, aliases=aliases)
    assert human.ratings == {"2": "UA", "3": "RI"}
    ratings.write_text(json.dumps({"x.jpg": "Unreasonable Accurate"}))
    with pytest.raises(AnnotationFormatError, match=r"reasonablity_val\.json: 1 entry match no image .*'x\.jpg'"):
        load_human_attention(ids, ratings, aliases=aliases)
    with pytest.raises(FileNotFoundError, match="masks_dir="):
        load_human_attention(ids, masks_dir=tmp_path / "missing")


def test_png_masks_are_read_for_the_ids_that_have_one(tmp_path):
    Image.fromarray(np.pad(np.full((2, 2), 255, np.uint8), 1)).save(tmp_path / "2.png")
    human = load_human_attention(["1", "2"], masks_dir=tmp_path)
    assert list(human.masks) == ["2"] and human.masks["2"].sum() == 4 and human.masks["2"].shape == (4, 4)


def test_assessments_read_both_published_forms(tmp_path):
    listed = tmp_path / "assessments.json"
    listed.write_text(json.dumps([{"img": "d/a.jpg", "label": "unreasonable"}, {"img": "b.jpg", "label": "fine"}]))
    assert read_assessments(listed) == {"a.jpg": True, "b.jpg": False}
    labelled = tmp_path / "reasonablity_test.json"
    labelled.write_text(json.dumps({"a.jpg": "Unreasonable Inaccurate", "b.jpg": "Reasonable Accurate"}))
    assert read_assessments(labelled) == {"a.jpg": True, "b.jpg": False}
    listed.write_text(json.dumps([{"img": "a.jpg"}]))
    with pytest.raises(AnnotationFormatError, match=r"assessments\.json: entry 0 needs 'img' and 'label'"):
        read_assessments(listed)
