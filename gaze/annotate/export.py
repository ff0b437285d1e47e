"""Export an annotation store into the files GRADIA's phase 2 reads (gradia_cal.md A3, A10).

``python -m gaze annotate export --db annotations.sqlite --out DIR`` writes

* ``reasonablity_<split>.json``: ``{"<item id>": "<Reasonable|Unreasonable> <Accurate|Inaccurate>"}``
  of one method (``--method``, default the first): each annotator's verdict by
  ``verdict_rule``, several annotators combined by ``combine``, joined with whether that
  method's model classified the item correctly;
* ``results.csv``: the published columns ``img_idx, a_1..a_4, b_1..b_4, c_1..c_4, rnd_order``
  (Q1 / Q2 as 'True' / 'False', Q3 1-5, answers in method order, ``rnd_order`` the shown
  order as published, ``[0, ...]`` with 0 the photo), one row per annotator and item, and
  an ``annotator`` column last;
* ``attention_<split>_update.json``: ``[{"img": "<item id>", "attention": 224x224 0/1}]``, the
  drawn masks as GRADIA reads them (nearest-neighbour resized);
* ``masks/<item id>.png``: the drawn masks at the image's resolution (0 / 255).

Several annotators' masks of an image are combined pixelwise by majority (a pixel is in
when at least half of them drew it). Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from PIL import Image

from gaze.annotate.store import Store, StoreError
from gaze.atomic import atomic_path
from gaze.attention.annotations import LABEL_CODES
from gaze.safe_paths import check_plain_name, path_inside

#: verdict rule -> (Q1 necessary, Q2 unnecessary) -> reasonable.
VERDICT_RULES = {
    "necessary_only": "reasonable <=> Q1 yes and Q2 no (the focus holds what the decision needs and nothing else)",
    "necessary": "reasonable <=> Q1 yes (unnecessary details allowed)",
}
#: how several annotators' verdicts on one item become one.
COMBINE_RULES = {
    "majority": "the verdict of most annotators; a tie counts as unreasonable (the image gets the attention loss)",
    "any_unreasonable": "unreasonable when any annotator judged it so",
}
GRADIA_MASK_SIDE = 224
PUBLISHED_METHOD_COLUMNS = 4
CODE_LABELS = {code: label for label, code in LABEL_CODES.items()}


def is_reasonable(necessary: bool, unnecessary: bool, rule: str = "necessary_only") -> bool:
    """One annotator's verdict on one overlay by ``rule`` (:data:`VERDICT_RULES`)."""
    if rule not in VERDICT_RULES:
        raise ValueError(f"verdict_rule={rule!r}: expected one of {', '.join(VERDICT_RULES)}")
    return bool(necessary) and (rule == "necessary" or not unnecessary)


def combine_verdicts(verdicts: list[bool], rule: str = "majority") -> bool:
    """Several annotators' verdicts (True = reasonable) -> one, by ``rule`` (:data:`COMBINE_RULES`)."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"combine={rule!r}: expected one of {', '.join(COMBINE_RULES)}")
    if rule == "any_unreasonable":
        return all(verdicts)
    return sum(verdicts) > len(verdicts) / 2


def reasonability(store: Store, method: str | None = None, verdict_rule: str = "necessary_only",
                  combine: str = "majority") -> dict[str, str]:
    """{item: 'RA' | 'UA' | 'RI' | 'UI'} of ``method``'s attention on every rated item."""
    methods = store.methods()
    method = method or (methods[0] if methods else None)
    if method not in methods:
        raise StoreError(f"method {method!r}: the store explains {methods}")
    verdicts: dict[str, list[bool]] = defaultdict(list)
    for row in store.latest_ratings():
        if row["method"] == method:
            verdicts[row["item"]].append(is_reasonable(row["necessary"], row["unnecessary"], verdict_rule))
    codes = {}
    labels = {item.item: item.label for item in store.items()}
    for item, answers in verdicts.items():
        predicted = store.predictions(item)[method][0]
        reasonable = combine_verdicts(answers, combine)
        codes[item] = ("R" if reasonable else "U") + ("A" if predicted == labels[item] else "I")
    return codes


def results_table(store: Store) -> pd.DataFrame:
    """The published ``results.csv`` rows (A10) of every annotator and rated item, plus ``annotator``."""
    methods = store.methods()
    if len(methods) > PUBLISHED_METHOD_COLUMNS:
        raise StoreError(f"{len(methods)} methods: the published results.csv has columns for {PUBLISHED_METHOD_COLUMNS}")
    pages: dict[tuple[str, str], dict] = defaultdict(dict)
    for row in store.latest_ratings():
        pages[(row["annotator"], row["item"])][row["method"]] = row
    rows = []
    for (annotator, item), answers in pages.items():
        record: dict = {"img_idx": item}
        for prefix, key in (("a", "necessary"), ("b", "unnecessary"), ("c", "quality")):
            for k in range(PUBLISHED_METHOD_COLUMNS):
                answer = answers.get(methods[k]) if k < len(methods) else None
                value = None if answer is None else answer[key]
                record[f"{prefix}_{k + 1}"] = value if prefix == "c" or value is None else str(bool(value))
        shown = json.loads(max(answers.values(), key=lambda a: a["submitted"])["shown_order"])
        record["rnd_order"] = str([0] + [methods.index(method) + 1 for method in shown])
        record["annotator"] = annotator
        rows.append(record)
    columns = ["img_idx", *(f"{p}_{k}" for p in "abc" for k in range(1, PUBLISHED_METHOD_COLUMNS + 1)), "rnd_order",
               "annotator"]
    return pd.DataFrame(rows, columns=columns)


def decode_mask(png: bytes) -> np.ndarray:
    """(H, W) bool of a stored mask PNG (pixels > 0 are in)."""
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("L")) > 0


def combined_masks(store: Store) -> dict[str, np.ndarray]:
    """{item: (H, W) bool}: each item's latest mask per annotator, combined by pixelwise majority."""
    drawn: dict[str, list[np.ndarray]] = defaultdict(list)
    for row in store.latest_masks():
        drawn[row["item"]].append(decode_mask(row["png"]))
    return {item: np.mean(np.stack(masks), axis=0) >= 0.5 for item, masks in drawn.items()}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def export(store: Store, out_dir: str | os.PathLike, method: str | None = None, verdict_rule: str = "necessary_only",
           combine: str = "majority") -> dict[str, Path]:
    """Write every export file into ``out_dir``; returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = store.meta().get("split", "val")
    check_plain_name(split, "the store's split")
    codes = reasonability(store, method, verdict_rule, combine)
    paths = {"reasonability": out_dir / f"reasonablity_{split}.json", "results": out_dir / "results.csv",
             "attention": out_dir / f"attention_{split}_update.json", "masks": out_dir / "masks"}
    _write_text(paths["reasonability"], json.dumps({item: CODE_LABELS[code] for item, code in codes.items()}, indent=1) + "\n")
    with atomic_path(paths["results"]) as temporary:
        results_table(store).to_csv(temporary, index=False)
    masks = combined_masks(store)
    paths["masks"].mkdir(exist_ok=True)
    entries = []
    for item, mask in masks.items():
        png = path_inside(paths["masks"], check_plain_name(f"{item}.png", f"mask of item {item!r}"))
        with atomic_path(png) as temporary:
            Image.fromarray(mask.astype(np.uint8) * 255).save(temporary, format="PNG")
        small = Image.fromarray(mask).resize((GRADIA_MASK_SIDE, GRADIA_MASK_SIDE), Image.Resampling.NEAREST)
        entries.append({"img": item, "attention": np.asarray(small).astype(int).tolist()})
    _write_text(paths["attention"], json.dumps(entries) + "\n")
    return paths


def summary_line(paths: Mapping[str, Path], store: Store) -> str:
    """What was exported, for the command's output."""
    codes = json.loads(paths["reasonability"].read_text())
    masks = len(list(paths["masks"].glob("*.png")))
    return (f"{len(codes)} rated items -> {paths['reasonability']}; {masks} masks -> {paths['masks']}; "
            f"{len(store.annotators())} annotators' answers -> {paths['results']}")
