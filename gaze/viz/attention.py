"""GRADIA's evaluation files and overlays (gradia_cal.md A7-A8), from an evaluation with attention scores.

``img_fns.json`` (the evaluated images), ``misclassified.json``, ``IOU.json`` (image ->
IoU of the thresholded Grad-CAM with the human mask, images with a mask only) and, when
human assessments of the model's attention exist, the reasonability matrix and
``reasonablity_<split>.json`` in the published schema. Overlays: the Grad-CAM through the
BONE colour map multiplied into the photo and divided by its maximum (A8), written into a
folder that is created (the published ``cv2.imwrite`` into missing folders failed silently).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps

from gaze.atomic import atomic_path
from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from gaze.models.cam import grad_cam
from gaze.viz.panels import first_batch
from gaze.viz.plots import save_image

#: Published reasonability matrix cells (A7): row = inaccurate, column = unreasonable.
MATRIX_CELLS = {"RA": (0, 0), "UA": (0, 1), "RI": (1, 0), "UI": (1, 1)}
LABELS = {"RA": "Reasonable Accurate", "UA": "Unreasonable Accurate", "RI": "Reasonable Inaccurate",
          "UI": "Unreasonable Inaccurate"}


def _write_json(path: Path, value: object) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2) + "\n")
    return path


def reasonability_codes(results: Mapping, unreasonable: Mapping[str, bool]) -> dict[str, str]:
    """{image: 'RA' | 'UA' | 'RI' | 'UI'} of the assessed images: the human verdict on the
    attention combined with whether the model got the image right (A7)."""
    wrong = dict(zip(results["ids"], results["probabilities"].argmax(axis=1) != results["labels"]))
    codes = {}
    for image, bad in unreasonable.items():
        if image in wrong:
            codes[image] = ("U" if bad else "R") + ("I" if wrong[image] else "A")
    return codes


def write_attention_files(results: Mapping, out_dir: str | os.PathLike, split: str = "test",
                          unreasonable: Mapping[str, bool] | None = None) -> dict:
    """img_fns.json, misclassified.json, IOU.json (and the reasonability files) of one evaluation.

    Args:
        results: :func:`gaze.engine.evaluate.evaluate` output with ``sample_metrics``
            holding ``attention_iou``.
        out_dir: folder (created).
        split: name in ``reasonablity_<split>.json``.
        unreasonable: {image: whether a person judged the attention unreasonable}, when
            assessments exist.

    Returns:
        {'iou': mean IoU, 'images_with_mask', 'misclassified', 'matrix' (2x2 list or None)}.
    """
    out_dir = Path(out_dir)
    ids = list(results["ids"])
    wrong = results["probabilities"].argmax(axis=1) != results["labels"]
    iou = np.asarray(results["sample_metrics"]["attention_iou"], dtype=float)
    per_image = {image: float(value) for image, value in zip(ids, iou) if not np.isnan(value)}
    _write_json(out_dir / "img_fns.json", ids)
    _write_json(out_dir / "misclassified.json", [image for image, bad in zip(ids, wrong) if bad])
    _write_json(out_dir / "IOU.json", per_image)
    summary = {"iou": float(np.mean(list(per_image.values()))) if per_image else None,
               "images_with_mask": len(per_image), "misclassified": int(wrong.sum()), "matrix": None}
    if unreasonable:
        codes = reasonability_codes(results, unreasonable)
        matrix = np.zeros((2, 2), dtype=int)
        for code in codes.values():
            matrix[MATRIX_CELLS[code]] += 1
        _write_json(out_dir / f"reasonablity_{split}.json", {image: LABELS[code] for image, code in codes.items()})
        summary["matrix"] = matrix.tolist()
    return summary


def write_attention_evaluation(model, results: Mapping, dataset, out_dir: str | os.PathLike, cam_images: int,
                               split: str = "test", unreasonable: Mapping[str, bool] | None = None) -> str:
    """GRADIA's evaluation outputs (:func:`write_attention_files`) and the BONE overlays of the
    first ``cam_images`` items of ``dataset`` in ``<out_dir>/attention``; returns the summary
    for a log line (IoU, and the reasonability matrix when there are assessments)."""
    summary = write_attention_files(results, out_dir, split, unreasonable)
    if cam_images > 0:
        write_attention_overlays(model, first_batch(dataset, cam_images), Path(out_dir) / "attention",
                                 dataset.transform.mean, dataset.transform.std)
    line = f"attention IoU {summary['iou']:.3f} on {summary['images_with_mask']} masked images" if summary["iou"] is not None \
        else "no image has a human mask"
    if summary["matrix"] is not None:
        (ra, ua), (ri, ui) = summary["matrix"]
        line += f"; reasonability of the assessed: RA {ra}, UA {ua}, RI {ri}, UI {ui}"
    return line


def published_heat(attention: np.ndarray) -> np.ndarray:
    """CAL's colouring (B9): R = a, G = a if a < 0.5 else 1 - a, B = 1 - a, for a in [0, 1] -> (H, W, 3)."""
    green = np.where(attention < 0.5, attention, 1.0 - attention)
    return np.stack([attention, green, 1.0 - attention], axis=-1)


def _pixels(images, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, H, W, 3) floats in [0, 1] of normalised images."""
    return denormalize(images, mean, std).permute(0, 2, 3, 1).cpu().numpy()


def write_attention_visuals(model, batch: Mapping, out_dir: str | os.PathLike, mean: Sequence[float] = IMAGENET_MEAN,
                            std: Sequence[float] = IMAGENET_STD) -> list[Path]:
    """The model's own attention as CAL's infer.py draws it: ``%03d_raw.jpg``, ``%03d_heat_atten.jpg``
    (the heat blended 50/50 with the photo) and, where the model augments, ``%03d_crop.jpg`` and
    ``%03d_drop.jpg``; nothing for a model without ``attention_visuals``."""
    device = next(model.parameters()).device
    images = batch["image"].to(device)
    was_training = model.training
    model.eval()
    visuals = model.attention_visuals(images)
    model.train(was_training)
    if not visuals:
        return []
    pictures = _pixels(images, mean, std)
    written = []
    for k, picture in enumerate(pictures):
        written.append(save_image(Path(out_dir) / f"{k:03d}_raw.jpg", (picture * 255).round().astype(np.uint8)))
        if "attention" in visuals:
            heat = published_heat(visuals["attention"][k, 0].cpu().numpy())
            written.append(save_image(Path(out_dir) / f"{k:03d}_heat_atten.jpg",
                                      ((0.5 * picture + 0.5 * heat) * 255).round().astype(np.uint8)))
        for name in ("crop", "drop"):
            if name in visuals:
                view = _pixels(visuals[name][k:k + 1], mean, std)[0]
                written.append(save_image(Path(out_dir) / f"{k:03d}_{name}.jpg", (view * 255).round().astype(np.uint8)))
    return written


def bone_overlay(picture: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """A8: BONE(cam) in [0, 1] times the photo, divided by its max -> uint8 (H, W, 3)."""
    coloured = colormaps["bone"](cam)[..., :3]  # (H,W,3) in [0, 1]
    blended = coloured * (picture.astype(np.float64) / 255.0)
    return (255 * blended / max(float(blended.max()), 1e-12)).round().astype(np.uint8)


def write_attention_overlays(model, batch: Mapping, out_dir: str | os.PathLike,
                             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> list[Path]:
    """One ``<id>.png`` per sample: the predicted class's Grad-CAM in the published style (A8)."""
    device = next(model.parameters()).device
    images = batch["image"].to(device)
    gaze = batch.get("gaze")
    gaze = gaze.to(device) if gaze is not None and model.inference_needs_gaze else None
    cams = grad_cam(model, images, gaze).cams[:, 0].cpu().numpy()
    pictures = (denormalize(images, mean, std).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [save_image(Path(out_dir) / f"{sample_id}.png", bone_overlay(picture, cam))
            for sample_id, picture, cam in zip(batch["id"], pictures, cams)]
