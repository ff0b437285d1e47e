"""Human attention of a dataset's items for GRADIA (gradia_cal.md A3, A6): drawn masks, ratings, weights.

A tree reads the annotation files (``gaze.attention.annotations``) once and hands the
dataset a :class:`HumanAttention`; each item then carries

* ``mask`` (1, S, S) in [0, 1]: the image's drawn mask (GRADIA's JSON files, PNGs from the
  annotation app) through the same crop and flip as the image (G2 fixed); without one, the
  item's eye-tracking map thresholded (:func:`gaze.attention.annotations.mask_from_gaze`,
  the rule GRADIA's model applies to a batch without masks); without either, zeros;
* ``weight_ce``, ``weight_att``: the phase-2 weights of its rating
  (:func:`gaze.attention.annotations.sample_weights`).

It also builds the published phase-2 training set ``p2_train`` (A2): the training images
plus the RATED validation images, written as ``p2_train.csv`` in the run folder (never into
the data); phase 2 then selects on the validation images left (the published code selected
on test, G4).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from gaze.atomic import atomic_path
from gaze.attention.annotations import (
    ATTENTION_SAMPLES,
    GAZE_MASK_THRESHOLD,
    check_known_images,
    image_key,
    mask_from_gaze,
    read_assessments,
    read_mask_pngs,
    read_reasonability,
    sample_weights,
)
from gaze.data.transforms import JointTransform

P2_TRAIN_CSV = "p2_train.csv"


@dataclass(frozen=True)
class HumanAttention:
    """Drawn masks and reasonability codes of a dataset's images, keyed by item id.

    Args:
        masks: {id: (H, W) bool}, any size; images not in it use their gaze map.
        ratings: {id: 'RA' | 'UA' | 'RI' | 'UI'}.
        attention_samples: 'rated' | 'all' (see ``gaze.attention.annotations.ATTENTION_SAMPLES``).
        gaze_threshold: of the masks made from gaze maps.
    """

    masks: Mapping[str, np.ndarray] = field(default_factory=dict)
    ratings: Mapping[str, str] = field(default_factory=dict)
    attention_samples: str = "rated"
    gaze_threshold: float = GAZE_MASK_THRESHOLD

    def __post_init__(self) -> None:
        if self.attention_samples not in ATTENTION_SAMPLES:
            raise ValueError(f"attention_samples={self.attention_samples!r}: expected one of "
                             f"{', '.join(ATTENTION_SAMPLES)}")

    def transform(self, transform: JointTransform, picture: Any, gaze: Any, sample_id: str) -> dict[str, Any]:
        """``{'image', 'gaze' (when given), 'mask', 'weight_ce', 'weight_att'}`` of one item.

        Args:
            transform: the split's joint transform.
            picture: the PIL RGB image.
            gaze: its (H, W) eye-tracking map, or None.
            sample_id: its id (the key of ``masks`` and ``ratings``).
        """
        drawn = self.masks.get(sample_id)
        if drawn is not None:
            image, gaze, mask = transform.with_mask(picture, gaze, drawn)
        else:
            image, gaze = transform(picture, gaze)
            mask = (mask_from_gaze(gaze, self.gaze_threshold).float() if gaze is not None
                    else torch.zeros_like(image[:1]))
        weight_ce, weight_att = sample_weights(self.ratings.get(sample_id), bool((mask >= 0.5).any()),
                                               self.attention_samples)
        item = {"image": image, "mask": mask, "weight_ce": torch.tensor(weight_ce), "weight_att": torch.tensor(weight_att)}
        if gaze is not None:
            item["gaze"] = gaze
        return item


def read_ratings(path: str | os.PathLike, ids: Collection[str], aliases: Mapping[str, str] | None = None
                 ) -> dict[str, str]:
    """``{id: code}`` of a ``reasonablity_<split>.json`` whose keys are item ids or, through
    ``aliases`` ({image file name: id}), the image file names GRADIA's files use.

    Raises:
        gaze.attention.annotations.AnnotationFormatError: a key that names no image of the dataset.
    """
    aliases = aliases or {}
    ratings = {aliases.get(key, key): code for key, code in read_reasonability(path).items()}
    check_known_images(ratings, ids, str(path))
    return ratings


def read_verdicts(path: str | os.PathLike, ids: Collection[str], aliases: Mapping[str, str] | None = None
                  ) -> dict[str, bool]:
    """``{id: judged unreasonable}`` of an assessment file (``read_assessments``' two forms),
    keys as item ids or, through ``aliases``, image file names.

    Raises:
        gaze.attention.annotations.AnnotationFormatError: a key that names no image of the dataset.
    """
    aliases = aliases or {}
    verdicts = {aliases.get(key, key): bad for key, bad in read_assessments(path).items()}
    check_known_images(verdicts, ids, str(path))
    return verdicts


def configured_human_attention(config: Mapping[str, Any],
                               index: Callable[[], tuple[Sequence[str], Mapping[str, str]]],
                               resolve: Callable[[str | None], Path | None]) -> HumanAttention | None:
    """The tree keys ``ratings``, ``masks_dir``, ``attention_samples``, ``gaze_threshold`` as a
    :class:`HumanAttention` (paths through the tree's ``resolve``; ``index()`` gives the dataset's
    ids and {file name: id}, read only when needed), or None when the config names neither file
    and every masked image is weighted alike (``attention_samples='all'``)."""
    if config["ratings"] is None and config["masks_dir"] is None and config["attention_samples"] == "all":
        return None
    ids, aliases = index()
    return load_human_attention(ids, resolve(config["ratings"]), resolve(config["masks_dir"]),
                                config["attention_samples"], config["gaze_threshold"], aliases)


def load_human_attention(
    ids: Sequence[str],
    ratings: str | os.PathLike | None = None,
    masks_dir: str | os.PathLike | None = None,
    attention_samples: str = "rated",
    gaze_threshold: float | None = None,
    aliases: Mapping[str, str] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
) -> HumanAttention:
    """The :class:`HumanAttention` of a dataset with item ``ids``: ``masks`` (e.g. GRADIA's
    JSON files), replaced by the PNGs ``<masks_dir>/<id>.png`` that exist, and the ratings file."""
    masks = dict(masks or {})
    if masks_dir is not None:
        if not Path(masks_dir).is_dir():
            raise FileNotFoundError(f"masks_dir={str(masks_dir)!r}: no such folder (PNG masks <masks_dir>/<id>.png)")
        masks.update(read_mask_pngs(masks_dir, ids))
    codes = read_ratings(ratings, ids, aliases) if ratings is not None else {}
    threshold = GAZE_MASK_THRESHOLD if gaze_threshold is None else float(gaze_threshold)
    return HumanAttention(masks, codes, attention_samples, threshold)


def file_name_aliases(ids: Iterable[str], paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """{image file name: id} where the names are unique (GRADIA's files key images by name)."""
    names = [image_key(str(path)) for path in paths]
    counts = Counter(names)
    return {name: sample_id for name, sample_id in zip(names, ids) if counts[name] == 1}


def phase_two_split(train: Sequence[str], val: Sequence[str], rated: Collection[str]) -> tuple[list[str], list[str]]:
    """(training ids, validation ids) of GRADIA's phase 2: the training ids plus the rated
    validation ids, and the validation ids left (all of them when none is rated).

    Raises:
        ValueError: every validation image is rated (nothing would be left to select on).
    """
    chosen = [sample_id for sample_id in val if sample_id in rated]
    left = [sample_id for sample_id in val if sample_id not in rated]
    if chosen and not left:
        raise ValueError("every validation image is rated: phase 2 trains on them and has none left to select on; "
                         "keep some validation images unrated")
    return list(train) + chosen, left if chosen else list(val)


def write_phase_two_train(table: pd.DataFrame, out_dir: str | os.PathLike) -> Path:
    """``<out_dir>/p2_train.csv``: the phase-2 training images (the published p2_train folder, as a file)."""
    path = Path(out_dir) / P2_TRAIN_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)
    return path
