"""gaze.annotate.agreement against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from gaze.annotate.agreement import fleiss_kappa, mask_iou

#: Fleiss (1971) as tabulated on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
WIKIPEDIA_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                   [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_matches_the_worked_example():
    assert fleiss_kappa(np.array(WIKIPEDIA_TABLE)) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[2, 0], [1, 2]]))


def test_mask_iou_by_hand():
    first, second = np.zeros((2, 4), bool), np.zeros((2, 4), bool)
    first[:, :2], second[:, 1:3] = True, True
    assert mask_iou(first, second) == pytest.approx(2 / 6)
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
