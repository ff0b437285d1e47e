"""Seeded, stratified train/validation splits of a dataset's training part."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation parts with the same class proportions.

    Uses ``sklearn.model_selection.train_test_split(stratify=labels)`` with
    ``random_state=seed``, so the split is reproducible. A class with a single sample
    cannot be stratified: its sample stays in the training part (a warning names the
    classes). A validation part too small to hold one sample of every remaining class is
    an error (raise ``val_fraction``); no silent unstratified fallback.

    Args:
        labels: (N,) class label of every sample.
        val_fraction: fraction of the samples in the validation part, in [0, 1). sklearn
            rounds the validation count up (``ceil(val_fraction * n)``).
        seed: random seed of the split.

    Returns:
        (train_idx, val_idx): sorted int64 index arrays, disjoint, covering 0..N-1.
    """
    labels = np.asarray(labels)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    indices = np.arange(len(labels), dtype=np.int64)
    if val_fraction == 0.0 or len(labels) == 0:
        return indices, np.zeros(0, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    singles = classes[counts < 2]
    if len(singles):
        warnings.warn(
            f"stratified_split: {len(singles)} class(es) with a single sample kept in the training "
            f"part: {singles[:10].tolist()}{' ...' if len(singles) > 10 else ''}",
            stacklevel=2,
        )
    splittable = ~np.isin(labels, singles)
    pool = indices[splittable]
    num_val = int(np.ceil(val_fraction * len(pool)))
    num_classes = len(classes) - len(singles)
    if num_val < num_classes or len(pool) - num_val < num_classes:
        raise ValueError(
            f"stratified_split: val_fraction={val_fraction} gives {num_val} validation and "
            f"{len(pool) - num_val} training samples for {num_classes} classes; each part needs "
            "at least one sample per class (change val_fraction)"
        )
    from sklearn.model_selection import train_test_split

    train_pool, val_idx = train_test_split(
        pool, test_size=num_val, stratify=labels[splittable], random_state=seed
    )
    train_idx = np.concatenate([train_pool, indices[~splittable]])
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)
