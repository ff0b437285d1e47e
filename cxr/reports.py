"""Per-fold GG-CAM-style artefacts and the cross-validation summary of a CXR run.

The GG-CAM repository writes, per run (cxr.md §3.6): ``classification_report.json``
(accuracy, macro/weighted F1, ROC-AUC OvR/OvO), ``classification_results.csv`` (label and
probabilities; we add the ``dicom_id`` it lacked), ``NET.pt``, ``training_process.png`` and
``params_*.txt``; HAFC prints the mean cross-validation accuracy (§2.7). We write all of them
per fold, and ``cv_metrics.csv`` / ``cv_summary.json`` with mean +- std over folds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from gaze.atomic import atomic_path
from gaze.engine.checkpoint import plain_config
from gaze.engine.evaluate import model_metrics
from gaze.engine.logging import read_metrics
from gaze.models.base import GazeModel
from gaze.viz.plots import plot_training_curves

#: Fold metrics (classification_report.json key -> column), all on the fold's test images.
FOLD_METRICS = {"top1": "accuracy", "macro_f1": "macro_f1", "weighted_f1": "weighted_f1",
                "roc_auc_ovr": "auc_ovr", "roc_auc_ovo": "auc_ovo"}


def _write_json(path: Path, value: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2) + "\n")


def write_fold_artefacts(model: GazeModel, config: dict, fold_dir: Path, k: int, summary: dict) -> dict:
    """NET.pt, classification_results.csv, training_process.png, params.json of a fitted fold.

    Returns:
        the fold's row of ``cv_metrics.csv``: fold, best_epoch, test images, accuracy (%),
        macro/weighted F1 and ROC-AUC OvR/OvO (fractions).
    """
    with atomic_path(fold_dir / "NET.pt") as temporary:  # the best weights (fit reloads them at the end)
        torch.save(model.state_dict(), temporary)
    write_classification_results(fold_dir)
    metrics = read_metrics(fold_dir / "metrics.csv")
    plot_training_curves(metrics, fold_dir / "training_process.png")
    report = json.loads((fold_dir / "classification_report.json").read_text())
    params = {
        "model": config["model_type"], "backbone": config["backbone"], "fold": k,
        "total_param": int(sum(p.numel() for p in model.parameters())),
        "best_epoch": summary["best_epoch"], "select_metric": summary["select_metric"],
        "config": plain_config(config), "history": metrics.to_dict(orient="list"),
    }
    params.update(model.describe())
    _write_json(fold_dir / "params.json", params)
    row = fold_row(k, summary["best_epoch"], report)
    row.update(model_metrics(summary["test"] or {}))
    return row


def write_classification_results(fold_dir: Path) -> Path:
    """GG-CAM's ``classification_results.csv`` (dicom_id, label, probabilities) from ``predictions.csv``."""
    predictions = pd.read_csv(fold_dir / "predictions.csv", dtype={"id": str})
    results = predictions.drop(columns="prediction").rename(columns={"id": "dicom_id"})
    with atomic_path(fold_dir / "classification_results.csv") as temporary:
        results.to_csv(temporary, index=False)
    return fold_dir / "classification_results.csv"


def fold_row(k: int, best_epoch: int | None, report: dict) -> dict:
    """The ``cv_metrics.csv`` row of run ``k`` from its test ``classification_report.json`` dict."""
    row = {"fold": k, "best_epoch": best_epoch, "test_images": report["num_samples"]}
    row.update({column: report[key] for key, column in FOLD_METRICS.items()})
    return row


def write_cv_summary(rows: Sequence[dict], config: dict, out_dir: Path) -> str:
    """cv_metrics.csv (a row per fold) and cv_summary.json (mean, std); returns the printed text."""
    table = pd.DataFrame(list(rows))
    with atomic_path(out_dir / "cv_metrics.csv") as temporary:
        table.to_csv(temporary, index=False)
    stats = {}
    model_metrics = [column for column in table.columns if column not in ("fold", "best_epoch", "test_images",
                                                                          *FOLD_METRICS.values())]
    for column in [*FOLD_METRICS.values(), *model_metrics]:
        values = pd.to_numeric(table[column], errors="coerce").dropna().to_numpy(dtype=float)
        stats[column] = {"mean": float(values.mean()) if len(values) else None,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0 if len(values) else None,
                         "folds": int(len(values))}
    summary = {"model": config["model_type"], "backbone": config["backbone"], "split": config["split"],
               "protocol": config["protocol"], "eval_protocol": config["eval_protocol"],
               "rseed": config["rseed"], "select_on_test": config["select_on_test"], "folds": len(table),
               "metrics": stats, "run_dir": str(out_dir)}
    _write_json(out_dir / "cv_summary.json", summary)
    selection = "TEST fold (optimistic, as published)" if config["select_on_test"] else "validation patients"
    lines = [f"{config['model_type']} ({config['backbone']}, {config['split']}, {len(table)} run(s), "
             f"best epoch on {selection}, protocol {config['eval_protocol']!r}) -> {out_dir}"]
    labels = {"accuracy": "accuracy (%)", "auc_ovr": "macro AUC (OvR)", "macro_f1": "macro F1"}
    for column, label in [*labels.items(), *((column, column) for column in model_metrics)]:
        value = stats[column]
        if value["mean"] is not None:
            lines.append(f"  {label:16s} {value['mean']:.3f} +- {value['std']:.3f}")
    return "\n".join(lines)
