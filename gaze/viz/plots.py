"""Figures: training curves, confusion matrices, heatmap overlays (matplotlib Agg).

Every file is written atomically (temporary file + rename, gaze/atomic.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # headless: no display on training machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from gaze.atomic import atomic_path  # noqa: E402

#: Above this many classes the confusion matrix has no per-cell numbers (unreadable).
MAX_CLASSES_WITH_CELL_TEXT = 30
#: Above this many classes the axes carry no class names, only the colour image.
MAX_CLASSES_WITH_TICK_LABELS = 60
#: Transparency of the heatmap over the image: the published jet overlay (cub_pim.md §1.9, vis.py).
OVERLAY_ALPHA = 0.5


def save_figure(figure: plt.Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save and close a figure atomically; the format comes from the file suffix."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path


def save_image(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an (H, W) or (H, W, 3) uint8 array atomically (format from the suffix)."""
    path = Path(path)
    image = Image.fromarray(np.ascontiguousarray(array))
    file_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path) as temporary:
        image.save(temporary, format=file_format)
    return path


def plot_training_curves(metrics: str | os.PathLike | pd.DataFrame, path: str | os.PathLike) -> Path:
    """Loss, accuracy and learning rate per epoch from ``metrics.csv`` (or its DataFrame).

    Panels: every ``*loss*`` column; every ``*top1``/``*top5`` column; ``lr``.
    """
    table = metrics if isinstance(metrics, pd.DataFrame) else pd.read_csv(metrics)
    panels = [
        ("loss", [c for c in table.columns if "loss" in c]),
        ("accuracy (%)", [c for c in table.columns if c.endswith(("top1", "top5"))]),
        ("learning rate", [c for c in table.columns if c == "lr"]),
    ]
    panels = [(title, columns) for title, columns in panels if columns]
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.6), squeeze=False)
    for axis, (title, columns) in zip(axes[0], panels):
        for column in columns:
            axis.plot(table["epoch"], table[column], marker="o", markersize=3, label=column)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        values = table[columns].to_numpy(dtype=float)
        positive = bool((values > 0).all())
        spread = positive and values.max() / values.min() > 1e3  # e.g. GG-CAM's weighted sum beside its parts
        if positive and (title == "learning rate" or spread):
            axis.set_yscale("log")
    return save_figure(figure, path)


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows of classes absent from the labels stay 0)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: list[str] | None,
    path: str | os.PathLike,
    title: str = "confusion matrix (row-normalised)",
) -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted).

    Readable for 200 classes: per-cell percentages only up to 30 classes, class names only
    up to 60, and the figure grows with the class count up to 12 inches.
    """
    fractions = normalise_rows(confusion)
    count = fractions.shape[0]
    side = min(max(4.0, 0.35 * count), 12.0)
    figure, axis = plt.subplots(figsize=(side + 1.5, side))
    shown = axis.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    if count <= MAX_CLASSES_WITH_TICK_LABELS:
        names = class_names if class_names is not None else [str(i) for i in range(count)]
        axis.set_xticks(range(count), names, rotation=90, fontsize=7)
        axis.set_yticks(range(count), names, fontsize=7)
    if count <= MAX_CLASSES_WITH_CELL_TEXT:
        _write_cell_percentages(axis, fractions)
    return save_figure(figure, path)


def _write_cell_percentages(axis: plt.Axes, fractions: np.ndarray) -> None:
    """Percentage in every non-zero cell, white on dark cells."""
    for row, column in zip(*np.nonzero(fractions)):
        value = fractions[row, column]
        axis.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                  color="white" if value > 0.5 else "black")


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA, cmap: str = "jet"
) -> np.ndarray:
    """Blend a colour-mapped heatmap over an image: ``(1 - alpha) * image + alpha * cmap(heatmap)``.

    Args:
        image: (H, W, 3) uint8 RGB (an (H, W) grey image is repeated to 3 channels).
        heatmap: (h, w) float in [0, 1]; resized bilinearly to (H, W) when sizes differ.
        alpha: weight of the heatmap colours (0.5: the published jet overlay).
        cmap: matplotlib colormap name.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    heatmap = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heatmap.shape != image.shape[:2]:
        resized = Image.fromarray(heatmap).resize(image.shape[1::-1], Image.BILINEAR)
        heatmap = np.clip(np.asarray(resized), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](heatmap)[..., :3] * 255.0  # (H, W, 3)
    blended = (1.0 - alpha) * image[..., :3].astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def plot_attention_panels(
    image: np.ndarray, heatmaps: dict[str, np.ndarray], title: str, path: str | os.PathLike
) -> Path:
    """One row: the image, then each named heatmap as a jet overlay on it (e.g. human gaze, Grad-CAM).

    Args:
        image: (H, W, 3) uint8 RGB.
        heatmaps: panel title -> (h, w) float map in [0, 1] (resized to the image).
        title: figure title (e.g. id, true and predicted class).
        path: PNG path, written atomically.
    """
    figure, axes = plt.subplots(1, 1 + len(heatmaps), figsize=(3 * (1 + len(heatmaps)), 3.3))
    panels = [("image", image)] + [(name, overlay_heatmap(image, m)) for name, m in heatmaps.items()]
    for axis, (name, picture) in zip(axes, panels):
        axis.imshow(picture)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)
