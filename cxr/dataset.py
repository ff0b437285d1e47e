"""CXR-Eye: MIMIC-CXR-JPG radiographs + EGD-CXR labels and radiologist gaze (cxr.md §1, §2.1).

:func:`load_catalogue` joins the three sources once and reports what matched:

* ``<egd_dir>/master_sheet.csv``: dicom_id, patient_id, the one-hot Normal/CHF/pneumonia
  label, the screen padding of every image (``gaze.attention.egd.read_master_sheet``);
* ``<mimic_root>/files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` (the sheet's ``path`` with
  ``.dcm`` -> ``.jpg``; a ``mimic_root`` that is itself the ``files`` folder also works);
* gaze, either ``<egd_dir>/fixations.csv`` mapped from the screen into image pixels and
  rendered with the dataset's own recipe (+1 per fixation, Gaussian sd 150 px at DICOM
  resolution; calibration rows dropped and counted), or the ``fixation_heatmaps/<dicom_id>/
  heatmap.png`` files (viridis decoded; ``'luma'`` reproduces the published grey reading).

:class:`CXREyeDataset` serves items ``{'image', 'label', 'gaze', 'id'}`` of a subset of the
catalogue (a split of a fold). Maps are made once per image at a working resolution (longer
side :data:`GAZE_RENDER_SIDE`) and cached as 8-bit in memory (and optionally on disk), so
the five folds of a cross-validation share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from gaze.attention.egd import (
    CLASS_NAMES,
    EGD_SIGMA,
    egd_heatmap,
    read_egd_fixations,
    read_heatmap_png,
    read_master_sheet,
)
from gaze.data.cache import AttentionCache, cache_folder_name
from gaze.data.human_attention import HumanAttention
from gaze.data.images import load_rgb_image
from gaze.data.transforms import JointTransform

#: Longer side of the cached gaze maps: the maps are smooth (sd 150 px at ~3000 px), so
#: 512 px keeps every detail a 224-448 px model can use at 1/36 of the memory.
GAZE_RENDER_SIDE = 512
#: The MIMIC-CXR DICOM height the published sd of 150 px refers to (2544x3056 films).
DICOM_REFERENCE_SIDE = 3056
GAZE_SOURCES = ("fixations", "heatmaps")


def gaze_sigma_for(size: tuple[int, int], sigma: float | None) -> float:
    """Gaussian sd in pixels of an image of ``size`` (W, H).

    ``sigma`` None scales the published 150 px (cxr.md §1.4, at ~3056 px DICOM resolution)
    to the image: 150 * longer side / 3056, i.e. about 150 for the real films and the same
    relative blur for the smaller synthetic demo images.
    """
    return float(sigma) if sigma is not None else EGD_SIGMA * max(size) / DICOM_REFERENCE_SIDE


def render_size(size: tuple[int, int], side: int = GAZE_RENDER_SIDE) -> tuple[int, int]:
    """(H, W) of a cached map for an image of ``size`` (W, H): longer side at most ``side``."""
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def image_path(mimic_root: Path, sheet_path: str) -> Path:
    """The JPG of a master-sheet ``path`` (``files/pXX/.../<dicom_id>.dcm``) under ``mimic_root``."""
    relative = Path(str(sheet_path).strip()).with_suffix(".jpg")
    if mimic_root.name == "files" and relative.parts[:1] == ("files",):
        return mimic_root.parent / relative
    return mimic_root / relative


@dataclass
class Catalogue:
    """Every usable image: ``frame`` (dicom_id, patient_id, label, image_path, width, height),
    how its gaze map is made, and the join ``report`` (counts, examples of missing ids)."""

    frame: pd.DataFrame
    gaze_source: str
    cache: AttentionCache
    report: str
    counts: dict[str, int] = field(default_factory=dict)
    records: dict | None = None  # dicom_id -> FixationRecord (gaze_source 'fixations'), for GG-CAM's recipe


def load_catalogue(
    mimic_root: str | os.PathLike,
    egd_dir: str | os.PathLike,
    gaze_source: str = "fixations",
    heatmaps_dir: str | os.PathLike | None = None,
    heatmap_png_mode: str = "viridis",
    sigma: float | None = None,
    duration_weighted: bool = False,
    calibrate: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Catalogue:
    """Join master sheet, images and gaze; keep the images that have all three.

    Args:
        mimic_root: MIMIC-CXR-JPG folder holding ``files/`` (or the ``files`` folder).
        egd_dir: EGD-CXR folder with ``master_sheet.csv`` (and ``fixations.csv``).
        gaze_source: 'fixations' (render from fixations.csv) or 'heatmaps' (PNG files).
        heatmaps_dir: folder of ``<dicom_id>/heatmap.png``; None: ``<egd_dir>/fixation_heatmaps``.
        heatmap_png_mode: 'viridis' (decode the colour map) or 'luma' (published grey reading).
        sigma: Gaussian sd in image pixels for 'fixations'; None: see :func:`gaze_sigma_for`.
        duration_weighted: weight fixations by duration (the dataset's recipe counts them).
        calibrate: apply the calibration-image offset of the published mapping (cxr.md §1.3).
        cache_dir: folder for the rendered/decoded maps as PNG, shared across runs (None: memory only).

    Raises:
        FileNotFoundError: a missing master sheet / fixations file / folder, or no image matches.
    """
    mimic_root, egd_dir = Path(mimic_root), Path(egd_dir)
    if gaze_source not in GAZE_SOURCES:
        raise ValueError(f"gaze_source={gaze_source!r}: expected one of {', '.join(GAZE_SOURCES)}")
    sheet_path = egd_dir / "master_sheet.csv"
    master = read_master_sheet(sheet_path)
    frame = master[["dicom_id", "patient_id", "label"]].copy()
    frame["image_path"] = [image_path(mimic_root, p) for p in master["path"]]
    has_image = np.array([p.is_file() for p in frame["image_path"]], dtype=bool)
    lines = [f"{sheet_path}: {len(frame)} images of {frame['patient_id'].nunique()} patients"]
    counts = {"master_rows": len(frame), "images_missing": int((~has_image).sum())}
    if not has_image.any():
        raise FileNotFoundError(
            f"none of the {len(frame)} images of {sheet_path} is under mimic_root={str(mimic_root)!r} "
            f"(first expected: {frame['image_path'].iloc[0]}); point mimic_root at the MIMIC-CXR-JPG folder "
            "that holds files/pXX/...")
    if (~has_image).any():
        lines.append(f"  {int((~has_image).sum())} images missing under {mimic_root} "
                     f"(e.g. {', '.join(map(str, frame['image_path'][~has_image].head(3)))}): left out")
    frame = frame[has_image].reset_index(drop=True)
    sizes = [_image_size(p) for p in frame["image_path"]]
    frame["width"], frame["height"] = [s[0] for s in sizes], [s[1] for s in sizes]
    if gaze_source == "fixations":
        produce, has_gaze, params, source = _fixation_maps(
            egd_dir, master, frame, sigma, duration_weighted, calibrate, lines)
    else:
        produce, has_gaze, params, source = _png_maps(egd_dir, heatmaps_dir, frame, heatmap_png_mode, lines)
    counts["images_without_gaze"] = int((~has_gaze).sum())
    if (~has_gaze).any():
        lines.append(f"  {int((~has_gaze).sum())} images have no gaze in {source} "
                     f"(e.g. {', '.join(frame['dicom_id'][~has_gaze].head(3))}): left out")
    frame = frame[has_gaze].reset_index(drop=True)
    if frame.empty:
        raise FileNotFoundError(f"no image of {sheet_path} has gaze in {source}; check egd_dir / heatmaps_dir")
    counts["images"] = len(frame)
    per_class = frame["label"].value_counts().reindex(range(len(CLASS_NAMES)), fill_value=0)
    lines.append(f"  used: {len(frame)} images of {frame['patient_id'].nunique()} patients ("
                 + ", ".join(f"{name} {n}" for name, n in zip(CLASS_NAMES, per_class)) + ")")
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / cache_folder_name("cxr-gaze", [source], side=GAZE_RENDER_SIDE, **params)
    cache = AttentionCache(produce, capacity=len(frame) + 1, cache_dir=folder)
    records = produce.records if gaze_source == "fixations" else None
    return Catalogue(frame, gaze_source, cache, "\n".join(lines), counts, records)


def _image_size(path: Path) -> tuple[int, int]:
    """(W, H) from the file header (no decoding)."""
    with Image.open(path) as image:
        return image.size


class _FixationMaps:
    """Map producer for fixations.csv records (a picklable callable, for spawned DataLoader workers)."""

    def __init__(self, records: dict, sigma: float | None, duration_weighted: bool) -> None:
        self.records, self.sigma, self.duration_weighted = records, sigma, duration_weighted

    def __call__(self, dicom_id: str) -> torch.Tensor:
        record = self.records[dicom_id]
        size = (record.width, record.height)
        return egd_heatmap(record, sigma=gaze_sigma_for(size, self.sigma), size=render_size(size),
                           duration_weighted=self.duration_weighted)


class _PngMaps:
    """Map producer for ``<folder>/<dicom_id>/heatmap.png`` files (picklable)."""

    def __init__(self, folder: Path, sizes: dict, mode: str) -> None:
        self.folder, self.sizes, self.mode = folder, sizes, mode

    def __call__(self, dicom_id: str) -> torch.Tensor:
        heatmap = torch.from_numpy(read_heatmap_png(self.folder / dicom_id / "heatmap.png", mode=self.mode))
        return F.interpolate(heatmap[None, None], size=render_size(self.sizes[dicom_id]), mode="bilinear",
                             antialias=True, align_corners=False)[0, 0].clamp(0, 1)


def _fixation_maps(egd_dir, master, frame, sigma, duration_weighted, calibrate, lines):
    """The map producer for fixations.csv, which images have fixations, cache params, source."""
    source = egd_dir / "fixations.csv"
    sizes = {d: (int(w), int(h)) for d, w, h in zip(frame["dicom_id"], frame["width"], frame["height"])}
    gaze = read_egd_fixations(source, master, sizes, calibrate=calibrate)
    lines.append("  " + gaze.summary().replace("\n", "\n  "))
    produce = _FixationMaps(gaze.records, sigma, duration_weighted)
    has_gaze = frame["dicom_id"].isin(gaze.records).to_numpy()
    return produce, has_gaze, {"sigma": sigma, "weighted": duration_weighted, "calibrate": calibrate}, source


def _png_maps(egd_dir, heatmaps_dir, frame, mode, lines):
    """The map producer for fixation_heatmaps/<dicom_id>/heatmap.png files."""
    folder = Path(heatmaps_dir) if heatmaps_dir is not None else egd_dir / "fixation_heatmaps"
    if not folder.is_dir():
        raise FileNotFoundError(f"heatmaps_dir {folder} does not exist (expected <dicom_id>/heatmap.png files)")
    sizes = {d: (int(w), int(h)) for d, w, h in zip(frame["dicom_id"], frame["width"], frame["height"])}
    has_gaze = np.array([(folder / d / "heatmap.png").is_file() for d in frame["dicom_id"]], dtype=bool)
    lines.append(f"  {folder}: {int(has_gaze.sum())} heatmap.png files for the {len(frame)} images "
                 f"(read as {mode})")
    files = [folder / d / "heatmap.png" for d in frame["dicom_id"][has_gaze].head(1)]
    return _PngMaps(folder, sizes, mode), has_gaze, {"mode": mode}, files[0] if files else folder


class CXREyeDataset(Dataset):
    """Items ``{'image' (3,H,W), 'label', 'gaze' (1,H,W) in [0,1] when with_gaze, 'id' (dicom_id)}``.

    Args:
        catalogue: from :func:`load_catalogue`.
        rows: positions in ``catalogue.frame`` of this subset.
        transform: a :class:`gaze.data.transforms.JointTransform` (e.g. ``build_resize_transforms``)
            given the cached map, or a :class:`gaze.data.transforms.GGCAMTransform` (GG-CAM's
            published recipe) given the image's fixations.
        with_gaze: return the gaze map (GAT while training, KFN and GG-CAM always).
        draft_size: (W, H) the JPEG decoder may scale down to (see ``load_rgb_image``).
        human: drawn masks and ratings keyed by dicom_id (GRADIA): items also carry ``mask``,
            ``weight_ce`` and ``weight_att`` (:class:`gaze.data.human_attention.HumanAttention`;
            an image without a drawn mask gets its gaze map thresholded).
    """

    class_names = list(CLASS_NAMES)

    def __init__(
        self,
        catalogue: Catalogue,
        rows: Sequence[int],
        transform: JointTransform,
        with_gaze: bool,
        draft_size: tuple[int, int] | None = None,
        human: HumanAttention | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.rows = np.asarray(rows, dtype=np.int64)
        self.frame = catalogue.frame.iloc[self.rows].reset_index(drop=True)
        self.transform = transform
        self.with_gaze = with_gaze
        self.draft_size = draft_size
        self.human = human
        if human is not None and transform.reads_fixations and human.masks:
            raise ValueError(f"{transform!r} renders the gaze from fixations and cannot move drawn masks with the image: "
                             "use preprocessing='resize' with masks_dir")
        if with_gaze and transform.reads_fixations and catalogue.records is None:
            raise ValueError(f"{transform!r} renders the gaze from the fixations: use gaze_source='fixations' "
                             f"(this catalogue reads {catalogue.gaze_source})")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> list[str]:
        """The dicom_ids of the images, in order (the items' ``id``)."""
        return list(self.frame["dicom_id"])

    def with_attention(self) -> CXREyeDataset:
        """The same images and transform, the gaze map included (the Grad-CAM panels show it)."""
        return CXREyeDataset(self.catalogue, self.rows, self.transform, True, self.draft_size, self.human)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.frame.iloc[index]
        image = load_rgb_image(row["image_path"], self.draft_size)
        attention = None
        if self.with_gaze and self.transform.reads_fixations:
            attention = self.catalogue.records[row["dicom_id"]]
        elif self.with_gaze:
            attention = self.catalogue.cache.get(row["dicom_id"])
        item = {"label": torch.tensor(int(row["label"]), dtype=torch.long), "id": row["dicom_id"]}
        if self.human is not None:
            return {**item, **self.human.transform(self.transform, image, attention, row["dicom_id"])}
        item["image"], attention = self.transform(image, attention)
        if attention is not None:
            item["gaze"] = attention
        return item

    def __repr__(self) -> str:
        return f"{type(self).__name__}(images={len(self)}, gaze={self.with_gaze}, source={self.catalogue.gaze_source})"
