"""Train any registered model (GAT, KFN, GG-CAM, the baseline, ...) on CUB-200-2011 with CUB-GHA human attention.

    python cub/train.py                                   # the synthetic CPU demo (defaults)
    python cub/train.py --model_type=kfn --batch_size=8
    python cub/train.py cub/configs/gat_r50.py --root=/data/CUB_200_2011   # the paper's GAT
    torchrun --nproc_per_node=4 cub/train.py cub/configs/gat_r50.py         # DDP
    python cub/train.py --model_type=gradia --phase=2 --init_from=runs/cub/gradia_demo/phase1/ckpt_best.pt \
        --ratings=export/reasonablity_val.json --masks_dir=export/masks --model_name=gradia_rated

Loads cub/config.py, then override files, then --key=value (see `--help`); trains with the
best epoch chosen on a validation split carved from the training images, evaluates the
test split with it, and writes everything to <model_path>/<model_name>: config.json,
metrics.csv, ckpt_last.pt / ckpt_best.pt, training_curves.png, classification_report.json,
predictions.csv, confusion_matrix.png and Grad-CAM panels beside the human attention.
A multi-head model (PIM) also prints every head's validation and test accuracy and the head
chosen on VALIDATION, and writes eval_results.txt (PIM's layout) and heads.json.
GRADIA runs phase1/ and phase2/ in the run folder; with ratings, phase 2 trains on the
training images plus the rated validation images (p2_train.csv) and selects on the rest.
A killed run continues where it stopped when started again with the same config.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cub.experiment import (
    build_model,
    load_cub_config,
    panel_dataset,
    phase_loaders,
    run_dir,
)
from gaze.config import config_or_report
from gaze.engine.dist import is_main_process
from gaze.engine.evaluate import format_model_metrics, report_protocols
from gaze.engine.fit import train_model
from gaze.engine.heads import report_heads
from gaze.engine.logging import report_logger
from gaze.viz.panels import write_cam_panels


def selection(config: dict, summary: dict) -> str:
    """How the reported epoch was chosen, for the summary line."""
    if summary["val"] is None:
        return f"last epoch {summary['best_epoch']} (no validation split)"
    where = "the TEST set (select_on_test)" if config["select_on_test"] else "val"
    return f"best epoch {summary['best_epoch']} on {where} ({summary['val']['top1']:.2f}% top-1)"


def main(argv: list[str] | None = None) -> int:
    config = config_or_report(load_cub_config, argv)
    if config is None:
        return 2
    out_dir = run_dir(config)
    loaders, per_phase = phase_loaders(config, out_dir)
    model = build_model(config)
    summary = train_model(model, loaders, config, out_dir, per_phase)
    if is_main_process():
        write_cam_panels(model, panel_dataset(config, loaders["test"].dataset.human), config["cam_images"],
                         out_dir / "cam")
        for line in report_protocols(model, loaders["test"], next(model.parameters()).device, out_dir):
            report_logger().info(f"{config['model_type']} test, {line}")  # CAL: raw, raw+crop, cal_tta
        for line in report_heads(summary["test"], summary["val"], out_dir, Path(config["model_path"]).name,
                                 config["model_name"]):
            report_logger().info(f"{config['model_type']} {line}")  # PIM: layer1-4, combiner, highest-k
        test = summary["test"]
        report_logger().info(
            f"{config['model_type']} ({config['backbone']}, {config['input_size']} px): {selection(config, summary)}; "
            f"test top-1 {test['top1']:.2f}%, top-5 {test['top5']:.2f}%{format_model_metrics(test)} on {test['num_samples']} images "
            f"(protocol {summary['eval_protocol']!r}) -> {out_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
