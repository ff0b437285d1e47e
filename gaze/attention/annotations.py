"""Human attention masks and reasonability ratings: GRADIA's JSON files, PNG masks, gaze maps.

GRADIA's files (gradia_cal.md A3): ``attention_val.json``, ``attention_val_update.json``
(its entries replace those of the first), ``attention_test.json`` (JSON lists of
``{"img": path, "attention": 224x224 0/1}``), ``attention_val_remove.json`` (a list of
``{"img": path}`` to drop) and ``reasonablity_val.json`` (``{"<basename>": "<Reasonable|
Unreasonable> <Accurate|Inaccurate>"}``; the published misspelling is the file name users
have). Masks are keyed by the basename of ``img``. PNG masks (``<masks_dir>/<id>.png``, any
size; what the annotation app writes) and masks thresholded from eye-tracking maps
(:func:`mask_from_gaze`) are the other two sources. Every malformed entry is an error naming
the file and the entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, Mapping

import numpy as np
import torch
from PIL import Image

from gaze.safe_paths import check_plain_name, path_inside

#: reasonability label -> its code: Reasonable/Unreasonable x Accurate/Inaccurate (A3).
LABEL_CODES = {
    "Reasonable Accurate": "RA",
    "Unreasonable Accurate": "UA",
    "Reasonable Inaccurate": "RI",
    "Unreasonable Inaccurate": "UI",
}

#: code -> (CE weight, attention weight), GRADIA's phase-2 table (A6); unlabelled or no mask: (1, 0).
SAMPLE_WEIGHTS = {"UI": (1.0, 1.0), "UA": (0.4, 1.6), "RI": (0.8, 0.2), "RA": (1.0, 0.0)}
UNRATED_WEIGHTS = (1.0, 0.0)

#: ``attention_samples`` values: which masked samples get the attention term.
ATTENTION_SAMPLES = {
    "rated": "only samples rated UI, UA or RI (published: an unlabelled masked sample gets no attention loss, G3)",
    "all": "every sample with a non-empty mask (what the published README says the no-flag mode does); "
           "unrated and RA ones with weight 1",
}

#: Default of :func:`mask_from_gaze`: pixels above this fraction of the map's range, HAFC's
#: mask minmax(map) > 0.3 (cxr §2.1 step 6), the project's one gaze-mask rule.
GAZE_MASK_THRESHOLD = 0.3


class AnnotationFormatError(ValueError):
    """A malformed mask or rating file; the message names the file and the entry."""


def image_key(path: str) -> str:
    """The key of an image: the basename of a path written on any system."""
    return PureWindowsPath(PurePosixPath(path).name).name


def _read_json(path: str | os.PathLike) -> object:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationFormatError(f"{path}: not valid JSON ({error})") from None


def _entries(path: str | os.PathLike) -> list:
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise AnnotationFormatError(f"{path}: expected a JSON list of {{'img', ...}} entries, "
                                    f"got {type(entries).__name__}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("img"), str):
            raise AnnotationFormatError(f"{path}: entry {index} has no 'img' path: {str(entry)[:80]}")
    return entries


def read_attention_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{basename: (H, W) bool}`` of a GRADIA attention file (a list of ``{"img", "attention"}``).

    Raises:
        AnnotationFormatError: not a list, an entry without ``img`` or ``attention``, a mask
            that is not a 2-D array of 0/1 (or booleans), or an image listed twice.
    """
    masks = {}
    for index, entry in enumerate(_entries(path)):
        where = f"{path}: entry {index} ({entry['img']})"
        if "attention" not in entry:
            raise AnnotationFormatError(f"{where}: no 'attention' mask")
        try:
            mask = np.asarray(entry["attention"], dtype=np.float64)
        except (TypeError, ValueError):
            raise AnnotationFormatError(f"{where}: 'attention' is not a rectangular array of numbers") from None
        if mask.ndim != 2 or mask.size == 0:
            raise AnnotationFormatError(f"{where}: 'attention' must be a 2-D mask, got shape {mask.shape}")
        if not np.isin(mask, (0.0, 1.0)).all():
            raise AnnotationFormatError(f"{where}: 'attention' must hold only 0/1 (or booleans)")
        key = image_key(entry["img"])
        if key in masks:
            raise AnnotationFormatError(f"{where}: {key} is listed twice")
        masks[key] = mask.astype(bool)
    return masks


def read_removals(path: str | os.PathLike) -> list[str]:
    """Basenames listed in an ``attention_val_remove.json`` (a list of ``{"img"}``)."""
    return [image_key(entry["img"]) for entry in _entries(path)]


def read_reasonability(path: str | os.PathLike) -> dict[str, str]:
    """``{basename: 'RA' | 'UA' | 'RI' | 'UI'}`` of a ``reasonablity_<split>.json`` object.

    Raises:
        AnnotationFormatError: not a JSON object, or a label other than the four of A3.
    """
    labels = _read_json(path)
    if not isinstance(labels, dict):
        raise AnnotationFormatError(f"{path}: expected a JSON object {{image: label}}, got {type(labels).__name__}")
    codes = {}
    for image, label in labels.items():
        if label not in LABEL_CODES:
            raise AnnotationFormatError(f"{path}: entry {image!r} has label {label!r}; expected one of "
                                        f"{', '.join(map(repr, LABEL_CODES))}")
        codes[image_key(image)] = LABEL_CODES[label]
    return codes


def read_assessments(path: str | os.PathLike) -> dict[str, bool]:
    """``{basename: judged unreasonable}`` of people's verdicts on a model's attention (A3, A7):
    GRADIA's assessment file (a list of ``{"img", "label": "unreasonable" | other}``) or a
    ``reasonablity_<split>.json`` object (the verdict is the first word of its label).

    Raises:
        AnnotationFormatError: neither form, or an entry without ``img`` / ``label``, or an
            unknown reasonability label (naming the file and the entry).
    """
    entries = _read_json(path)
    if isinstance(entries, dict):
        return {key: code.startswith("U") for key, code in read_reasonability(path).items()}
    if not isinstance(entries, list):
        raise AnnotationFormatError(f"{path}: expected a JSON list of {{'img', 'label'}} entries or a "
                                    f"reasonablity object, got {type(entries).__name__}")
    verdicts = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("img"), str) or "label" not in entry:
            raise AnnotationFormatError(f"{path}: entry {index} needs 'img' and 'label': {str(entry)[:80]}")
        verdicts[image_key(entry["img"])] = entry["label"] == "unreasonable"
    return verdicts


def gradia_masks(
    val: str | os.PathLike | None = None,
    update: str | os.PathLike | None = None,
    remove: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """GRADIA's ``path_to_attn`` (A3): the val masks, replaced by the update file's, minus the
    remove file's, plus the test masks. Every file is optional.

    Raises:
        AnnotationFormatError: the remove file names an image that has no val mask (the
            published ``pop`` raised a bare KeyError), or a test image also has a val mask.
    """
    masks = read_attention_masks(val) if val else {}
    if update:
        masks.update(read_attention_masks(update))
    for key in read_removals(remove) if remove else ():
        if key not in masks:
            raise AnnotationFormatError(f"{remove}: {key} is removed but has no mask in {val}")
        del masks[key]
    if test:
        test_masks = read_attention_masks(test)
        both = sorted(set(test_masks) & set(masks))
        if both:
            raise AnnotationFormatError(f"{test}: {len(both)} image(s) also have a val mask, e.g. {both[0]}")
        masks.update(test_masks)
    return masks


def read_mask_pngs(masks_dir: str | os.PathLike, ids: Iterable[str]) -> dict[str, np.ndarray]:
    """``{id: (H, W) bool}`` of the ``<masks_dir>/<id>.png`` files that exist (pixels > 0 are in).

    Raises:
        gaze.safe_paths.UnsafeNameError: an id that is not a plain file name.
        AnnotationFormatError: a PNG that cannot be read.
    """
    masks = {}
    for sample_id in ids:
        path = path_inside(masks_dir, check_plain_name(f"{sample_id}.png", f"mask of image {sample_id!r}"))
        if not path.is_file():
            continue
        try:
            with Image.open(path) as picture:
                masks[sample_id] = np.asarray(picture.convert("L")) > 0
        except OSError as error:
            raise AnnotationFormatError(f"{path}: cannot be read as a mask image ({error})") from None
    return masks


def check_known_images(masks: Mapping[str, object], known: Iterable[str], source: str) -> None:
    """Raise AnnotationFormatError when a mask or rating names an image the dataset lacks."""
    unknown = sorted(set(masks) - set(known))
    if unknown:
        raise AnnotationFormatError(f"{source}: {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} match no "
                                    f"image of the dataset, e.g. {unknown[0]!r}")


def mask_from_gaze(gaze: torch.Tensor, threshold: float = GAZE_MASK_THRESHOLD) -> torch.Tensor:
    """Binary attention masks from eye-tracking maps: ``minmax(map) > threshold`` per map.

    Args:
        gaze: (..., H, W) attention maps (any scale).
        threshold: fraction of each map's range (default :data:`GAZE_MASK_THRESHOLD`).

    Returns:
        bool (..., H, W); all False for a constant map.
    """
    low = gaze.amin(dim=(-2, -1), keepdim=True)
    span = gaze.amax(dim=(-2, -1), keepdim=True) - low
    return (gaze - low > threshold * span) & (span > 0)


def sample_weights(code: str | None, has_mask: bool, attention_samples: str = "rated") -> tuple[float, float]:
    """(CE weight, attention weight) of one sample (A6 table; see :data:`ATTENTION_SAMPLES`).

    Args:
        code: its reasonability code ('RA', 'UA', 'RI', 'UI') or None when unrated.
        has_mask: whether it has a non-empty human mask.
        attention_samples: 'rated' (published) or 'all'.
    """
    if attention_samples not in ATTENTION_SAMPLES:
        raise ValueError(f"attention_samples={attention_samples!r}: expected one of {', '.join(ATTENTION_SAMPLES)}")
    if not has_mask:
        return UNRATED_WEIGHTS
    weights = UNRATED_WEIGHTS if code is None else SAMPLE_WEIGHTS[code]
    if attention_samples == "all" and weights[1] == 0.0:
        return weights[0], 1.0
    return weights
