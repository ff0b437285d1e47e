"""Evaluation reports from :func:`gaze.engine.evaluate.evaluate` output (all files atomic).

* ``classification_report.json``: top-1/top-5 accuracy (%), per-class accuracy (%),
  sklearn's per-class precision/recall/F1 with macro and weighted averages (fractions),
  ROC-AUC one-vs-rest and one-vs-one (fractions) when the probabilities allow it;
* ``predictions.csv``: id, label, prediction, then one probability column per class;
* ``confusion_matrix.png``: row-normalised (gaze/viz/plots.py).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from gaze.atomic import atomic_path
from gaze.engine.heads import checkpoint_run_names, report_heads
from gaze.viz.plots import plot_confusion_matrix


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Percentage of samples whose label is among the k highest probabilities (k <= C)."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]  # (N, k)
    return 100.0 * float(np.mean(np.any(top == labels[:, None], axis=1))) if len(labels) else float("nan")


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Recall of each class in %, None for a class with no samples."""
    totals = confusion.sum(axis=1)
    return [100.0 * confusion[i, i] / totals[i] if totals[i] else None for i in range(len(totals))]


def roc_auc(labels: np.ndarray, probabilities: np.ndarray, multi_class: str) -> float | None:
    """ROC-AUC (``'ovr'`` or ``'ovo'``, macro average), None when undefined for these labels.

    Undefined (None) unless every class occurs among the labels: a class without positives
    has no ROC curve, and averaging over the classes that occur would change the meaning
    of the number from one split to another.
    """
    count = probabilities.shape[1]
    if count < 2 or len(np.intersect1d(labels, np.arange(count))) < count:
        return None
    scores = probabilities.astype(np.float64)
    scores = scores / scores.sum(axis=1, keepdims=True)  # float32 softmax rows may miss 1 by 1e-7
    try:
        if count == 2:
            return float(roc_auc_score(labels, scores[:, 1]))
        return float(roc_auc_score(labels, scores, multi_class=multi_class, labels=np.arange(count)))
    except ValueError:
        return None


def compute_report(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str] | None = None
) -> dict:
    """All report numbers as a JSON-ready dict (see the module docstring for units).

    Args:
        labels: (N,) int class indices.
        probabilities: (N, C) softmax probabilities.
        class_names: C names (default: "0".."C-1").
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    count = probabilities.shape[1]
    names = [str(name) for name in class_names] if class_names is not None else [str(i) for i in range(count)]
    if len(names) != count:
        raise ValueError(f"{len(names)} class names for {count} probability columns")
    predictions = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predictions, labels=np.arange(count))
    sklearn_report = classification_report(
        labels, predictions, labels=np.arange(count), target_names=names, output_dict=True, zero_division=0
    )
    return _json_ready({
        "num_samples": int(len(labels)),
        "num_classes": int(count),
        "top1": top_k_accuracy(labels, probabilities, 1),
        "top5": top_k_accuracy(labels, probabilities, 5),
        "macro_f1": sklearn_report["macro avg"]["f1-score"],
        "weighted_f1": sklearn_report["weighted avg"]["f1-score"],
        "roc_auc_ovr": roc_auc(labels, probabilities, "ovr"),
        "roc_auc_ovo": roc_auc(labels, probabilities, "ovo"),
        "per_class_accuracy": dict(zip(names, per_class_accuracy(confusion))),
        "classification_report": sklearn_report,
        "confusion_matrix": confusion.tolist(),
    })


def _json_ready(value):
    """Numpy scalars -> Python numbers, NaN -> None, recursively."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def predictions_frame(
    ids: Sequence, labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Table with columns id, label, prediction, then ``prob_<class name>`` per class."""
    probabilities = np.asarray(probabilities)
    names = class_names if class_names is not None else range(probabilities.shape[1])
    table = pd.DataFrame({
        "id": [str(i) for i in ids],
        "label": np.asarray(labels, dtype=np.int64),
        "prediction": probabilities.argmax(axis=1),
    })
    columns = pd.DataFrame(probabilities, columns=[f"prob_{name}" for name in names])
    return pd.concat([table, columns], axis=1)


def write_reports(
    results: dict,
    out_dir: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    prefix: str = "",
) -> dict:
    """Write the three report files for one evaluated split.

    Args:
        results: :func:`gaze.engine.evaluate.evaluate` output (``ids``, ``labels``,
            ``probabilities``, ``protocol``).
        out_dir: folder (created).
        class_names: optional C names.
        prefix: file-name prefix, e.g. ``"val_"`` (none: the test-set reports).

    Returns:
        the report dict written to ``<prefix>classification_report.json``.
    """
    out_dir = Path(out_dir)
    report = compute_report(results["labels"], results["probabilities"], class_names)
    if "protocol" in results:  # the evaluation protocol beside the numbers it produced
        report["eval_protocol"] = results["protocol"]
    with atomic_path(out_dir / f"{prefix}classification_report.json") as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")
    table = predictions_frame(results["ids"], results["labels"], results["probabilities"], class_names)
    with atomic_path(out_dir / f"{prefix}predictions.csv") as temporary:
        table.to_csv(temporary, index=False)
    plot_confusion_matrix(
        np.asarray(report["confusion_matrix"]), class_names, out_dir / f"{prefix}confusion_matrix.png",
        title=f"confusion matrix, top-1 {report['top1']:.2f}% (row-normalised)",
    )
    return report


#: Files of PIM's infer.py (cub_pim.md §3.6), written by :func:`write_infer_files`.
INFER_FILES = ("infer_results.txt", "infer_predictions.csv", "infer_result.xlsx", "infer_cm.png")


def write_infer_files(results: dict, out_dir: str | os.PathLike, class_names: Sequence[str] | None,
                      header: Sequence[str]) -> list[Path]:
    """PIM's infer.py outputs of an evaluated split (the model's logits: PIM's combiner).

    ``infer_results.txt`` (``header`` lines, the sample count, top-1 and top-3 %);
    ``infer_predictions.csv`` with id, label, prediction, score (the predicted class's softmax,
    published ``goal``) and, when openpyxl is installed, the same as ``infer_result.xlsx`` (the
    published file; pandas 2 dropped the ``writer.save()`` it called); ``infer_cm.png``: the
    row-normalised confusion matrix titled with the accuracy, readable at 200 classes (the
    published figure is n/2 inches at 100 dpi: ~10,000 px).

    Returns:
        The written paths.
    """
    out_dir = Path(out_dir)
    probabilities, labels = np.asarray(results["probabilities"]), np.asarray(results["labels"])
    predicted = probabilities.argmax(axis=1)
    top3 = np.argsort(-probabilities, axis=1)[:, :3]
    top1_pct = 100.0 * float((predicted == labels).mean()) if len(labels) else float("nan")
    top3_pct = 100.0 * float((top3 == labels[:, None]).any(axis=1).mean()) if len(labels) else float("nan")
    table = pd.DataFrame({"id": [str(i) for i in results["ids"]], "label": labels, "prediction": predicted,
                          "score": probabilities[np.arange(len(predicted)), predicted]})
    if class_names is not None:
        table["label_name"] = [class_names[i] for i in labels]
        table["prediction_name"] = [class_names[i] for i in predicted]
    written = [out_dir / INFER_FILES[0], out_dir / INFER_FILES[1]]
    with atomic_path(written[0]) as temporary:
        temporary.write_text("\n".join([*header, f"Samples: {len(labels)}", "",
                                        f"    top-1 {top1_pct:.3f}%", f"    top-3 {top3_pct:.3f}%"]) + "\n")
    with atomic_path(written[1]) as temporary:
        table.to_csv(temporary, index=False)
    try:
        import openpyxl  # noqa: F401  (optional: pandas' xlsx writer)
    except ImportError:
        pass
    else:
        written.append(out_dir / INFER_FILES[2])
        with atomic_path(written[-1]) as temporary:
            table.to_excel(temporary, index=False, engine="openpyxl")
    confusion = confusion_matrix(labels, predicted, labels=range(probabilities.shape[1]))
    written.append(plot_confusion_matrix(confusion, list(class_names) if class_names is not None else None,
                                         out_dir / INFER_FILES[3], title=f"Confusion Matrix acc = {top1_pct:.2f}%"))
    return written


def write_head_reports(results: dict, out_dir: str | os.PathLike, class_names: Sequence[str] | None,
                       checkpoint: str | os.PathLike) -> list[str]:
    """For an evaluated multi-head model (PIM): ``eval_results.txt`` and ``heads.json`` of every
    head (:func:`gaze.engine.heads.report_heads`, test only) and infer.py's files of its logits
    (:func:`write_infer_files`), named after ``checkpoint``'s run; returns the summary lines
    ([] and nothing written for a one-head model)."""
    project, experiment = checkpoint_run_names(checkpoint)
    lines = report_heads(results, None, out_dir, project, experiment)
    if lines:
        header = ["[Infer Results]", f"Project: {project}, Experiment: {experiment}"]
        write_infer_files(results, out_dir, class_names, header)
    return lines
