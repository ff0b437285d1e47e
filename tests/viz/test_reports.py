"""gaze/viz/reports.py against numbers computed independently (numpy by hand, sklearn)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score

from gaze.viz.reports import compute_report, predictions_frame, top_k_accuracy, write_reports


def random_results(samples: int = 60, classes: int = 6, seed: int = 0) -> dict:
    """Softmax outputs that are right more often than chance, every class present."""
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % classes
    rng.shuffle(labels)
    logits = rng.normal(size=(samples, classes))
    logits[np.arange(samples), labels] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"ids": [f"img_{i}" for i in range(samples)], "labels": labels,
            "probabilities": probabilities.astype(np.float32)}


def test_report_numbers_match_independent_computations():
    results = random_results()
    labels, probabilities = results["labels"], results["probabilities"].astype(np.float64)
    report = compute_report(labels, results["probabilities"])
    predictions = probabilities.argmax(axis=1)
    assert report["top1"] == pytest.approx(100 * np.mean(predictions == labels))
    ranks = (probabilities > probabilities[np.arange(len(labels)), labels][:, None]).sum(axis=1)
    assert report["top5"] == pytest.approx(100 * np.mean(ranks < 5))
    for c in range(6):  # per-class accuracy = recall of the class
        assert report["per_class_accuracy"][str(c)] == pytest.approx(100 * np.mean(predictions[labels == c] == c))
    assert report["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert report["weighted_f1"] == pytest.approx(f1_score(labels, predictions, average="weighted"))
    assert report["roc_auc_ovr"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))
    assert report["roc_auc_ovo"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovo"))
    confusion = np.zeros((6, 6), dtype=int)
    np.add.at(confusion, (labels, predictions), 1)
    assert report["confusion_matrix"] == confusion.tolist()
    assert report["num_samples"] == 60 and report["num_classes"] == 6


def test_hand_made_f1():
    labels = np.array([0, 0, 1, 1, 2])
    probabilities = np.eye(3)[[0, 1, 1, 1, 0]]  # predictions 0 1 1 1 0
    report = compute_report(labels, probabilities)
    # class 0: P 1/2 R 1/2 F 1/2; class 1: P 2/3 R 1 F 4/5; class 2: F 0
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert report["weighted_f1"] == pytest.approx((2 * 0.5 + 2 * 0.8 + 0) / 5)
    assert report["top1"] == pytest.approx(60.0) and report["top5"] == 100.0


def test_auc_undefined_when_a_class_is_missing_and_binary_case():
    labels = np.array([0, 1, 0, 1])
    three = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    report = compute_report(labels, three)
    assert report["roc_auc_ovr"] is None and report["roc_auc_ovo"] is None  # class 2 never occurs
    assert report["per_class_accuracy"]["2"] is None
    binary = compute_report(labels, three[:, :2] / three[:, :2].sum(1, keepdims=True))
    assert binary["roc_auc_ovr"] == pytest.approx(roc_auc_score(labels, three[:, 1] / three[:, :2].sum(1)))
    json.dumps(report, allow_nan=False)  # valid JSON: no NaN


def test_top_k_caps_at_class_count():
    assert top_k_accuracy(np.array([1, 0]), np.array([[0.9, 0.1], [0.2, 0.8]]), 5) == 100.0


def test_write_reports_files(tmp_path):
    results = random_results(samples=30, classes=3)
    names = ["albatross", "bunting", "cardinal"]
    report = write_reports(results, tmp_path, class_names=names, prefix="val_")
    saved = json.loads((tmp_path / "val_classification_report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert set(saved["per_class_accuracy"]) == set(names) and "cardinal" in saved["classification_report"]
    table = pd.read_csv(tmp_path / "val_predictions.csv")
    assert list(table.columns) == ["id", "label", "prediction", "prob_albatross", "prob_bunting", "prob_cardinal"]
    assert table["id"].tolist() == results["ids"]
    np.testing.assert_array_equal(table["prediction"], results["probabilities"].argmax(1))
    np.testing.assert_allclose(table.iloc[:, 3:].to_numpy(), results["probabilities"], rtol=1e-6)
    with Image.open(tmp_path / "val_confusion_matrix.png") as image:
        assert image.width > 100 and image.height > 100
    assert not list(tmp_path.glob(".*.tmp"))


def test_class_name_count_must_match_and_default_names():
    with pytest.raises(ValueError, match="2 class names for 3"):
        compute_report(np.array([0]), np.ones((1, 3)) / 3, ["a", "b"])
    table = predictions_frame([7], np.array([2]), np.array([[0.1, 0.2, 0.7]]))
    assert list(table.columns) == ["id", "label", "prediction", "prob_0", "prob_1", "prob_2"]
    assert table.loc[0, "id"] == "7" and table.loc[0, "prediction"] == 2


def test_infer_files_hold_the_hand_counted_accuracy_and_scores(tmp_path):
    from gaze.viz.reports import write_infer_files

    results = {"ids": ["a", "b", "c"], "labels": np.array([0, 1, 1]),
               "probabilities": np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)}
    written = write_infer_files(results, tmp_path, ["x", "y"], ["[Infer Results]", "Project: p, Experiment: e"])
    assert (tmp_path / "infer_results.txt").read_text().splitlines() == [
        "[Infer Results]", "Project: p, Experiment: e", "Samples: 3", "", "    top-1 66.667%", "    top-3 100.000%"]
    table = pd.read_csv(tmp_path / "infer_predictions.csv")
    assert table["prediction"].tolist() == [0, 1, 0] and np.allclose(table["score"], [0.9, 0.7, 0.6])
    assert table["prediction_name"].tolist() == ["x", "y", "x"] and (tmp_path / "infer_cm.png").is_file()
    assert (tmp_path / "infer_result.xlsx" in written) == (importlib.util.find_spec("openpyxl") is not None)
