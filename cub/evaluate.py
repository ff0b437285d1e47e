"""Evaluate a checkpoint (ours or the released GAT/KFN best.pth) on the CUB test split.

    python cub/evaluate.py --checkpoint=runs/cub/gat_demo/ckpt_best.pt
    python cub/evaluate.py --checkpoint=gat/best/best.pth --root=/data/CUB_200_2011 \\
        --num_classes=200 --GHA_dir=CUB_GHA/All_Fixation

The model (type, backbone, classes, input size) comes from the checkpoint; data keys come
from cub/config.py and the overrides. Protocol: resize the shorter side to input_size,
centre crop, one view (no TTA). Writes to <eval_dir> (default: <checkpoint folder>/evaluation):
classification_report.json (top-1/top-5, per-class accuracy, F1, ROC-AUC), predictions.csv,
confusion_matrix.png and Grad-CAM panels next to the human attention in cam/; for GRADIA also
img_fns.json, misclassified.json, IOU.json, attention/<id>.png overlays and, with
--assessments=<file> (people's verdicts on this model's attention: GRADIA's list of
{"img", "label"} or a reasonablity_test.json), reasonablity_test.json and the matrix; for PIM
(ours or FGVC-PIM's backup/best.pt) every head's accuracy in eval_results.txt and infer.py's
infer_results.txt, infer_predictions.csv (+ .xlsx with openpyxl) and infer_cm.png.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from cub.experiment import (
    assessments,
    build_dataset,
    build_model,
    data_root,
    human_attention,
    load_cub_config,
    needs_gaze,
    panel_dataset,
    resolve_path,
)
from gaze.config import config_or_report, evaluated_config
from gaze.engine.checkpoint import best_checkpoint
from gaze.engine.dist import resolve_device
from gaze.engine.evaluate import evaluate, format_model_metrics, protocol_lines, protocol_scores
from gaze.engine.importers import import_checkpoint, load_model_checkpoint
from gaze.engine.logging import report_logger
from gaze.models import model_class
from gaze.viz.attention import write_attention_evaluation, write_attention_visuals
from gaze.viz.panels import first_batch, write_cam_panels
from gaze.viz.reports import write_head_reports, write_reports


def load_evaluated_model(config: dict[str, Any], checkpoint_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's model with its weights; the config updated with the keys that define
    the network (those its class reads, ``config_keys_read``) as the checkpoint saved them."""
    checkpoint = import_checkpoint(checkpoint_path)
    config = {**evaluated_config(config, checkpoint), "GAT_pretrained": None}
    model = build_model(config)
    load_model_checkpoint(model, checkpoint)
    return model, config


def main(argv: list[str] | None = None) -> int:
    config = config_or_report(load_cub_config, argv)
    if config is None:
        return 2
    checkpoint_path = resolve_path(config["checkpoint"] or str(best_checkpoint(Path(config["model_path"]) / config["model_name"],
                                                                model_class(config["model_type"]).phases)))
    model, config = load_evaluated_model(config, checkpoint_path)
    device = resolve_device(config["device"])
    model.to(device).eval()
    root = data_root(config)
    human = human_attention(config, root)
    test_set = build_dataset(config, root, "test", with_gaze=needs_gaze(config, "test"), human=human)
    loader = DataLoader(test_set, batch_size=config["batch_size"], num_workers=config["workers"])
    results = evaluate(model, loader, device, protocol=config["eval_protocol"])
    out_dir = resolve_path(config["eval_dir"]) if config["eval_dir"] else checkpoint_path.parent / "evaluation"
    report = write_reports(results, out_dir, test_set.class_names)
    panels = panel_dataset(config, human)
    write_cam_panels(model, panels, config["cam_images"], out_dir / "cam")
    if config["cam_images"] > 0:  # CAL / WS-DAN: their attention maps, crops and drops as infer.py draws them
        write_attention_visuals(model, first_batch(panels, config["cam_images"]), out_dir / "attention_maps",
                                panels.transform.mean, panels.transform.std)
    attention = ""
    if "attention_iou" in results["sample_metrics"]:  # GRADIA's files and overlays (A7-A8)
        attention = "; " + write_attention_evaluation(model, results, panels, out_dir, config["cam_images"], "test",
                                                      assessments(config, root))
    for line in write_head_reports(results, out_dir, test_set.class_names, checkpoint_path):  # PIM: every head, infer.py's files
        report_logger().info(f"{checkpoint_path}: test, {line}")
    for line in protocol_lines(protocol_scores(model, loader, device)):
        report_logger().info(f"{checkpoint_path}: test, {line}")
    report_logger().info(
        f"{checkpoint_path}: {config['model_type']} on {results['num_samples']} test images: "
        f"top-1 {report['top1']:.2f}%, top-5 {report['top5']:.2f}%{format_model_metrics(results)}{attention} "
        f"(resize + centre crop {config['input_size']} px, protocol {results['protocol']!r}) -> {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
