"""Train any registered model (GAT, KFN, GG-CAM, the baseline, ...) on CXR-Eye with patient-level cross-validation.

    python cxr/train.py                                    # the synthetic CPU demo: GAT, 5 folds
    python cxr/train.py --model_type=kfn --pretrained_dir=runs/cxr/gat_cv_rseed1   # KFN from the GAT folds
    python cxr/train.py --model_type=ggcam --backbone=resnet50  # GG-CAM (ResNet-50, from scratch)
    python cxr/train.py cxr/configs/hafc_gat.py --mimic_root=/data/mimic-cxr-jpg --egd_dir=/data/egd-cxr/1.0.0

Loads cxr/config.py, then override files, then --key=value. Joins master sheet, images and
gaze (printing what matched), writes the patient-disjoint splits to <run>/splits.csv, then
trains every fold in <run>/fold<k>/ with the best epoch chosen on validation patients
carved from the fold's training patients (``select_on_test=True`` reproduces the papers'
selection on the test fold, with a warning). Per fold: the engine's files (config.json,
metrics.csv, ckpt_best.pt, classification_report.json with accuracy, macro/weighted F1 and
ROC-AUC OvR/OvO, predictions.csv, confusion_matrix.png) plus the GG-CAM artefacts
(classification_results.csv with dicom_id, label and probabilities; NET.pt;
training_process.png; params.json) and, with --gcam_viz=True, Grad-CAM panels in viz_plots/.
At the end: cv_metrics.csv and cv_summary.json (mean +- std over folds), printed. GRADIA
runs fold<k>/phase1/ and fold<k>/phase2/; with --ratings each fold's phase 2 trains on its
training images plus its rated validation images (fold<k>/p2_train.csv).
A killed run continues where it stopped when started again with the same config.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cxr.experiment import (
    build_catalogue,
    build_model,
    load_cxr_config,
    phase_loaders,
    run_dir,
    run_names,
    saved_split_table,
)
from cxr.reports import write_cv_summary, write_fold_artefacts
from gaze.config import config_or_report
from gaze.engine.dist import barrier, distributed_session, is_main_process
from gaze.engine.fit import train_model
from gaze.engine.logging import report_logger
from gaze.viz.panels import write_cam_panels


def main(argv: list[str] | None = None) -> int:
    config = config_or_report(load_cxr_config, argv)
    if config is None:
        return 2
    with distributed_session(config["device"], config["dist_timeout_minutes"]):  # one process group for every fold
        return train_folds(config)


def train_folds(config: dict) -> int:
    """Every run of the protocol, then the cross-validation summary (rank 0 writes)."""
    catalogue = build_catalogue(config)
    out_dir = run_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = saved_split_table(config, catalogue, out_dir)
    barrier()  # rank 0 has written splits.csv
    fold_results = []
    for k, name in run_names(config, table):
        if is_main_process():
            report_logger().info(f"--- {config['model_type']} {name} ({config['split']}, rseed {config['rseed']})")
        loaders, per_phase = phase_loaders(config, catalogue, table, k, out_dir / name)
        model = build_model(config, k)
        summary = train_model(model, loaders, config, out_dir / name, per_phase)
        fold_dir = Path(summary["run_dir"])  # the fold's folder; a phased method's last phase
        if is_main_process():
            fold_results.append(write_fold_artefacts(model, config, fold_dir, k, summary))
            if config["gcam_viz"]:
                write_cam_panels(model, loaders["test"].dataset.with_attention(), config["cam_images"], fold_dir / "viz_plots")
    if is_main_process():
        report_logger().info(write_cv_summary(fold_results, config, out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
