"""Evaluate the fold checkpoints of a CXR-Eye run (ours or HAFC's ``<k>_fold/best.pth``) on their test folds.

    python cxr/evaluate.py --model_type=gat                                   # this config's run
    python cxr/evaluate.py --model_type=kfn --checkpoint_dir=checkpoint/kfn_crossv-True_rseed1 \\
        --mimic_root=/data/mimic-cxr-jpg --egd_dir=/data/egd-cxr/1.0.0 --input_size=224 \\
        --backbone=efficientnet_b0 --gcam_viz=True                       # the released HAFC folds

The test folds come from ``<checkpoint_dir>/splits.csv`` when the run wrote one, else from the
config's protocol and rseed (HAFC checkpoints need the rseed they were trained with; 1 in
the paper). Writes ``<eval_dir>/fold<k>/`` reports (classification_report.json,
predictions.csv, classification_results.csv, confusion_matrix.png, with --gcam_viz=True
viz_plots/) and ``cv_metrics.csv`` / ``cv_summary.json``; prints mean +- std.
"""

from __future__ import annotations

import sys

from torch.utils.data import DataLoader

from cxr.experiment import (
    assessments,
    build_catalogue,
    build_dataset,
    build_model,
    fold_checkpoint,
    human_attention,
    load_cxr_config,
    needs_gaze,
    resolve_path,
    run_dir,
    run_names,
    run_split_table,
)
from cxr.reports import (
    fold_row,
    write_classification_results,
    write_cv_summary,
)
from gaze.config import config_or_report
from gaze.engine.dist import resolve_device
from gaze.engine.evaluate import evaluate
from gaze.engine.importers import load_model_checkpoint
from gaze.engine.logging import report_logger
from gaze.models import model_class
from gaze.viz.attention import write_attention_evaluation
from gaze.viz.panels import write_cam_panels
from gaze.viz.reports import write_reports


def main(argv: list[str] | None = None) -> int:
    config = config_or_report(load_cxr_config, argv)
    if config is None:
        return 2
    checkpoint_dir = resolve_path(config["checkpoint_dir"]) if config["checkpoint_dir"] else run_dir(config)
    out_dir = resolve_path(config["eval_dir"]) if config["eval_dir"] else checkpoint_dir / "evaluation"
    catalogue = build_catalogue(config)
    table = run_split_table(config, catalogue, checkpoint_dir)
    device = resolve_device(config["device"])
    human, verdicts = human_attention(config, catalogue), assessments(config, catalogue)
    rows = []
    for k, name in run_names(config, table):
        model = build_model({**config, "pretrained_dir": None, "init_from": None, "pretrain_path": None}, k)
        checkpoint = fold_checkpoint(checkpoint_dir, k, name, model_class(config["model_type"]).phases)
        load_model_checkpoint(model, checkpoint)
        model.to(device).eval()
        test_rows = table.index[table[f"split_{k}"] == "test"].to_numpy()
        dataset = build_dataset(config, catalogue, test_rows, "test", needs_gaze(config, "test"), human)
        results = evaluate(model, DataLoader(dataset, batch_size=config["batch_size"], num_workers=config["workers"]),
                           device, protocol=config["eval_protocol"])
        fold_dir = out_dir / name
        report = write_reports(results, fold_dir, dataset.class_names)
        write_classification_results(fold_dir)
        if config["gcam_viz"]:
            write_cam_panels(model, dataset.with_attention(), config["cam_images"], fold_dir / "viz_plots")
        attention = ""
        if "attention_iou" in results["sample_metrics"]:  # GRADIA's files and overlays (A7-A8)
            attention = "; " + write_attention_evaluation(model, results, dataset, fold_dir, config["cam_images"], "test",
                                                          verdicts)
        report_logger().info(f"{checkpoint}: {name} accuracy {report['top1']:.2f}% on {report['num_samples']} test images"
                             f"{attention} (protocol {results['protocol']!r})")
        rows.append(fold_row(k, None, report))
    out_dir.mkdir(parents=True, exist_ok=True)
    report_logger().info(write_cv_summary(rows, config, out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
