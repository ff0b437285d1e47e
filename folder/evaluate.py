"""Evaluate a checkpoint on the test split of an ImageFolder dataset (GRADIA's ``--evaluate``, A7).

    python folder/evaluate.py                                      # this config's run (its last phase)
    python folder/evaluate.py --checkpoint=runs/folder/gradia/phase2/ckpt_best.pt \\
        --assessments=phase2_edit_attention_accuracy_test.json       # + the reasonability matrix
    python folder/evaluate.py folder/configs/CUB200_SwinT.yaml --checkpoint=records/CUB200-T2/T3000/backup/best.pt

Writes to <eval_dir> (default <checkpoint folder>/evaluation): classification_report.json,
predictions.csv, confusion_matrix.png, and with masks GRADIA's img_fns.json,
misclassified.json, IOU.json (threshold 0.75), attention/<id>.png overlays (BONE colour map
times the photo) and, with --assessments, reasonablity_test.json and the matrix. A PIM
checkpoint (ours, or FGVC-PIM's backup/best.pt, imported) also gets every head's accuracy
in eval_results.txt (PIM's layout) and infer.py's infer_results.txt, infer_predictions.csv
(id, label, prediction, score; infer_result.xlsx with openpyxl) and infer_cm.png.
"""

from __future__ import annotations

import sys

from torch.utils.data import DataLoader

from folder.experiment import (
    answer_file,
    build_dataset,
    build_model,
    load_data,
    load_folder_config,
    resolve_path,
    run_dir,
)
from gaze.attention.annotations import read_assessments
from gaze.config import config_or_report, evaluated_config
from gaze.engine.checkpoint import best_checkpoint
from gaze.engine.dist import resolve_device
from gaze.engine.evaluate import evaluate, report_protocols
from gaze.engine.importers import import_checkpoint, load_model_checkpoint
from gaze.engine.logging import report_logger
from gaze.models import model_class
from gaze.viz.attention import write_attention_evaluation, write_attention_visuals
from gaze.viz.panels import first_batch
from gaze.viz.reports import write_head_reports, write_reports


def main(argv: list[str] | None = None) -> int:
    config = config_or_report(load_folder_config, argv)
    if config is None:
        return 2
    path = resolve_path(config["checkpoint"]) if config["checkpoint"] else best_checkpoint(run_dir(config), model_class(config["model_type"]).phases)
    checkpoint = import_checkpoint(path)
    config = evaluated_config(config, checkpoint)
    data = load_data(config)
    model = build_model(config, len(data.class_names))
    load_model_checkpoint(model, checkpoint)
    device = resolve_device(config["device"])
    model.to(device).eval()
    test_set = build_dataset(config, data, data.samples["test"], train=False)
    loader = DataLoader(test_set, batch_size=config["batch_size"], num_workers=config["workers"])
    results = evaluate(model, loader, device, protocol=config["eval_protocol"])
    out_dir = resolve_path(config["eval_dir"]) if config["eval_dir"] else path.parent / "evaluation"
    report = write_reports(results, out_dir, data.class_names)
    line = f"{path}: test top-1 {report['top1']:.2f}% on {results['num_samples']} images"
    if "attention_iou" in results["sample_metrics"]:
        assessments = read_assessments(resolve_path(config["assessments"])) if config["assessments"] else None
        line += ", " + write_attention_evaluation(model, results, test_set, out_dir, config["cam_images"], "test",
                                                   assessments)
    report_logger().info(f"{line} (protocol {results['protocol']!r}) -> {out_dir}")
    if config["cam_images"] > 0:  # CAL / WS-DAN: their attention maps, crops and drops as infer.py draws them
        write_attention_visuals(model, first_batch(test_set, config["cam_images"]), out_dir / "attention_maps",
                                test_set.transform.mean, test_set.transform.std)
    for line in write_head_reports(results, out_dir, data.class_names, path):  # PIM: every head, infer.py's files
        report_logger().info(f"{path}: test, {line}")
    for protocol_line in report_protocols(model, loader, device, out_dir):
        report_logger().info(f"{path}: test, {protocol_line}")
    answer = answer_file(model, {**config, "answer_path": config["answer_path"] or str(out_dir / "answer.txt")}, data, out_dir)
    if answer is not None:
        report_logger().info(f"answer.txt for the {len(data.unlabelled)} unlabelled test images -> {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
