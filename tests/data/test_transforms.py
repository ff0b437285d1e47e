"""Tests for gaze/data/transforms.py: joint geometry, bilinear attention, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional import InterpolationMode

from gaze.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AttentionMap,
    JointTransform,
    build_pim_transforms,
    build_resize_transforms,
    build_transforms,
    denormalize,
    normalize_attention,
)


def _square_pair(width=90, height=70, box=(50, 12, 22, 18)):
    """An image with one bright square on black, and an attention map of the same square."""
    x, y, w, h = box
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[y : y + h, x : x + w] = 255
    attention = torch.zeros(height, width)
    attention[y : y + h, x : x + w] = 1.0
    return Image.fromarray(pixels), attention


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def test_random_crop_and_flip_keep_image_and_attention_aligned():
    image, attention = _square_pair()
    transform = build_transforms(train=True, input_size=48)
    centres = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out_image, out_attention = transform(image, attention)
        bright = denormalize(out_image).mean(dim=0) > 0.5
        attended = out_attention[0] > 0.5
        assert bright.sum() > 20
        assert _iou(bright, attended) > 0.85, f"seed {seed}"
        columns = torch.nonzero(attended)[:, 1].float().mean().round().item()
        centres.add(columns)
    assert len(centres) > 3  # crops and flips really varied


def test_flip_is_shared():
    image, attention = _square_pair(width=60, height=60, box=(2, 20, 10, 10))
    transform = build_transforms(train=True, input_size=60, hflip=1.0, color_jitter=None)
    out_image, out_attention = transform(image, attention)
    assert out_attention[0, 25, 55] == 1.0 and out_attention[0, 25, 5] == 0.0
    assert denormalize(out_image)[:, 25, 55].min() > 0.9


def test_attention_is_resized_bilinearly_like_an_independent_computation():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (75, 100, 3), dtype=np.uint8))
    attention = torch.zeros(75, 100)
    attention[30:45, 40:60] = 1.0
    _, out = build_transforms(train=False, input_size=32)(image, attention)
    expected = F.resize_image(attention[None], [32], interpolation=InterpolationMode.BILINEAR, antialias=True)
    expected = F.center_crop_image(expected, [32, 32])
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert torch.allclose(out, expected, atol=1e-5)
    partial = ((out > 0.02) & (out < 0.98)).sum()
    assert partial > 10  # nearest neighbour (a plain Mask) would give only 0 and 1


def test_plain_mask_would_be_nearest_but_attention_map_is_not():
    attention = torch.zeros(1, 40, 40)
    attention[:, 10:25, 10:25] = 1.0
    nearest = v2.Resize(17)(tv_tensors.Image(torch.zeros(3, 40, 40)), tv_tensors.Mask(attention))[1]
    bilinear = v2.Resize(17)(tv_tensors.Image(torch.zeros(3, 40, 40)), AttentionMap(attention))[1]
    assert set(nearest.unique().tolist()) <= {0.0, 1.0}
    assert ((bilinear > 0.01) & (bilinear < 0.99)).any()
    assert isinstance(bilinear, AttentionMap) and bilinear.shape == (1, 17, 17)
    cropped = v2.RandomResizedCrop(16)(tv_tensors.Image(torch.zeros(3, 40, 40)), AttentionMap(attention))[1]
    assert cropped.shape == (1, 16, 16) and isinstance(cropped, AttentionMap)


def test_photometric_steps_do_not_touch_attention():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    attention = torch.from_numpy(rng.random((40, 40)).astype(np.float32))
    transform = build_transforms(train=True, input_size=40, hflip=1.0, color_jitter=(0.9, 0.9))
    torch.manual_seed(0)
    _, out = transform(image, attention)
    assert torch.equal(out, attention.flip(-1)[None])  # values as read, only the geometry applied


def test_attention_values_are_kept_as_read():
    # The transform does not normalise: each method reads the map its paper's way
    # (gaze.models.gaze_input), e.g. HAFC's raw luma background of ~0.12 must reach GAT.
    image = Image.new("RGB", (50, 40), (120, 60, 30))
    transform = build_transforms(train=False, input_size=40)
    for fill in (0.0, 1.0, 0.5):
        _, out = transform(image, torch.full((40, 50), fill))
        assert torch.allclose(out, torch.full_like(out, fill), atol=1e-5)
    rng = np.random.default_rng(2)
    raw = torch.from_numpy(rng.random((40, 50)).astype(np.float32)) * 0.3 + 0.2
    _, out = transform(image, raw)
    assert out.dtype == torch.float32 and 0.2 <= float(out.min()) and float(out.max()) <= 0.5
    torch.testing.assert_close(out[0], raw[:, 5:45], atol=1e-6, rtol=0)  # centre crop 40 of 50


def test_normalize_attention_keeps_constant_maps():
    for fill in (0.0, 1.0, 0.5):
        out = normalize_attention(torch.full((1, 1, 6, 5), fill))
        assert torch.isfinite(out).all()  # the published min-max gives NaN (0/0)
        assert torch.allclose(out, torch.full_like(out, fill))


def test_normalize_attention_batched():
    maps = torch.stack([torch.linspace(2, 4, 12).reshape(3, 4), torch.full((3, 4), 7.0)])
    out = normalize_attention(maps)
    assert torch.allclose(out[0], (maps[0] - 2) / 2) and torch.all(out[1] == 1.0)


def test_test_transform_is_deterministic_and_normalises():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 255, (61, 83, 3), dtype=np.uint8))
    attention = torch.from_numpy(rng.random((61, 83)).astype(np.float32))
    transform = build_transforms(train=False, input_size=32)
    first, second = transform(image, attention), transform(image, attention)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == (3, 32, 32) and first[1].shape == (1, 32, 32)
    grey = Image.new("RGB", (40, 40), tuple(int(round(m * 255)) for m in IMAGENET_MEAN))
    normalised, none = transform(grey)
    assert none is None and normalised.abs().max() < 0.02


def test_gaze_inputs_of_other_types_and_sizes():
    image = Image.new("RGB", (64, 48), (10, 200, 30))
    transform = build_transforms(train=False, input_size=16)
    big = torch.zeros(96, 128)
    big[:, 64:] = 1.0
    _, from_float = transform(image, big)  # resized to the image first
    _, from_uint8 = transform(image, (big * 255).to(torch.uint8).numpy())
    _, from_pil = transform(image, Image.fromarray((big.numpy() * 255).astype(np.uint8)))
    assert torch.allclose(from_float, from_uint8) and torch.allclose(from_float, from_pil)
    assert from_float[0, :, :7].max() < 0.05 and from_float[0, :, 9:].min() > 0.95
    with pytest.raises(ValueError, match="gaze map"):
        transform(image, torch.zeros(2, 48, 64))


def test_tensor_images_and_repr():
    transform = build_transforms(train=True, input_size=20, resize_size=24)
    torch.manual_seed(0)
    out, att = transform(torch.randint(0, 255, (3, 30, 40), dtype=torch.uint8), torch.rand(1, 30, 40))
    assert out.shape == (3, 20, 20) and att.shape == (1, 20, 20) and type(out) is torch.Tensor
    assert isinstance(transform, JointTransform) and "RandomCrop" in repr(transform)


# ----------------------------------------------------------------------------- build_resize_transforms
def _centroid(weights: torch.Tensor) -> torch.Tensor:
    """(row, col) centre of mass of a non-negative (H, W) map."""
    rows = torch.arange(weights.shape[0], dtype=torch.float64)[:, None]
    cols = torch.arange(weights.shape[1], dtype=torch.float64)[None, :]
    weights = weights.to(torch.float64)
    total = weights.sum()
    assert total > 0
    return torch.stack([(weights * rows).sum() / total, (weights * cols).sum() / total])


def _bright_mass(image: torch.Tensor) -> torch.Tensor:
    """(H, W) brightness above the darkest pixel of a normalised image (jitter offsets cancel)."""
    grey = denormalize(image).mean(0)
    return grey - grey.min()


@pytest.mark.parametrize("train, augment", [(False, False), (True, False), (True, True)])
def test_resize_transforms_keep_image_and_attention_aligned(train, augment):
    image, attention = _square_pair(width=90, height=70, box=(52, 14, 20, 16))
    transform = build_resize_transforms(train, (48, 40), augment=augment)
    # Independent expectation without augmentation: the square's centre scaled per axis.
    expected = torch.tensor([(14 + 8) * 48 / 70 - 0.5, (52 + 10) * 40 / 90 - 0.5], dtype=torch.float64)
    for seed in range(8):
        torch.manual_seed(seed)
        out, att = transform(image, attention)
        assert out.shape == (3, 48, 40) and att.shape == (1, 48, 40)
        image_centre, attention_centre = _centroid(_bright_mass(out)), _centroid(att[0])
        assert torch.dist(image_centre, attention_centre) <= 1.5, (seed, image_centre, attention_centre)
        if not augment:
            assert torch.dist(attention_centre, expected) <= 0.5
        else:  # 4 % shift (<= 1.9 px), 5 deg about the centre (~1 px), 5 % scale (~0.6 px)
            assert torch.dist(attention_centre, expected) <= 4.5


def test_resize_train_augmentation_is_random_but_shared():
    image, attention = _square_pair(width=90, height=70, box=(52, 14, 20, 16))
    transform = build_resize_transforms(True, (48, 40), augment=True)
    centres = []
    for seed in range(6):
        torch.manual_seed(seed)
        centres.append(_centroid(transform(image, attention)[1][0]))
    spread = torch.stack(centres).std(0)
    assert spread.max() > 0.2  # the affine is really applied (and drawn per call)


def test_resize_transforms_never_flip():
    width, height = 80, 60
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[20:36, 4:16] = 255  # marker on the left
    attention = torch.zeros(height, width)
    attention[20:36, 4:16] = 1.0
    transform = build_resize_transforms(True, (48, 40), augment=True)
    for seed in range(20):
        torch.manual_seed(seed)
        out, att = transform(Image.fromarray(pixels), attention)
        image_col = float(_centroid(_bright_mass(out))[1])
        attention_col = float(_centroid(att[0])[1])
        assert image_col < 40 / 4 and attention_col < 40 / 4, (seed, image_col, attention_col)
    assert "Flip" not in repr(transform)


def test_pim_test_transform_is_the_squash_resize_then_centre_crop():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (70, 110, 3), dtype=np.uint8)
    image, _ = build_pim_transforms(train=False, input_size=48)(Image.fromarray(pixels))
    side = round(48 * 510 / 384)  # 64: 510 at 384 px
    squashed = F.resize(torch.from_numpy(pixels).permute(2, 0, 1), [side, side], antialias=True)  # no aspect kept
    crop = squashed[:, 8:56, 8:56].float() / 255
    expected = (crop - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)


def test_pim_train_transform_is_the_published_chain():
    steps = build_pim_transforms(train=True, input_size=384).pipeline.transforms
    assert isinstance(steps[0], v2.Resize) and steps[0].size == [510, 510]
    assert isinstance(steps[1], v2.RandomCrop) and steps[1].size == (384, 384)
    assert isinstance(steps[2], v2.RandomHorizontalFlip) and steps[2].p == 0.5
    blur = steps[3]
    assert isinstance(blur, v2.RandomApply) and blur.p == 0.1
    assert blur.transforms[0].kernel_size == (5, 5) and blur.transforms[0].sigma == [0.1, 5.0]
    assert isinstance(steps[4], v2.RandomAdjustSharpness) and (steps[4].sharpness_factor, steps[4].p) == (1.5, 0.1)
    image, _ = build_pim_transforms(train=True, input_size=32, resize_size=40)(Image.new("RGB", (90, 50)))
    assert image.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="smaller than input_size"):
        build_pim_transforms(train=True, input_size=32, resize_size=20)
