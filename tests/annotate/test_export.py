"""gaze.annotate.export against hand-built stores: the four labels, results.csv, masks, GRADIA's reader."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gaze.annotate.export import combine_verdicts, export, is_reasonable, reasonability, results_table
from gaze.annotate.store import Rating
from gaze.attention.annotations import gradia_masks, read_mask_pngs, read_reasonability
from tests.annotate.helpers import hand_store


def png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def test_verdict_and_combination_rules():
    assert is_reasonable(True, False) and not is_reasonable(True, True) and not is_reasonable(False, False)
    assert is_reasonable(True, True, "necessary")
    assert combine_verdicts([True, True, False]) and not combine_verdicts([True, False])  # a tie: unreasonable
    assert not combine_verdicts([True, True, False], "any_unreasonable")
    with pytest.raises(ValueError, match="verdict_rule='x'"):
        is_reasonable(True, False, "x")


def test_reasonability_joins_the_verdict_with_the_model_correctness(tmp_path):
    store = hand_store(tmp_path / "a.sqlite", items=4, labels=[0, 1, 0, 1], predicted=[0, 1, 1, 0])
    for name in ("a", "b", "c"):
        store.add_annotator(name)
    answers = {  # item -> phase1's (Q1, Q2) per annotator a, b, c
        "1": [(True, False)] * 3,                                    # reasonable, correct -> RA
        "2": [(True, True), (False, False), (True, False)],          # 1 of 3 reasonable, correct -> UA
        "3": [(True, False), (True, False), (False, True)],          # 2 of 3 reasonable, wrong -> RI
        "4": [(False, True)] * 3,                                    # unreasonable, wrong -> UI
    }
    for item, per_annotator in answers.items():
        for name, (q1, q2) in zip("abc", per_annotator):
            store.submit_ratings(name, item, {"phase1": Rating(q1, q2, 3), "phase2": Rating(True, False, 5)},
                                 ["phase2", "phase1"])
    assert reasonability(store) == {"1": "RA", "2": "UA", "3": "RI", "4": "UI"}
    assert reasonability(store, combine="any_unreasonable")["3"] == "UI"
    assert set(reasonability(store, "phase2").values()) == {"RA"}  # phase2 predicts every label


def test_results_csv_has_the_published_columns_in_method_order(tmp_path):
    store = hand_store(tmp_path / "a.sqlite", items=2)
    store.add_annotator("a")
    store.submit_ratings("a", "1", {"phase1": Rating(True, False, 4), "phase2": Rating(False, True, 2)},
                         ["phase2", "phase1"])
    table = results_table(store)
    assert list(table.columns) == ["img_idx", "a_1", "a_2", "a_3", "a_4", "b_1", "b_2", "b_3", "b_4",
                                   "c_1", "c_2", "c_3", "c_4", "rnd_order", "annotator"]
    row = table.iloc[0]
    assert (row["img_idx"], row["a_1"], row["a_2"], row["b_1"], row["b_2"], row["c_1"], row["c_2"]) == \
        ("1", "True", "False", "False", "True", 4, 2)
    assert row["rnd_order"] == "[0, 2, 1]" and row["annotator"] == "a" and pd.isna(row["a_3"])


def test_export_writes_files_gradia_and_the_trees_read(tmp_path):
    store = hand_store(tmp_path / "a.sqlite", items=3)
    for name in ("a", "b", "c"):
        store.add_annotator(name)
    store.submit_ratings("a", "2", {"phase1": Rating(True, False, 4), "phase2": Rating(True, False, 4)},
                         ["phase1", "phase2"])
    left, right, all_on = np.zeros((6, 8), bool), np.zeros((6, 8), bool), np.ones((6, 8), bool)
    left[:, :4], right[:, 4:] = True, True
    store.submit_mask("a", "1", png(left), 8, 6, "empty")
    store.submit_mask("b", "1", png(all_on), 8, 6, "cam")
    store.submit_mask("c", "1", png(right), 8, 6, "gaze")  # majority: every pixel drawn by 2 of 3
    store.submit_mask("a", "3", png(right), 8, 6, "empty")
    store.submit_mask("a", "3", png(left), 8, 6, "empty")  # redrawn: the latest counts
    paths = export(store, tmp_path / "out")
    assert read_reasonability(paths["reasonability"]) == {"2": "RA"}
    assert json.loads(paths["reasonability"].read_text()) == {"2": "Reasonable Accurate"}
    masks = read_mask_pngs(paths["masks"], ["1", "2", "3"])
    assert sorted(masks) == ["1", "3"] and masks["1"].all() and np.array_equal(masks["3"], left)
    gradia = gradia_masks(update=paths["attention"])
    assert gradia["3"].shape == (224, 224) and gradia["3"][:, :112].all() and not gradia["3"][:, 112:].any()
    assert len(pd.read_csv(paths["results"])) == 1
