"""Per-fold GG-CAM-style artefacts, the cross-validation summary and Grad-CAM panels of a CXR run.

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
from torch import nn

from cxr.dataset import CXREyeDataset
from gaze.atomic import atomic_path
from gaze.engine.fit import plain_config
from gaze.engine.logging import read_metrics
from gaze.viz.panels import first_batch, write_cam_panels
from gaze.viz.plots import plot_training_curves

#: Fold metrics (classification_report.json key -> column), all on the fold's test images.
FOLD_METRICS = {"top1": "accuracy", "macro_f1": "macro_f1", "weighted_f1": "weighted_f1",
                "roc_auc_ovr": "auc_ovr", "roc_auc_ovo": "auc_ovo"}


def _write_json(path: Path, value: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2) + "\n")


def write_fold_artefacts(model: nn.Module, config: dict, fold_dir: Path, k: int, summary: dict) -> dict:
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
        "model": config["model"], "backbone": config["backbone"], "fold": k,
        "total_param": int(sum(p.numel() for p in model.parameters())),
        "best_epoch": summary["best_epoch"], "select_metric": summary["select_metric"],
        "config": plain_config(config), "history": metrics.to_dict(orient="list"),
    }
    if config["model"] == "ggcam":
        params.update(cam_target=config["cam_target"], use_gaze=config["ggcam_use_gaze"],
                      sigma_ce=float(model.log_sigma_ce.exp()), sigma_gaze=float(model.log_sigma_gaze.exp()))
    _write_json(fold_dir / "params.json", params)
    return fold_row(k, summary["best_epoch"], report)


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
    for column in FOLD_METRICS.values():
        values = pd.to_numeric(table[column], errors="coerce").dropna().to_numpy(dtype=float)
        stats[column] = {"mean": float(values.mean()) if len(values) else None,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0 if len(values) else None,
                         "folds": int(len(values))}
    summary = {"model": config["model"], "backbone": config["backbone"], "split": config["split"], "protocol": config["protocol"],
               "rseed": config["rseed"], "select_on_test": config["select_on_test"], "folds": len(table),
               "metrics": stats, "run_dir": str(out_dir)}
    _write_json(out_dir / "cv_summary.json", summary)
    selection = "TEST fold (optimistic, as published)" if config["select_on_test"] else "validation patients"
    lines = [f"{config['model']} ({config['backbone']}, {config['split']}, {len(table)} run(s), "
             f"best epoch on {selection}) -> {out_dir}"]
    for column, label, scale in (("accuracy", "accuracy (%)", 1.0), ("auc_ovr", "macro AUC (OvR)", 1.0),
                                 ("macro_f1", "macro F1", 1.0)):
        value = stats[column]
        if value["mean"] is not None:
            lines.append(f"  {label:16s} {value['mean'] * scale:.3f} +- {value['std'] * scale:.3f}")
    return "\n".join(lines)


def write_gcam_panels(model: nn.Module, config: dict, dataset: CXREyeDataset, out_dir: Path, count: int) -> list[Path]:
    """Grad-CAM panels of the first ``count`` images of ``dataset`` (KFN: one CAM per branch).

    Published (cxr §2.5): ``viz_plots/TwoBranch_<dicom_id>.png`` with image, gaze overlay and
    both branch CAMs, for KFN on fold 0; here for every model and fold that asks.
    """
    if count <= 0 or len(dataset) == 0:
        return []
    with_gaze = CXREyeDataset(dataset.catalogue, dataset.rows[:count], dataset.transform, True, dataset.draft_size)
    if config["model"] == "kfn":
        layers, prefix = {"CAM image branch": "image_backbone", "CAM gaze branch": "gaze_backbone"}, "TwoBranch_"
    else:
        layers, prefix = {f"Grad-CAM ({config['model']})": None}, f"{config['model']}_"
    return write_cam_panels(model, first_batch(with_gaze, count), dataset.classes, out_dir,
                            pass_gaze=config["model"] == "kfn", layers=layers, prefix=prefix,
                            mean=dataset.transform.mean, std=dataset.transform.std)
