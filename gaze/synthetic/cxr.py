"""Deterministic SYNTHETIC miniature of EGD-CXR ("CXR-Eye") in its real on-disk layout.

MIMIC-CXR and EGD-CXR need credentialed access, so demos, tests and CPU smoke runs use this
stand-in. It copies the layout of MIMIC-CXR-JPG plus the egd-cxr release (spec cxr.md §1):

```
<root>/                                   e.g. data/synthetic_cxr
  README.txt                              says it is synthetic and how it was made
  mimic-cxr-jpg/files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg   8-bit grey JPEG
  egd-cxr/master_sheet.csv                one row per CXR (cxr.md §1.1), rows shuffled
  egd-cxr/fixations.csv                   one row per fixation (cxr.md §1.2)
  egd-cxr/fixation_heatmaps/<dicom_id>/heatmap.png   viridis RGBA (cxr.md §1.4; optional)
  .synthetic_complete.json                written last: the generation parameters
```

Images are drawn chest radiographs (portrait, 8-bit grey): soft tissue, two dark lung fields
with faint rib arcs and vessel texture, clavicles, the mediastinum and the heart shadow
(bottom centre-right of the picture, as on a PA film), the diaphragm domes, random thorax
shift/rotation/scale, noise and random brightness/contrast/gamma. **The three exclusive
classes differ only in local findings**:

* ``Normal`` (label 0): none; cardiothoracic ratio (CTR) 0.40-0.50.
* ``CHF`` (1): cardiomegaly (CTR 0.58-0.65) plus small bilateral pleural effusions, a bright
  meniscus blunting both costophrenic angles.
* ``pneumonia`` (2): one focal consolidation, a bright textured patch (radius 10-18 % of the
  lung width) in a random zone of one lung; CTR as Normal.

Simulated gaze (cxr.md §1): each CXR was "shown" with its longer side resized to 1024 px,
centred on a 1920x1080 screen; the padding is stored in ``master_sheet.csv``. 25-60
fixations per CXR; on abnormal images 40-60 % of them on the findings (the consolidation, or
the heart borders and both costophrenic angles), the rest scanning the lungs, heart and
mediastinum; about 5 % in the screen padding. Fixations are drawn in image pixels and
written as screen fractions (``FPOGX``, ``FPOGY``) through the exact inverse of the
published screen->image mapping (cxr.md §1.3, :func:`gaze.attention.egd.screen_to_image`), so ``X_ORIGINAL``
and ``Y_ORIGINAL`` (-1 outside) are reproduced exactly by that mapping. Durations are
0.06 s + lognormal (median 0.28 s). CXRs are shown in sessions of 30 in a shuffled order,
with a calibration image (a white dot at the screen centre) about every 20 CXRs: its
``DICOM_ID`` is a real ``dicom_id`` minus its last 5 characters and is absent from the
master sheet (cxr.md §1, §5); its fixations sit near the screen centre with a small
per-session offset. The CXR fixations themselves carry no tracker offset.

Heatmaps follow the published recipe (cxr.md §1.4): +1 per mapped fixation (duration
ignored), a Gaussian filter with sigma = 150 px *at MIMIC DICOM scale* (3056 px), here scaled
to ``150 * max(W, H) / 3056`` px, then ``plt.imsave`` (min-max, viridis, RGBA).
"""

from __future__ import annotations

import argparse
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter1d

from gaze.atomic import atomic_write_bytes
from gaze.attention.egd import screen_to_image
from gaze.synthetic.marker import MARKER_NAME, ensure_set

#: Bumped when the drawing or the tables change, so ensure_synthetic_cxr_eye rebuilds old sets.
GENERATOR_VERSION = 1
MIMIC_DIR = "mimic-cxr-jpg"
EGD_DIR = "egd-cxr"
CLASSES = ("Normal", "CHF", "pneumonia")

#: Reading screen and displayed size of the longer image side (cxr.md §1, "Display").
SCREEN_WIDTH, SCREEN_HEIGHT, DISPLAY_SIDE = 1920, 1080, 1024
#: Images per reading session and CXRs per calibration image (cxr.md §1).
SESSION_SIZE, CALIBRATION_EVERY = 30, 20
#: Heatmap sigma: 150 px at the scale of a MIMIC DICOM (longer side 3056 px) (cxr.md §1.4).
HEATMAP_SIGMA_DICOM, DICOM_LONG_SIDE = 150.0, 3056
#: Fraction of patients with two images (different study, same class).
TWO_IMAGE_PATIENT_FRACTION = 0.05
#: Portrait images: width = height * U(WIDTH_RATIO); about 20 % of widths are odd.
WIDTH_RATIO, ODD_WIDTH_FRACTION = (0.78, 0.95), 0.2
AGE_BUCKETS = ("20 - 30", "30 - 40", "40 - 50", "50 - 60", "60 - 70", "70 - 80")

# Anatomy in thorax units: origin near the thorax centre, u to the picture's right, v down;
# 1 unit = SCALE_PER_WIDTH * image width.
SCALE_PER_WIDTH = 0.45
LUNG_CENTRE_U, LUNG_HALF_WIDTH, LUNG_APEX_V, LUNG_TAPER = 0.45, 0.36, -0.85, 1.0
DOME_CURVATURE = 1.6  # v of a dome rises by DOME_CURVATURE * du**2 away from the lung centre
#: Cardiothoracic ratio: heart width / inner thorax width at the costophrenic angles.
CTR_NORMAL, CTR_CHF = (0.40, 0.50), (0.58, 0.65)
#: Effusion: the fluid rises this high (thorax units) at the lateral chest wall.
EFFUSION_HEIGHT = (0.09, 0.16)
#: Consolidation radius as a fraction of the lung width (2 * LUNG_HALF_WIDTH).
CONSOLIDATION_RADIUS = (0.10, 0.18)
#: Grey levels before the random brightness/contrast/gamma.
AIR_LEVEL, TISSUE_LEVEL, LUNG_DARKNESS, MEDIASTINUM_LEVEL, HEART_LEVEL = 0.04, 0.60, 0.36, 0.68, 0.66
#: Anatomy is drawn at 1/DRAW_REDUCTION of the image size, then upsampled (speed).
DRAW_REDUCTION = 2
#: Grey levels of the gamma look-up table.
GAMMA_LEVELS = 1024

#: Gaze simulation (module docstring): fixations per CXR, share on the findings, outside.
FIXATIONS_PER_IMAGE, FINDING_FRACTION, OUTSIDE_FRACTION = (25, 60), (0.40, 0.60), 0.05
#: Durations: 0.06 s + lognormal (median 0.22 s) -> median 0.28 s; 2 % flagged invalid.
MIN_DURATION_S, DURATION_MEDIAN_S, DURATION_LOG_SD, INVALID_FRACTION = 0.06, 0.28, 0.5, 0.02
CALIBRATION_FIXATIONS, CALIBRATION_OFFSET_SD = (3, 8), 0.004  # offset in screen fractions
#: Screen fractions are written with 5 decimals, as the Gazepoint GP3 does.
FRACTION_DECIMALS = 5

CHEXPERT_COLUMNS = (
    "cardiomegaly__chx",
    "edema__chx",
    "pleural_effusion__chx",
    "pneumonia__chx",
    "consolidation__chx",
    "no_finding__chx",
)
NAN = float("nan")
#: Per class and CheXpert column: (values, probabilities); NaN = not mentioned.
CHEXPERT_PROBS = {
    "Normal": {
        "no_finding__chx": ((1.0, NAN), (0.9, 0.1)),
        "*": ((NAN, 0.0), (0.85, 0.15)),
    },
    "CHF": {
        "cardiomegaly__chx": ((1.0, -1.0, NAN), (0.7, 0.1, 0.2)),
        "edema__chx": ((1.0, -1.0, NAN), (0.6, 0.2, 0.2)),
        "pleural_effusion__chx": ((1.0, -1.0, NAN), (0.75, 0.1, 0.15)),
        "pneumonia__chx": ((NAN, -1.0, 0.0), (0.8, 0.1, 0.1)),
        "consolidation__chx": ((NAN, 0.0), (0.9, 0.1)),
        "no_finding__chx": ((NAN,), (1.0,)),
    },
    "pneumonia": {
        "pneumonia__chx": ((1.0, -1.0, NAN), (0.6, 0.3, 0.1)),
        "consolidation__chx": ((1.0, -1.0, NAN), (0.4, 0.1, 0.5)),
        "no_finding__chx": ((NAN,), (1.0,)),
        "*": ((NAN, 0.0), (0.85, 0.15)),
    },
}
FIXATION_COLUMNS = (
    "SESSION_ID",
    "DICOM_ID",
    "CNT",
    "Time (in secs)",
    "TIMETICK",
    "FPOGX",
    "FPOGY",
    "FPOGS",
    "FPOGD",
    "FPOGID",
    "FPOGV",
    "X_ORIGINAL",
    "Y_ORIGINAL",
)


# --------------------------------------------------------------------------- screen geometry


@dataclass(frozen=True)
class ScreenPadding:
    """Screen padding around the displayed image, in screen pixels (master_sheet pad columns)."""

    top: int
    bottom: int
    left: int
    right: int


def screen_padding(width: int, height: int) -> ScreenPadding:
    """Padding of an image shown with its longer side at 1024 px, centred on 1920x1080.

    Args:
        width, height: original image size in pixels.

    Returns:
        The four paddings; displayed size = (1920 - left - right, 1080 - top - bottom).
    """
    scale = DISPLAY_SIDE / max(width, height)
    shown_width, shown_height = round(width * scale), round(height * scale)
    top, left = (SCREEN_HEIGHT - shown_height) // 2, (SCREEN_WIDTH - shown_width) // 2
    return ScreenPadding(top, SCREEN_HEIGHT - shown_height - top, left, SCREEN_WIDTH - shown_width - left)


def image_to_screen(
    x: np.ndarray, y: np.ndarray, width: int, height: int, pad: ScreenPadding
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`gaze.attention.egd.screen_to_image`: image pixels -> screen fractions (5 decimals).

    Each point goes to the screen centre of its pixel's bin, so that
    ``screen_to_image(image_to_screen(x, y)) == (int(x), int(y))`` for 0 <= x < W, 0 <= y < H
    despite the rounding to 5 decimals (bins are 1024 / H_even >> 1e-5 * 1920 screen px wide).

    Args:
        x, y: (N,) image pixels (float), inside the image.
        width, height: original image size in pixels.
        pad: the image's screen padding.

    Returns:
        (fpogx, fpogy): (N,) float64 screen fractions.
    """
    even_width, even_height = width + width % 2, height + height % 2
    shown_width = SCREEN_WIDTH - pad.left - pad.right
    shown_height = SCREEN_HEIGHT - pad.top - pad.bottom
    ex = pad.left + (np.floor(x) + 0.5) * shown_width / even_width
    ey = pad.top + (np.floor(y) + 0.5) * shown_height / even_height
    return np.round(ex / SCREEN_WIDTH, FRACTION_DECIMALS), np.round(ey / SCREEN_HEIGHT, FRACTION_DECIMALS)


def heatmap_sigma(width: int, height: int) -> float:
    """Gaussian sigma in pixels: 150 px at MIMIC DICOM scale (3056 px), scaled to this image."""
    return HEATMAP_SIGMA_DICOM * max(width, height) / DICOM_LONG_SIDE


def render_fixation_heatmap(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Count image of the mapped fixations blurred by the published Gaussian (cxr.md §1.4).

    Equals ``scipy.ndimage.gaussian_filter(record, heatmap_sigma(W, H))`` of the (H, W)
    count image ``record`` (+1 per fixation with x, y >= 0; durations ignored): the same
    kernel and 'reflect' borders, computed as a sum of separable impulse responses, which is
    about 20x faster for a few dozen fixations.

    Args:
        x, y: (N,) int image pixels, -1 for unmapped fixations (skipped).
        width, height: image size in pixels.

    Returns:
        (H, W) float64 map (not normalised).
    """
    mapped = (np.asarray(x) >= 0) & (np.asarray(y) >= 0)
    x, y = np.asarray(x)[mapped], np.asarray(y)[mapped]
    sigma = heatmap_sigma(width, height)
    rows = np.zeros((len(x), height))
    rows[np.arange(len(y)), y] = 1.0
    columns = np.zeros((len(x), width))
    columns[np.arange(len(x)), x] = 1.0
    rows = gaussian_filter1d(rows, sigma, axis=1, mode="reflect")  # (N, H)
    columns = gaussian_filter1d(columns, sigma, axis=1, mode="reflect")  # (N, W)
    return np.einsum("nh,nw->hw", rows, columns)  # not BLAS: its threads crawl on busy CPUs


def heatmap_png_bytes(heatmap: np.ndarray) -> bytes:
    """``plt.imsave`` of the map as PNG: min-max scaled, viridis, RGBA (cxr.md §1.4).

    The zlib strategy Z_RLE instead of PIL's default makes it about 3x faster and the file
    smaller; the pixels are identical.
    """
    from matplotlib import image as mpimg  # plt.imsave is matplotlib.image.imsave

    buffer = io.BytesIO()
    mpimg.imsave(buffer, heatmap, cmap="viridis", format="png", pil_kwargs={"compress_type": zlib.Z_RLE})
    return buffer.getvalue()


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Thorax:
    """Thorax units (u right, v down) <-> image pixels: centre, scale (px/unit), rotation."""

    cx: float
    cy: float
    scale: float
    angle: float

    def to_image(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        return self.cx + self.scale * (cos * u - sin * v), self.cy + self.scale * (sin * u + cos * v)

    def from_image(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        return (cos * dx + sin * dy) / self.scale, (-sin * dx + cos * dy) / self.scale


@dataclass(frozen=True)
class _Anatomy:
    """One drawn chest in thorax units; lungs indexed 0 (picture left) and 1 (picture right)."""

    dome_top: tuple[float, float]
    heart: tuple[float, float, float, float]  # centre u, v and half axes
    effusion_height: tuple[float, float] | None  # CHF only
    consolidation: tuple[int, float, float, float] | None  # pneumonia: lung, u, v, radius

    @staticmethod
    def lung_centre(lung: int) -> float:
        return LUNG_CENTRE_U * (2 * lung - 1)

    def lung_half_width(self, v: np.ndarray) -> np.ndarray:
        """Half width of a lung at height v: an elliptic apex, full width LUNG_TAPER below it."""
        below_apex = np.clip((v - LUNG_APEX_V) / LUNG_TAPER, 0.0, 1.0)
        return LUNG_HALF_WIDTH * np.sqrt(1.0 - (1.0 - below_apex) ** 2)

    def dome(self, lung: int, u: np.ndarray) -> np.ndarray:
        """v of the diaphragm under a lung: highest at the lung centre."""
        return self.dome_top[lung] + DOME_CURVATURE * (u - self.lung_centre(lung)) ** 2

    def costophrenic_angle(self, lung: int) -> tuple[float, float]:
        """(u, v) of the lateral lung base, where the chest wall meets the dome."""
        u = self.lung_centre(lung) + (2 * lung - 1) * LUNG_HALF_WIDTH
        return u, float(self.dome(lung, u))


def _soft(distance: np.ndarray, edge: float) -> np.ndarray:
    """0 -> 1 linear ramp of width ``edge`` centred where ``distance`` crosses 0 (anti-aliasing)."""
    return np.clip(0.5 + distance / edge, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> np.ndarray:
    """(H, W) float32 smooth noise, about N(0, 1) values varying over ``cell`` pixels."""
    width, height = size
    small = rng.standard_normal((height // cell + 3, width // cell + 3)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def _choose_anatomy(label: int, rng: np.random.Generator) -> _Anatomy:
    """Random chest of the class: heart size, dome heights, effusion or consolidation."""
    dome_top = (rng.uniform(0.38, 0.46), rng.uniform(0.44, 0.52))  # right hemidiaphragm higher
    thorax_width = 2 * (LUNG_CENTRE_U + LUNG_HALF_WIDTH)
    ctr = rng.uniform(*(CTR_CHF if label == 1 else CTR_NORMAL))
    heart_width = ctr * thorax_width
    heart = (
        0.15 * heart_width + rng.uniform(-0.03, 0.03),  # two thirds of the heart right of centre
        rng.uniform(0.30, 0.36),
        heart_width / 2,
        rng.uniform(0.28, 0.32) + (0.03 if label == 1 else 0.0),
    )
    anatomy = _Anatomy(dome_top, heart, None, None)
    if label == 1:
        return _Anatomy(dome_top, heart, tuple(rng.uniform(*EFFUSION_HEIGHT, size=2).tolist()), None)
    if label == 2:
        return _Anatomy(dome_top, heart, None, _choose_consolidation(anatomy, rng))
    return anatomy


def _choose_consolidation(anatomy: _Anatomy, rng: np.random.Generator) -> tuple[int, float, float, float]:
    """(lung, u, v, radius) of a patch in a random zone (upper/middle/lower) of one lung."""
    radius = rng.uniform(*CONSOLIDATION_RADIUS) * 2 * LUNG_HALF_WIDTH
    hu, hv, ha, hb = anatomy.heart
    for _ in range(100):
        lung = int(rng.integers(2))
        zone = int(rng.integers(3))
        v = rng.uniform(-0.62 + 0.4 * zone, -0.22 + 0.4 * zone)
        du = rng.uniform(-0.7, 0.7) * float(anatomy.lung_half_width(v))
        u = anatomy.lung_centre(lung) + du
        inside_lung = v + 0.6 * radius < anatomy.dome(lung, u)
        clear_of_heart = ((u - hu) / (ha + radius)) ** 2 + ((v - hv) / (hb + radius)) ** 2 > 1.0
        if inside_lung and clear_of_heart:
            return lung, float(u), float(v), float(radius)
    return 0, -LUNG_CENTRE_U, -0.2, float(radius)  # upper-middle left lung: always clear


def _lung_masks(anatomy: _Anatomy, u: np.ndarray, v: np.ndarray, edge: float) -> list[np.ndarray]:
    """Per lung (picture left, right): soft mask of the lung field above its dome."""
    half_width = anatomy.lung_half_width(v)
    masks = []
    for lung in (0, 1):
        wall = _soft(half_width - np.abs(u - anatomy.lung_centre(lung)), edge) * _soft(v - LUNG_APEX_V, edge)
        masks.append(wall * _soft(anatomy.dome(lung, u) - v, edge))
    return masks


def _draw_radiograph(
    anatomy: _Anatomy, thorax: _Thorax, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """(H, W) uint8 grey chest radiograph of ``anatomy`` placed by ``thorax``.

    The anatomy is drawn at 1/DRAW_REDUCTION of the size (radiographs are smooth), upsampled
    bicubically, then noise and the global brightness/contrast/gamma are applied at full size.
    """
    width, height = size
    small_width, small_height = -(-width // DRAW_REDUCTION), -(-height // DRAW_REDUCTION)
    xs = (np.arange(small_width, dtype=np.float32) + 0.5) * (width / small_width)
    ys = (np.arange(small_height, dtype=np.float32)[:, None] + 0.5) * (height / small_height)
    u, v = thorax.from_image(xs[None, :], ys)
    u, v = u.astype(np.float32), v.astype(np.float32)
    edge = 1.5 * DRAW_REDUCTION / thorax.scale  # about 1.5 drawing pixels
    abs_u = np.abs(u)

    neck = np.clip((-0.95 - v) / 0.4, 0.0, 1.0)
    body = _soft(1.12 - 0.75 * neck * neck * (3 - 2 * neck) - abs_u, 0.08)
    tissue = TISSUE_LEVEL + 0.05 * np.clip(v, -1.0, 1.2)  # abdomen a little brighter
    image = AIR_LEVEL + (tissue - AIR_LEVEL) * body

    lung_left, lung_right = _lung_masks(anatomy, u, v, edge)
    lungs = np.maximum(lung_left, lung_right)
    vessels = _smooth_noise(rng, (small_width, small_height), max(2, small_width // 60))
    hila = np.exp(((abs_u - 0.22) ** 2 + (v + 0.02) ** 2) * (-1 / (2 * 0.14**2)))
    image -= lungs * (LUNG_DARKNESS * rng.uniform(0.9, 1.1) + 0.025 * vessels - 0.08 * hila)

    rib_phase = (v + 0.35 * u * u) * (1 / rng.uniform(0.15, 0.19)) + rng.uniform(0, 1)
    ribs = np.clip(np.cos(2 * np.pi * rib_phase), 0.0, 1.0) ** 4
    image += rng.uniform(0.035, 0.06) * ribs * lungs
    clavicles = np.exp(-(((v + 0.78 + 0.18 * (abs_u - 0.12)) / 0.035) ** 2))
    image += 0.07 * clavicles * _soft(0.85 - abs_u, 0.1) * _soft(abs_u - 0.1, 0.05)

    if anatomy.effusion_height is not None:
        image = _draw_effusions(image, anatomy, u, v, (lung_left, lung_right), rng)
    if anatomy.consolidation is not None:
        image += _consolidation_patch(anatomy, thorax, u, v, rng) * lungs

    mediastinum = _soft(0.11 + 0.02 * np.clip(v + 0.3, 0, 1) - np.abs(u - 0.02), 0.04)
    mediastinum *= _soft(anatomy.heart[1] - v, 0.05)
    aortic_knob = _soft(1 - np.hypot((u - 0.14) / 0.08, (v + 0.45) / 0.07), 0.3)
    image += (MEDIASTINUM_LEVEL - image) * np.maximum(mediastinum, aortic_knob) * body
    hu, hv, ha, hb = anatomy.heart
    heart = _soft(1 - np.hypot((u - hu) / ha, (v - hv) / hb), 0.06)
    image += (HEART_LEVEL - image) * heart
    image -= 0.06 * _soft(0.035 - np.abs(u - 0.01), 0.03) * _soft(-0.35 - v, 0.1)  # trachea
    image += 0.02 * _soft(0.06 - abs_u, 0.04)  # spine behind the mediastinum

    image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0.015, 0.035)
    image = (image - 0.45) * rng.uniform(0.85, 1.15) + (0.45 + rng.uniform(-0.06, 0.06))
    levels = np.rint(np.clip(image, 0.0, 1.0) * (GAMMA_LEVELS - 1)).astype(np.int32)
    gamma_table = np.rint(np.linspace(0.0, 1.0, GAMMA_LEVELS) ** rng.uniform(0.8, 1.25) * 255)
    return gamma_table.astype(np.uint8)[levels]


def _draw_effusions(
    image: np.ndarray,
    anatomy: _Anatomy,
    u: np.ndarray,
    v: np.ndarray,
    lung_masks: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Blend fluid into both costophrenic angles: a meniscus rising at the chest wall."""
    for lung, (mask, height) in enumerate(zip(lung_masks, anatomy.effusion_height)):
        _, cp_v = anatomy.costophrenic_angle(lung)
        lateral = (u - anatomy.lung_centre(lung)) * ((2 * lung - 1) / LUNG_HALF_WIDTH)  # 1 at the wall
        level = cp_v + 0.02 - height * np.clip((lateral + 0.1) / 1.1, 0.0, 1.0) ** 2
        fluid = mask * _soft(v - level, 0.03) * rng.uniform(0.75, 0.95)
        image = image + (TISSUE_LEVEL - image) * fluid
    return image


def _consolidation_patch(
    anatomy: _Anatomy, thorax: _Thorax, u: np.ndarray, v: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Brightness of a blotchy, textured patch (5-8 overlapping blobs), same shape as ``u``.

    Only a window of +-3.5 radii around the patch centre is computed.
    """
    _, cu, cv, radius = anatomy.consolidation
    count = int(rng.integers(5, 9))
    centres = rng.normal(0.0, 0.45 * radius, size=(count, 2)) + (cu, cv)
    sigmas = radius * rng.uniform(0.3, 0.55, size=count)
    weights = rng.uniform(0.6, 1.0, size=count)
    amplitude = rng.uniform(0.25, 0.35)
    height, width = u.shape
    x, y = thorax.to_image(cu, cv)
    x, y = x / DRAW_REDUCTION, y / DRAW_REDUCTION  # drawing pixels (to within one)
    reach = 3.5 * radius * thorax.scale / DRAW_REDUCTION + 2
    cols = slice(max(0, int(x - reach)), max(0, min(width, int(x + reach) + 1)))
    rows = slice(max(0, int(y - reach)), max(0, min(height, int(y + reach) + 1)))
    patch = np.zeros_like(u)
    window_u, window_v = u[rows, cols], v[rows, cols]
    field = np.zeros_like(window_u)
    for (bu, bv), sigma, weight in zip(centres, sigmas, weights):
        field += weight * np.exp(((window_u - bu) ** 2 + (window_v - bv) ** 2) * (-1 / (2 * sigma**2)))
    texture = 0.65 + 0.35 * np.clip(0.5 + 0.3 * rng.standard_normal(field.shape, dtype=np.float32), 0.0, 1.0)
    patch[rows, cols] = amplitude * (1 - np.exp(-1.5 * field)) * texture
    return patch


# --------------------------------------------------------------------------- gaze


def _finding_points(anatomy: _Anatomy, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) thorax-unit points on the findings: consolidation, or heart borders + angles."""
    if anatomy.consolidation is not None:
        _, cu, cv, radius = anatomy.consolidation
        return rng.normal((cu, cv), 0.6 * radius, size=(count, 2))
    hu, hv, ha, hb = anatomy.heart
    target = rng.choice(3, size=count, p=(0.4, 0.3, 0.3))  # heart border, left / right angle
    angle = rng.uniform(-1.1, 1.1, size=count) + np.pi * (rng.random(count) < 0.35)
    points = np.stack([hu + ha * np.cos(angle), hv + hb * np.sin(angle)], axis=1)
    for lung in (0, 1):
        points[target == lung + 1] = anatomy.costophrenic_angle(lung)
    return points + rng.normal(0.0, 0.045, size=(count, 2))


def _scanning_points(anatomy: _Anatomy, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) thorax-unit points of a survey: both lungs, the heart and the mediastinum."""
    target = rng.choice(4, size=count, p=(0.35, 0.35, 0.15, 0.15))
    v = rng.uniform(-0.7, 0.5, size=count)
    u = np.where(target == 0, -LUNG_CENTRE_U, LUNG_CENTRE_U) + rng.uniform(-0.85, 0.85, size=count) * (
        anatomy.lung_half_width(v)
    )
    hu, hv, ha, hb = anatomy.heart
    heart = target == 2
    u[heart] = hu + ha * rng.uniform(-0.7, 0.7, size=heart.sum())
    v[heart] = hv + hb * rng.uniform(-0.6, 0.6, size=heart.sum())
    mediastinum = target == 3
    u[mediastinum] = rng.normal(0.02, 0.05, size=mediastinum.sum())
    v[mediastinum] = rng.uniform(-0.8, 0.2, size=mediastinum.sum())
    points = np.stack([u, v], axis=1) + rng.normal(0.0, 0.03, size=(count, 2))
    points[0] = rng.normal(0.0, 0.08, size=2)  # readers start near the centre
    return points


@dataclass(frozen=True)
class _Gaze:
    """Fixations of one viewing: screen fractions, image pixels (-1 outside), durations (s)."""

    fpogx: np.ndarray
    fpogy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    duration: np.ndarray


def _durations(count: int, rng: np.random.Generator) -> np.ndarray:
    excess = DURATION_MEDIAN_S - MIN_DURATION_S
    return np.round(MIN_DURATION_S + np.exp(rng.normal(np.log(excess), DURATION_LOG_SD, size=count)), 5)


def _simulate_gaze(
    anatomy: _Anatomy, thorax: _Thorax, size: tuple[int, int], pad: ScreenPadding, rng: np.random.Generator
) -> _Gaze:
    """Fixations on one CXR as described in the module docstring (findings, survey, padding)."""
    width, height = size
    count = int(rng.integers(FIXATIONS_PER_IMAGE[0], FIXATIONS_PER_IMAGE[1] + 1))
    on_findings = 0
    if anatomy.effusion_height is not None or anatomy.consolidation is not None:
        on_findings = int(round(rng.uniform(*FINDING_FRACTION) * count))
    points = np.concatenate(
        [_scanning_points(anatomy, count - on_findings, rng), _finding_points(anatomy, on_findings, rng)]
    )
    order = np.concatenate([[0], 1 + rng.permutation(count - 1)])  # the central start stays first
    x, y = thorax.to_image(points[order, 0], points[order, 1])
    x, y = np.clip(x, 0.0, width - 1e-3), np.clip(y, 0.0, height - 1e-3)
    fpogx, fpogy = image_to_screen(x, y, width, height, pad)
    outside = rng.random(count) < OUTSIDE_FRACTION
    outside[0] = False
    side = rng.random(outside.sum()) < 0.5  # left or right padding
    ex = np.where(
        side,
        rng.uniform(5, pad.left - 5, size=outside.sum()),
        rng.uniform(SCREEN_WIDTH - pad.right + 5, SCREEN_WIDTH - 5, size=outside.sum()),
    )
    fpogx[outside] = np.round(ex / SCREEN_WIDTH, FRACTION_DECIMALS)
    fpogy[outside] = np.round(rng.uniform(0.1, 0.9, size=outside.sum()), FRACTION_DECIMALS)
    mapped_x, mapped_y, _ = screen_to_image(fpogx, fpogy, pad.top, pad.bottom, pad.left, pad.right, width, height)
    expected_x = np.where(outside, -1, np.floor(x).astype(np.int64))
    expected_y = np.where(outside, -1, np.floor(y).astype(np.int64))
    if not (np.array_equal(mapped_x, expected_x) and np.array_equal(mapped_y, expected_y)):
        raise RuntimeError("internal error: screen_to_image does not invert image_to_screen")
    return _Gaze(fpogx, fpogy, mapped_x, mapped_y, _durations(count, rng))


def _calibration_gaze(offset: np.ndarray, rng: np.random.Generator) -> _Gaze:
    """A few fixations on the central calibration dot, shifted by the session's offset."""
    count = int(rng.integers(CALIBRATION_FIXATIONS[0], CALIBRATION_FIXATIONS[1] + 1))
    points = np.round(0.5 + offset + rng.normal(0.0, 0.002, size=(count, 2)), FRACTION_DECIMALS)
    unmapped = np.full(count, -1, dtype=np.int64)
    return _Gaze(points[:, 0], points[:, 1], unmapped, unmapped, _durations(count, rng))


# --------------------------------------------------------------------------- tables


@dataclass
class _Case:
    """One synthetic CXR: ids, label, size, padding and (after drawing) its gaze."""

    label: int
    patient: int  # index into the patient table
    dicom_id: str = ""
    study_id: int = 0
    stay_id: int = 0
    size: tuple[int, int] = (0, 0)
    pad: ScreenPadding | None = None
    gaze: _Gaze | None = None


def _hex_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct MIMIC-style dicom ids: 5 groups of 8 lower-case hex digits; the
    calibration names (id minus 5 characters) are distinct too."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        words = rng.integers(0, 2**32, size=5, dtype=np.uint64)
        dicom_id = "-".join(f"{int(w):08x}" for w in words)
        if dicom_id[:-5] not in seen:
            seen.add(dicom_id[:-5])
            ids.append(dicom_id)
    return ids


def _distinct_numbers(rng: np.random.Generator, count: int, first_digit: int) -> np.ndarray:
    """``count`` distinct 8-digit numbers starting with ``first_digit`` (MIMIC id style)."""
    return first_digit * 10**7 + rng.choice(10**7, size=count, replace=False)


def _make_cases(images_per_class: int, rng: np.random.Generator) -> tuple[list[_Case], pd.DataFrame]:
    """Cases (class-major order) and their patient table; ~5 % of patients have two images."""
    pairs = int(round(images_per_class * TWO_IMAGE_PATIENT_FRACTION / (1 + TWO_IMAGE_PATIENT_FRACTION)))
    cases: list[_Case] = []
    patient = 0
    for label in range(len(CLASSES)):
        order = rng.permutation(images_per_class)
        patient_of = np.empty(images_per_class, dtype=np.int64)
        patient_of[order[: 2 * pairs]] = patient + np.arange(2 * pairs) // 2
        patient_of[order[2 * pairs :]] = patient + pairs + np.arange(images_per_class - 2 * pairs)
        patient += images_per_class - pairs
        cases += [_Case(label=label, patient=int(p)) for p in patient_of]
    patients = pd.DataFrame(
        {
            "patient_id": _distinct_numbers(rng, patient, 1),
            "gender": rng.choice(["M", "F"], size=patient),
            "anchor_age": rng.choice(AGE_BUCKETS, size=patient),
        }
    )
    studies = _distinct_numbers(rng, len(cases), 5)
    stays = _distinct_numbers(rng, len(cases), 3)
    for case, dicom_id, study, stay in zip(cases, _hex_ids(rng, len(cases)), studies, stays):
        case.dicom_id, case.study_id, case.stay_id = dicom_id, int(study), int(stay)
    return cases, patients


def _chexpert_labels(label: int, rng: np.random.Generator) -> dict[str, float]:
    table = CHEXPERT_PROBS[CLASSES[label]]
    labels = {}
    for column in CHEXPERT_COLUMNS:
        values, probs = table.get(column, table.get("*", ((NAN,), (1.0,))))
        labels[column] = float(values[rng.choice(len(values), p=probs)])
    return labels


def _master_sheet(cases: list[_Case], patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """master_sheet.csv rows (cxr.md §1.1) in a shuffled order."""
    rows = []
    for case in cases:
        patient = patients.iloc[case.patient]
        patient_id = f"{int(patient.patient_id)}"
        rows.append(
            {
                "dicom_id": case.dicom_id,
                "path": f"files/p{patient_id[:2]}/p{patient_id}/s{case.study_id}/{case.dicom_id}.dcm",
                "patient_id": int(patient.patient_id),
                "study_id": case.study_id,
                "stay_id": case.stay_id,
                "gender": patient.gender,
                "anchor_age": patient.anchor_age,
                "image_top_pad": case.pad.top,
                "image_bottom_pad": case.pad.bottom,
                "image_left_pad": case.pad.left,
                "image_right_pad": case.pad.right,
                **{name: int(case.label == k) for k, name in enumerate(CLASSES)},
                **_chexpert_labels(case.label, rng),
            }
        )
    return pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)


def _reading_order(cases: list[_Case], rng: np.random.Generator) -> list[tuple[str, int]]:
    """Shuffled ("cxr", case index) items with ("calibration", k) after every 15-25 CXRs."""
    items: list[tuple[str, int]] = []
    gap = int(rng.integers(5, CALIBRATION_EVERY + 1))
    for index in rng.permutation(len(cases)):
        items.append(("cxr", int(index)))
        gap -= 1
        if gap == 0:
            items.append(("calibration", sum(kind == "calibration" for kind, _ in items)))
            gap = int(rng.integers(CALIBRATION_EVERY - 5, CALIBRATION_EVERY + 6))
    if not any(kind == "calibration" for kind, _ in items):
        items.insert(int(rng.integers(len(items) + 1)), ("calibration", 0))
    return items


def _fixation_table(cases: list[_Case], rng: np.random.Generator) -> tuple[pd.DataFrame, int, int]:
    """fixations.csv (cxr.md §1.2): sessions of 30 images with calibration images.

    Returns:
        (table, number of sessions, number of calibration images).
    """
    items = _reading_order(cases, rng)
    calibration_count = sum(kind == "calibration" for kind, _ in items)
    calibration_sources = rng.choice(len(cases), size=calibration_count, replace=False)
    parts = []
    sessions = [items[start : start + SESSION_SIZE] for start in range(0, len(items), SESSION_SIZE)]
    for session_id, session in enumerate(sessions, start=1):
        offset = rng.normal(0.0, CALIBRATION_OFFSET_SD, size=2)
        clock = 0.0
        first_count, first_tick = int(rng.integers(100, 5000)), int(rng.integers(10**9, 10**10))
        fixation_id = 0
        for kind, index in session:
            if kind == "cxr":
                gaze, dicom_id = cases[index].gaze, cases[index].dicom_id.upper()
            else:
                gaze = _calibration_gaze(offset, rng)
                dicom_id = cases[calibration_sources[index]].dicom_id[:-5].upper()
            count = len(gaze.fpogx)
            saccades = rng.uniform(0.02, 0.06, size=count)
            offsets = np.concatenate([[0.0], np.cumsum(gaze.duration + saccades)[:-1]])
            starts = clock + rng.uniform(1.5, 4.0) + offsets  # a pause between images
            ends = starts + gaze.duration
            clock = float(ends[-1])
            parts.append(
                pd.DataFrame(
                    {
                        "SESSION_ID": session_id,
                        "DICOM_ID": dicom_id,
                        "CNT": first_count + np.rint(ends * 60).astype(np.int64),  # 60 Hz samples
                        "Time (in secs)": np.round(ends, 5),
                        "TIMETICK": first_tick + np.rint(ends * 1e7).astype(np.int64),  # 10 MHz ticks
                        "FPOGX": gaze.fpogx,
                        "FPOGY": gaze.fpogy,
                        "FPOGS": np.round(starts, 5),
                        "FPOGD": gaze.duration,
                        "FPOGID": fixation_id + 1 + np.arange(count),
                        "FPOGV": (rng.random(count) >= INVALID_FRACTION).astype(np.int64),
                        "X_ORIGINAL": gaze.x,
                        "Y_ORIGINAL": gaze.y,
                    },
                    columns=list(FIXATION_COLUMNS),
                )
            )
            fixation_id += count
    return pd.concat(parts, ignore_index=True), len(sessions), calibration_count


# --------------------------------------------------------------------------- the set


def _image_size(image_size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): even height in [min, max], width = height * U(0.78, 0.95), some odd."""
    low, high = image_size
    height = int(rng.integers(low, high + 1))
    if height % 2:
        height += 1 if height + 1 <= high else -1 if height - 1 >= low else 0
    width = int(round(height * rng.uniform(*WIDTH_RATIO)))
    width = width - width % 2 + (1 if rng.random() < ODD_WIDTH_FRACTION else 0)
    return width, height


def _draw_case(case: _Case, index: int, image_size: tuple[int, int], seed: int) -> np.ndarray:
    """Draw case ``index``: sets its size, padding and gaze; returns the (H, W) uint8 image."""
    rng = np.random.default_rng([seed, 1, index])
    case.size = _image_size(image_size, rng)
    width, height = case.size
    case.pad = screen_padding(width, height)
    anatomy = _choose_anatomy(case.label, rng)
    thorax = _Thorax(
        cx=width * (0.5 + rng.uniform(-0.04, 0.04)),
        cy=height * (0.46 + rng.uniform(-0.04, 0.04)),
        scale=SCALE_PER_WIDTH * width * rng.uniform(0.92, 1.05),
        angle=float(np.deg2rad(rng.uniform(-4.0, 4.0))),
    )
    pixels = _draw_radiograph(anatomy, thorax, case.size, rng)
    case.gaze = _simulate_gaze(anatomy, thorax, case.size, case.pad, rng)
    return pixels


def _csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False, lineterminator="\n").encode("ascii")


def _readme(params: dict, stats: dict) -> str:
    low, high = params["image_size"]
    per_class = "\n".join(
        f"  {name:<9} (label {k}): {stats['images'][k]} images of {stats['patients'][k]} patients"
        for k, name in enumerate(CLASSES)
    )
    heatmaps = (
        "egd-cxr/fixation_heatmaps/<dicom_id>/heatmap.png for every CXR"
        if params["with_heatmap_pngs"]
        else "no fixation_heatmaps/ (made with with_heatmap_pngs=False)"
    )
    return f"""SYNTHETIC DATA - NOT MIMIC-CXR, NOT EGD-CXR, not real radiographs or eye-tracking.

Generated by gaze.synthetic.cxr.make_synthetic_cxr_eye({', '.join(f'{k}={v!r}' for k, v in params.items())}),
generator version {GENERATOR_VERSION}. Same parameters -> identical bytes.

It copies the on-disk layout of MIMIC-CXR-JPG (mimic-cxr-jpg/files/pXX/pXXXXXXXX/sXXXXXXXX/
<dicom_id>.jpg) and of the EGD-CXR release (egd-cxr/master_sheet.csv, egd-cxr/fixations.csv;
{heatmaps}),
so every loader, training and evaluation path of the gaze project runs without the
credentialed data. As in the real sheet, `path` ends in .dcm; the JPG lies at the same path
with .jpg under mimic-cxr-jpg/.

Contents: {sum(stats['images'])} drawn chest radiographs (8-bit grey JPEG, portrait, height
{low}-{high} px, width 0.78-0.95 x height; heights even, about 20 % of widths odd) of
{sum(stats['patients'])} patients ({stats['two_image_patients']} with two images: another study, same class):
{per_class}
The classes differ only in local findings. Normal: none (cardiothoracic ratio 0.40-0.50).
CHF: cardiomegaly (ratio 0.58-0.65) and small bilateral pleural effusions blunting both
costophrenic angles. pneumonia: one bright textured consolidation patch (radius 10-18 % of
the lung width) in a random zone of one lung. CheXpert columns (*__chx) are random values
plausible for the class.

Simulated gaze: {stats['sessions']} sessions of up to {SESSION_SIZE} images in a shuffled order,
{stats['calibration']} calibration images (about one per {CALIBRATION_EVERY} CXRs; DICOM_ID = a real
dicom_id minus its last 5 characters, upper case, absent from master_sheet.csv; fixations near
the screen centre with a small per-session offset; X/Y_ORIGINAL = -1). Each CXR has 25-60
fixations: 40-60 % on the findings of abnormal images, the rest surveying lungs, heart and
mediastinum, about 5 % in the screen padding (X/Y_ORIGINAL = -1). Durations FPOGD are
0.06 s + lognormal (median 0.28 s); FPOGV is 1 except for about 2 %. The CXR fixations carry no
tracker offset. Display as in EGD-CXR: longer side resized to 1024 px, centred on a 1920x1080
screen, padding in the image_*_pad columns; FPOGX/FPOGY are screen fractions (5 decimals)
and X/Y_ORIGINAL follow the published mapping exactly (W, H rounded up to even).

Heatmaps: the published recipe - +1 per mapped fixation, Gaussian filter, plt.imsave
(min-max, viridis, RGBA) - with sigma = 150 * max(W, H) / 3056 px: the published 150 px at
MIMIC DICOM scale (3056 px), scaled to these smaller images.

Results on this set say nothing about chest radiographs. For real experiments point the
image root at your MIMIC-CXR-JPG folder (the one holding files/) and the master sheet,
fixations and heatmap paths at your egd-cxr/1.0.0 folder.
"""


def make_synthetic_cxr_eye(
    root: str | Path,
    images_per_class: int = 100,
    image_size: tuple[int, int] = (320, 400),
    seed: int = 0,
    with_heatmap_pngs: bool = True,
) -> Path:
    """Write the synthetic CXR-Eye-layout dataset described in the module docstring.

    Every file is written atomically; the completion marker is written last, so a set
    without the marker is unfinished.

    Args:
        root: output folder (created); files already there are overwritten.
        images_per_class: CXRs per class (Normal, CHF, pneumonia).
        image_size: (min, max) image height in pixels; width = height * U(0.78, 0.95).
        seed: seed of every random choice; same arguments -> identical bytes.
        with_heatmap_pngs: also write egd-cxr/fixation_heatmaps/<dicom_id>/heatmap.png.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    low, high = image_size
    if not 32 <= low <= high:
        raise ValueError(f"image_size must be (min, max) heights with 32 <= min <= max, got {image_size}")
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    params = dict(
        images_per_class=int(images_per_class),
        image_size=[int(low), int(high)],
        seed=int(seed),
        with_heatmap_pngs=bool(with_heatmap_pngs),
    )
    cases, patients = _make_cases(images_per_class, np.random.default_rng([seed, 0]))
    for index, case in enumerate(cases):
        pixels = _draw_case(case, index, (low, high), seed)
        patient_id = f"{int(patients.patient_id.iloc[case.patient])}"
        relpath = f"files/p{patient_id[:2]}/p{patient_id}/s{case.study_id}/{case.dicom_id}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
        atomic_write_bytes(root / MIMIC_DIR / relpath, buffer.getvalue())
        if with_heatmap_pngs:
            heatmap = render_fixation_heatmap(case.gaze.x, case.gaze.y, *case.size)
            png = heatmap_png_bytes(heatmap)
            atomic_write_bytes(root / EGD_DIR / "fixation_heatmaps" / case.dicom_id / "heatmap.png", png)
    master = _master_sheet(cases, patients, np.random.default_rng([seed, 2]))
    fixations, sessions, calibration = _fixation_table(cases, np.random.default_rng([seed, 3]))
    atomic_write_bytes(root / EGD_DIR / "master_sheet.csv", _csv_bytes(master))
    atomic_write_bytes(root / EGD_DIR / "fixations.csv", _csv_bytes(fixations))
    counts = master.groupby("patient_id").size()
    stats = dict(
        images=[int(master[name].sum()) for name in CLASSES],
        patients=[int(master.loc[master[name] == 1, "patient_id"].nunique()) for name in CLASSES],
        two_image_patients=int((counts == 2).sum()),
        sessions=sessions,
        calibration=calibration,
    )
    atomic_write_bytes(root / "README.txt", _readme(params, stats).encode("ascii"))
    marker = dict(
        params,
        generator_version=GENERATOR_VERSION,
        num_images=len(cases),
        num_patients=int(len(counts)),
        num_sessions=sessions,
        num_calibration_images=calibration,
    )
    atomic_write_bytes(root / MARKER_NAME, json.dumps(marker, indent=1, sort_keys=True).encode("ascii"))
    return root


def ensure_synthetic_cxr_eye(root: str | Path, verbose: bool = True, **kwargs) -> Path:
    """Generate the synthetic set at ``root`` unless a complete one with the same parameters is there.

    Refuses to touch a non-empty folder that is not a synthetic set (e.g. the real data). A
    synthetic set made with other parameters, or an unfinished one, is deleted and rebuilt.

    Args:
        root: folder of the synthetic set.
        verbose: print what was done and that the data are synthetic.
        **kwargs: arguments of :func:`make_synthetic_cxr_eye`.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    wanted = dict(
        dict(images_per_class=100, image_size=[320, 400], seed=0, with_heatmap_pngs=True),
        **{k: ([int(s) for s in v] if k == "image_size" else v) for k, v in kwargs.items()},
    )
    return ensure_set(
        root, wanted, GENERATOR_VERSION, "gaze.synthetic.cxr", lambda: make_synthetic_cxr_eye(root, **kwargs),
        f"Using the SYNTHETIC CXR-Eye-like dataset at {root} (drawn radiographs, simulated gaze; not MIMIC-CXR / "
        "EGD-CXR).",
        f"Generating a SYNTHETIC CXR-Eye-like dataset at {root} ({wanted}): drawn chest radiographs "
        "whose classes (Normal / CHF / pneumonia) differ in local findings, with simulated gaze. It is "
        "NOT MIMIC-CXR or EGD-CXR; for real results point the image root at your MIMIC-CXR-JPG folder "
        "(holding files/) and the master sheet, fixations and heatmaps at your egd-cxr/1.0.0 folder.",
        verbose)


def main(argv: list[str] | None = None) -> int:
    """``python -m gaze.synthetic.cxr ROOT [--images-per-class N ...]``: write the synthetic set."""
    parser = argparse.ArgumentParser(prog="gaze.synthetic.cxr", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, nargs=2, default=(320, 400), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-heatmap-pngs", action="store_true", help="skip fixation_heatmaps/")
    args = parser.parse_args(argv)
    ensure_synthetic_cxr_eye(
        args.root,
        images_per_class=args.images_per_class,
        image_size=tuple(args.image_size),
        seed=args.seed,
        with_heatmap_pngs=not args.no_heatmap_pngs,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
