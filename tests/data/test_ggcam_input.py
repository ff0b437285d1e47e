"""GG-CAM's published input recipe (cxr.md §3.1) against OpenCV and numpy written out independently."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from gaze.attention.fixations import FixationRecord
from gaze.attention.heatmap import opencv_gaussian_sigma, sample_blurred_dots
from gaze.data.transforms import GGCAMTransform, padded_placement


def record_of(points, width, height) -> FixationRecord:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return FixationRecord(image_id="x", width=width, height=height, x=points[:, 0].copy(), y=points[:, 1].copy(),
                          duration=np.full(len(points), 300.0), run=np.zeros(len(points), dtype=np.int64))


def cv2_blurred_dots(points, width, height, ksize) -> np.ndarray:
    """The published construction: +1 per fixation on a dot image, cv2.GaussianBlur(k, sigma=0)."""
    dots = np.zeros((height, width), dtype=np.float64)
    for x, y in points:
        dots[int(y), int(x)] += 1.0
    return cv2.GaussianBlur(dots, (ksize, ksize), 0)


def test_opencv_sigma_of_the_published_kernels():
    assert opencv_gaussian_sigma(501) == pytest.approx(75.5)  # Blur500 (cxr §3.1)
    assert (opencv_gaussian_sigma(201), opencv_gaussian_sigma(801)) == (pytest.approx(30.5), pytest.approx(120.5))


def test_blurred_dots_equal_cv2_gaussian_blur_with_reflect101_borders():
    width, height, ksize = 90, 70, 31  # kernel half-width 15 with dots on and near every border
    points = [(0, 0), (89, 69), (3, 40), (50, 68), (45, 35), (45, 35), (88, 1)]
    reference = cv2_blurred_dots(points, width, height, ksize)
    rows, cols = np.arange(-4, height + 4), np.arange(-3, width + 3)  # outside the film: zero padding
    sampled = sample_blurred_dots(record_of(points, width, height), rows, cols, opencv_gaussian_sigma(ksize), 15)
    expected = np.zeros((len(rows), len(cols)))
    expected[4:-4, 3:-3] = reference
    scale = expected.max() / sampled.max()  # cv2's kernel sums to 1, ours is unnormalised
    np.testing.assert_allclose(sampled * scale, expected, rtol=1e-9, atol=1e-12)


def test_ggcam_transform_is_the_published_pad_subsample_and_blur500():
    # A 3056 x 2544 film (MIMIC's size) on the published 3072 x 2560 canvas: image and gaze
    # are padded centred, every 2nd pixel kept, divided by the max (cxr §3.1). Blur100
    # (ksize 101) keeps the OpenCV reference fast; Blur500 is the same code with ksize 501.
    rng = np.random.default_rng(0)
    film = rng.integers(0, 200, (3056, 2544), dtype=np.uint8)
    points = [(10, 3000), (1200, 1500), (2543, 0), (700, 2200)]
    transform = GGCAMTransform((1536, 1280), blur=100)
    image, gaze = transform(Image.fromarray(film).convert("RGB"), record_of(points, 2544, 3056))
    canvas = np.zeros((3072, 2560))
    canvas[8:3064, 8:2552] = film
    expected_image = canvas[::2, ::2] / canvas[::2, ::2].max()
    assert image.shape == (3, 1536, 1280) and transform.mean == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(image[1].numpy(), expected_image, rtol=1e-6)
    canvas = np.zeros((3072, 2560))
    canvas[8:3064, 8:2552] = cv2_blurred_dots(points, 2544, 3056, 101)
    expected_gaze = canvas[::2, ::2] / canvas[::2, ::2].max()
    np.testing.assert_allclose(gaze[0].numpy(), expected_gaze, atol=2e-6)


def test_films_larger_than_the_canvas_shrink_to_fit():
    assert padded_placement((3056, 2544), (3072, 2560)) == (1.0, 8, 8, 3056, 2544)
    scale, top, left, height, width = padded_placement((2544, 3056), (3072, 2560))  # a landscape film
    assert scale == pytest.approx(2560 / 3056) and width == 2560 and top == (3072 - height) // 2 and left == 0
    image, _ = GGCAMTransform((64, 48))(Image.new("RGB", (300, 200), (90, 90, 90)))
    assert image.shape == (3, 64, 48) and float(image.max()) == 1.0
