"""gaze/viz/plots.py: overlay values, files of the right shape, readable 200-class matrices."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gaze.viz.plots import (
    normalise_rows,
    overlay_heatmap,
    plot_confusion_matrix,
    plot_training_curves,
    save_image,
)


def test_overlay_blends_jet_colours():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    heatmap = rng.random((12, 16)).astype(np.float32)
    blended = overlay_heatmap(image, heatmap)
    assert blended.shape == (12, 16, 3) and blended.dtype == np.uint8
    jet = matplotlib.colormaps["jet"](heatmap)[..., :3] * 255
    np.testing.assert_allclose(blended, 0.5 * image + 0.5 * jet, atol=0.51)
    np.testing.assert_array_equal(overlay_heatmap(image, heatmap, alpha=0.0), image)
    np.testing.assert_allclose(overlay_heatmap(image, heatmap, alpha=1.0), jet, atol=0.51)


def test_overlay_resizes_heatmap_and_accepts_grey_images():
    image = np.full((20, 30), 100, dtype=np.uint8)
    blended = overlay_heatmap(image, np.ones((5, 6), dtype=np.float32), alpha=0.25)
    assert blended.shape == (20, 30, 3)
    red = np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255  # the hottest jet colour
    np.testing.assert_allclose(blended[10, 15], 0.75 * 100 + 0.25 * red, atol=0.51)


def test_save_image_round_trip(tmp_path):
    array = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = save_image(tmp_path / "sub" / "overlay.png", array)
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), array)
    assert not list(path.parent.glob(".*.tmp"))


def test_training_curves_from_csv(tmp_path):
    table = pd.DataFrame({"epoch": [1, 2, 3], "lr": [1e-3, 1e-3, 1e-4], "train_loss": [2.0, 1.5, 1.2],
                          "val_loss": [2.1, 1.7, 1.6], "train_top1": [20, 40, 55], "val_top1": [18, 35, 50]})
    table.to_csv(tmp_path / "metrics.csv", index=False)
    path = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.width > 2 * image.height  # three panels side by side


def test_row_normalisation():
    fractions = normalise_rows(np.array([[3, 1], [0, 0]]))
    np.testing.assert_allclose(fractions, [[0.75, 0.25], [0.0, 0.0]])


@pytest.mark.parametrize("classes", [5, 200])
def test_confusion_matrix_png_stays_readable(tmp_path, classes):
    rng = np.random.default_rng(classes)
    confusion = rng.integers(0, 5, size=(classes, classes)) + 20 * np.eye(classes, dtype=int)
    names = [f"class {i}" for i in range(classes)]
    path = plot_confusion_matrix(confusion, names, tmp_path / "cm.png")
    with Image.open(path) as image:
        assert 200 < image.width <= 1600 and 200 < image.height <= 1400  # not 10,000 px (cub_pim.md §3.7)


def test_training_curves_use_log_axes_for_losses_spanning_orders_of_magnitude(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    scales = {}
    monkeypatch.setattr(plt, "close", lambda figure=None: scales.update(
        {axis.get_title(): axis.get_yscale() for axis in figure.axes}))
    weighted = pd.DataFrame({"epoch": [1, 2], "lr": [5e-3, 5e-3], "train_loss": [6e18, 1e18],
                             "train_loss_ce": [1.1, 1.0], "val_top1": [30.0, 35.0]})
    plot_training_curves(weighted, tmp_path / "ggcam.png")  # GG-CAM: the weighted sum beside raw CE
    assert scales == {"loss": "log", "accuracy (%)": "linear", "learning rate": "log"}
    plain = weighted.assign(train_loss=[1.5, 1.2], lr=[0.0, 0.0])
    plot_training_curves(plain, tmp_path / "plain.png")
    assert scales == {"loss": "linear", "accuracy (%)": "linear", "learning rate": "linear"}
