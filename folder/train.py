"""Train any registered model on an ImageFolder dataset; GRADIA in its two phases by default.

    python folder/train.py                                          # the synthetic GRADIA-layout demo
    python folder/train.py --root=gender_data --attention_dir=. --backbone=resnet50 \\
        --pretrain_path=pretrained/resnet50-19c8e357.pth --input_size=224   # GRADIA's own data
    python folder/train.py --phase=2 --init_from=runs/folder/gradia/phase1/ckpt_best.pt \\
        --ratings=export/reasonablity_val.json --masks_dir=export/masks     # phase 2 from the app's answers
    python folder/train.py folder/configs/pim_demo.yaml                     # PIM from one of PIM's own YAML files

Loads folder/config.py, then override files, then --key=value (see `--help`). GRADIA: phase 1
(cross-entropy) in <run>/phase1/, then phase 2 (weighted CE + Grad-CAM-to-mask L1) from
phase 1's best weights in <run>/phase2/, on the training images plus the rated validation
images (<run>/p2_train.csv) and selected on the validation images left. Each phase writes
the engine's files; the last one also GRADIA's evaluation/ files (img_fns.json,
misclassified.json, IOU.json) and <run>/cam/ Grad-CAM panels beside the human masks. PIM
prints every head's accuracy and the head chosen on validation, and writes eval_results.txt
and heads.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from folder.experiment import answer_file, build_model, load_data, load_folder_config, phase_loaders, run_dir
from gaze.config import config_or_report
from gaze.engine.dist import is_main_process
from gaze.engine.evaluate import format_model_metrics, report_protocols
from gaze.engine.fit import train_model
from gaze.engine.heads import report_heads
from gaze.engine.logging import report_logger
from gaze.viz.panels import write_cam_panels


def main(argv: list[str] | None = None) -> int:
    config = config_or_report(load_folder_config, argv)
    if config is None:
        return 2
    data = load_data(config)
    out_dir = run_dir(config)
    loaders, per_phase = phase_loaders(config, data, out_dir)
    model = build_model(config, len(data.class_names))
    summary = train_model(model, loaders, config, out_dir, per_phase)
    if is_main_process():
        if data.human is not None:
            write_cam_panels(model, loaders["test"].dataset, config["cam_images"], out_dir / "cam")
        for line in report_protocols(model, loaders["test"], next(model.parameters()).device, out_dir):
            report_logger().info(f"{config['model_type']} test, {line}")  # CAL: raw, raw+crop, cal_tta
        for line in report_heads(summary["test"], summary["val"], out_dir, Path(config["model_path"]).name,
                                 config["model_name"]):
            report_logger().info(f"{config['model_type']} {line}")  # PIM: layer1-4, combiner, highest-k
        answer = answer_file(model, config, data, out_dir)
        if answer is not None:
            report_logger().info(f"answer.txt for the {len(data.unlabelled)} unlabelled test images -> {answer}")
        test = summary["test"]
        report_logger().info(
            f"{config['model_type']} ({config['backbone']}, {config['input_size']} px): best epoch "
            f"{summary['best_epoch']} on val; test top-1 {test['top1']:.2f}%{format_model_metrics(test)} on {test['num_samples']} images "
            f"(protocol {summary['eval_protocol']!r}) -> {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
