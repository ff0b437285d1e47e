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


def test_cal_visuals_use_the_published_colouring_and_write_four_files_per_image(tmp_path):
    import torch

    from gaze.models import create_model
    from gaze.viz.attention import published_heat, write_attention_visuals

    heat = published_heat(np.array([[0.0, 0.25], [0.5, 1.0]]))
    np.testing.assert_allclose(heat[0, 1], [0.25, 0.25, 0.75])  # R = a, G = a (< 0.5), B = 1 - a
    np.testing.assert_allclose(heat[1, 0], [0.5, 0.5, 0.5])     # G = 1 - a from 0.5 on
    np.testing.assert_allclose(heat[1, 1], [1.0, 0.0, 0.0])
    torch.manual_seed(0)
    batch = {"image": torch.randn(2, 3, 64, 64)}
    cal = create_model("cal", num_classes=3, backbone="resnet18", input_size=64, num_attentions=4)
    written = write_attention_visuals(cal, batch, tmp_path / "cal")
    assert sorted(p.name for p in written) == sorted(f"{k:03d}_{n}.jpg" for k in range(2)
                                                     for n in ("raw", "heat_atten", "crop", "drop"))
    baseline = create_model("baseline", num_classes=3, backbone="resnet18", input_size=64)
    assert write_attention_visuals(baseline, batch, tmp_path / "baseline") == []
