"""Tests for gaze/data/images.py: every image mode loads as RGB, truncated files are errors, JPEG drafts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from gaze.data.images import ImageLoadError, load_rgb_image

def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


# ----------------------------------------------------------------------------- load_rgb_image
@pytest.mark.parametrize(
    "mode, value, expected, suffix",
    [
        ("L", 100, (100, 100, 100), ".jpg"),
        ("LA", (100, 7), (100, 100, 100), ".png"),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30), ".png"),
        ("1", 1, (255, 255, 255), ".png"),
    ],
)
def test_modes_load_as_rgb(tmp_path, mode, value, expected, suffix):
    path = _save(tmp_path / f"a{suffix}", Image.new(mode, (9, 7), value))
    image = load_rgb_image(path)
    assert image.mode == "RGB" and image.size == (9, 7)
    pixels = np.asarray(image).reshape(-1, 3)
    assert np.abs(pixels.astype(int) - expected).max() <= 1  # JPEG of a flat grey is exact or off by 1


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 6), (0, 255, 255, 0))  # pure red in CMYK
    path = _save(tmp_path / "cmyk.jpg", cmyk, quality=95)
    image = load_rgb_image(path)
    assert image.mode == "RGB"
    red = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_palette_with_transparency_loads_as_rgb(tmp_path):
    palette = Image.new("P", (5, 5), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.info["transparency"] = 0
    path = _save(tmp_path / "p.png", palette, transparency=0)
    image = load_rgb_image(path)
    assert image.mode == "RGB"
    assert tuple(np.asarray(image)[0, 0]) == (200, 100, 50)


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "g16.png", Image.fromarray(values))
    image = load_rgb_image(path)
    assert image.mode == "RGB"
    assert np.asarray(image)[0, :, 0].tolist() == [0, 100, 255]


def _truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    path = _save(tmp_path / "full.jpg", Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    return truncated


def test_truncated_jpeg_raises_naming_file(tmp_path):
    path = _truncated_jpeg(tmp_path)
    with pytest.raises(ImageLoadError, match="truncated.jpg"):
        load_rgb_image(path)


def test_truncated_jpeg_raises_even_if_pil_allows_truncation(tmp_path, monkeypatch):
    path = _truncated_jpeg(tmp_path)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageLoadError, match="truncated.jpg"):
        load_rgb_image(path)


def test_missing_and_non_image_files_raise_naming_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        load_rgb_image(tmp_path / "nowhere.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        load_rgb_image(text)


# ----------------------------------------------------------------------------- load_rgb_image(draft_size)
def _grey_picture(width: int = 800, height: int = 600) -> Image.Image:
    """A smooth grey picture with structure (gradient + waves), mode L."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    values = 40 + 120 * cols / width + 50 * np.sin(rows / 37.0) * np.cos(cols / 53.0) + 30 * rows / height
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")


def _expected_draft_size(original: tuple[int, int], request: tuple[int, int]) -> tuple[int, int]:
    """The smallest original / 2^k (k = 0..3) that is at least the request in both sides."""
    width, height = original
    candidates = [(width // 2**k, height // 2**k) for k in range(4)]  # 800x600 divides by 8
    fitting = [c for c in candidates if c[0] >= request[0] and c[1] >= request[1]]
    return min(fitting, key=lambda c: c[0]) if fitting else original  # too large a request: full size


@pytest.mark.parametrize(
    "request_size", [(128, 128), (90, 90), (100, 75), (101, 75), (200, 150), (400, 300), (401, 300), (1000, 10)]
)
def test_jpeg_draft_decodes_smaller_but_large_enough(tmp_path, request_size):
    path = _save(tmp_path / "grey.jpg", _grey_picture(), quality=95)
    expected_size = _expected_draft_size((800, 600), request_size)
    image = load_rgb_image(path, draft_size=request_size)
    assert image.mode == "RGB" and image.size == expected_size
    fits = image.size[0] >= request_size[0] and image.size[1] >= request_size[1]
    assert fits or image.size == (800, 600)
    assert image.size != (800, 600) or not (request_size[0] <= 400 and request_size[1] <= 300)
    full = load_rgb_image(path)
    assert full.size == (800, 600)
    factor = 800 // expected_size[0]
    reference = np.asarray(full.reduce(factor) if factor > 1 else full, dtype=np.float64)
    assert np.abs(np.asarray(image, dtype=np.float64) - reference).mean() < 3


def test_jpeg_draft_example_sizes(tmp_path):
    path = _save(tmp_path / "grey.jpg", _grey_picture(), quality=95)
    assert load_rgb_image(path, draft_size=(128, 128)).size == (200, 150)  # 1/4
    assert load_rgb_image(path, draft_size=(100, 75)).size == (100, 75)  # 1/8
    assert load_rgb_image(path, draft_size=(300, 300)).size == (400, 300)  # 1/2
    assert load_rgb_image(path, draft_size=(300, 301)).size == (800, 600)  # 1/2 would be 300 high
    assert load_rgb_image(path, draft_size=None).size == (800, 600)


def test_png_ignores_draft_size(tmp_path):
    picture = _grey_picture()
    path = _save(tmp_path / "grey.png", picture)
    image = load_rgb_image(path, draft_size=(128, 128))
    assert image.mode == "RGB" and image.size == (800, 600)
    assert np.array_equal(np.asarray(image)[..., 0], np.asarray(picture))
