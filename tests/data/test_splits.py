"""Tests for gaze/data/splits.py: stratified, seeded train/validation splits."""

from __future__ import annotations

import numpy as np
import pytest

from gaze.data.splits import stratified_split

# ----------------------------------------------------------------------------- stratified_split
def test_stratified_split_proportions_and_cover():
    labels = np.repeat(np.arange(5), [20, 40, 10, 30, 100])
    train, val = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert len(val) == int(np.ceil(0.2 * len(labels)))
    per_class = np.bincount(labels[val], minlength=5)
    assert np.all(np.abs(per_class - 0.2 * np.bincount(labels)) <= 1)


def test_stratified_split_is_seeded():
    labels = np.repeat(np.arange(4), 25)
    first = stratified_split(labels, 0.1, seed=0)
    again = stratified_split(labels, 0.1, seed=0)
    other = stratified_split(labels, 0.1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])
    assert first[0].dtype == np.int64


def test_stratified_split_singleton_class_stays_in_train():
    labels = np.array([0] * 10 + [1] * 10 + [2])
    with pytest.warns(UserWarning, match="single sample"):
        train, val = stratified_split(labels, 0.2, seed=0)
    assert 20 in train and 20 not in val
    assert set(labels[val]) == {0, 1}


def test_stratified_split_too_small_val_is_an_error():
    labels = np.repeat(np.arange(10), 3)
    with pytest.raises(ValueError, match="at least one sample per class"):
        stratified_split(labels, 0.1, seed=0)  # 3 val samples for 10 classes


def test_stratified_split_zero_fraction_and_bad_fraction():
    train, val = stratified_split([0, 1, 1], 0.0)
    assert train.tolist() == [0, 1, 2] and val.size == 0
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split([0, 1], 1.0)
