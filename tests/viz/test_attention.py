"""gaze/viz/attention.py: GRADIA's evaluation files, the reasonability matrix, the BONE overlay."""

from __future__ import annotations

import json

import numpy as np
from matplotlib import colormaps

from gaze.viz.attention import bone_overlay, reasonability_codes, write_attention_files


def results():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]], np.float32)
    return {"ids": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "labels": np.array([0, 0, 0, 1]),
            "probabilities": probabilities,
            "sample_metrics": {"attention_iou": np.array([0.5, np.nan, 0.25, 1.0])}}


def test_files_in_the_published_schemas(tmp_path):
    summary = write_attention_files(results(), tmp_path, split="test",
                                    unreasonable={"a.jpg": True, "b.jpg": True, "c.jpg": False, "x.jpg": True})
    assert json.loads((tmp_path / "img_fns.json").read_text()) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert json.loads((tmp_path / "misclassified.json").read_text()) == ["b.jpg"]
    assert json.loads((tmp_path / "IOU.json").read_text()) == {"a.jpg": 0.5, "c.jpg": 0.25, "d.jpg": 1.0}
    labels = json.loads((tmp_path / "reasonablity_test.json").read_text())
    assert labels == {"a.jpg": "Unreasonable Accurate", "b.jpg": "Unreasonable Inaccurate",
                      "c.jpg": "Reasonable Accurate"}  # x.jpg was not evaluated
    assert summary["matrix"] == [[1, 1], [0, 1]]  # row: inaccurate, column: unreasonable
    assert summary["iou"] == np.mean([0.5, 0.25, 1.0]) and summary["images_with_mask"] == 3
    assert reasonability_codes(results(), {"d.jpg": False}) == {"d.jpg": "RA"}


def test_bone_overlay_multiplies_the_colour_map_into_the_photo():
    picture = np.full((2, 2, 3), 200, np.uint8)
    cam = np.array([[0.0, 0.5], [1.0, 0.25]])
    blended = colormaps["bone"](cam)[..., :3] * (200 / 255)
    expected = (255 * blended / blended.max()).round().astype(np.uint8)
    np.testing.assert_array_equal(bone_overlay(picture, cam), expected)
    assert bone_overlay(picture, cam).max() == 255
