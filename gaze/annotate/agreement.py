"""Agreement between annotators: Cohen's and Fleiss' kappa of the Q1 / Q2 answers, IoU of the masks."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from sklearn.metrics import cohen_kappa_score

from gaze.annotate.export import decode_mask
from gaze.annotate.store import Store

QUESTIONS = {"necessary": "Q1 necessary details", "unnecessary": "Q2 unnecessary details"}


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of a (units, categories) table of how many raters chose each category;
    every unit has the same number of raters (>= 2). NaN when chance agreement is 1."""
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(1)
    if counts.shape[0] == 0 or raters.min() < 2 or not np.all(raters == raters[0]):
        raise ValueError("Fleiss' kappa needs at least one unit and the same number (>= 2) of raters on each")
    n = raters[0]
    observed = ((counts * (counts - 1)).sum(1) / (n * (n - 1))).mean()
    shares = counts.sum(0) / counts.sum()
    chance = float((shares**2).sum())
    return float("nan") if chance == 1 else float((observed - chance) / (1 - chance))


def _kappa(first: list[int], second: list[int]) -> float:
    """Cohen's kappa; 1.0 when both always gave the same single answer (sklearn returns NaN)."""
    if len(set(first) | set(second)) == 1:
        return 1.0
    return float(cohen_kappa_score(first, second))


def mask_iou(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two boolean masks of one image (1 when both are empty)."""
    union = np.logical_or(first, second).sum()
    return 1.0 if union == 0 else float(np.logical_and(first, second).sum() / union)


def agreement_summary(store: Store) -> dict:
    """Per-annotator progress, pairwise Cohen's kappa and overall Fleiss' kappa of Q1 and Q2
    (over the (item, method) answers the raters share), and pairwise mask IoU."""
    ratings = store.latest_ratings()
    masks = store.latest_masks()
    annotators = store.annotators()
    answers = {name: {(r["item"], r["method"]): r for r in ratings if r["annotator"] == name} for name in annotators}
    drawn = {name: {m["item"]: m["png"] for m in masks if m["annotator"] == name} for name in annotators}
    progress = [{"annotator": name, "rated": len({item for item, _ in answers[name]}), "masks": len(drawn[name])}
                for name in annotators]
    pairs = []
    for first, second in combinations(annotators, 2):
        shared = sorted(set(answers[first]) & set(answers[second]))
        common_masks = sorted(set(drawn[first]) & set(drawn[second]))
        pair = {"annotators": (first, second), "shared": len(shared), "masks_shared": len(common_masks)}
        for key in QUESTIONS:
            pair[key] = _kappa([answers[first][u][key] for u in shared], [answers[second][u][key] for u in shared]) \
                if shared else None
        pair["mask_iou"] = float(np.mean([mask_iou(decode_mask(drawn[first][i]), decode_mask(drawn[second][i]))
                                          for i in common_masks])) if common_masks else None
        pairs.append(pair)
    fleiss = {}
    everyone = set.intersection(*(set(a) for a in answers.values())) if len(annotators) >= 2 else set()
    for key in QUESTIONS:
        if everyone:
            yes = np.array([sum(answers[name][u][key] for name in annotators) for u in sorted(everyone)])
            fleiss[key] = fleiss_kappa(np.stack([yes, len(annotators) - yes], axis=1))
        else:
            fleiss[key] = None
    return {"progress": progress, "pairs": pairs, "fleiss": fleiss, "units_shared_by_all": len(everyone),
            "questions": QUESTIONS}
