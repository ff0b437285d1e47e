"""Evaluate a checkpoint (ours or the released GAT/KFN best.pth) on the CUB test split.

    python cub/evaluate.py --checkpoint=runs/cub/gat_demo/ckpt_best.pt
    python cub/evaluate.py --checkpoint=gat/best/best.pth --root=/data/CUB_200_2011 \\
        --num_classes=200 --GHA_dir=CUB_GHA/All_Fixation

The model (type, backbone, classes, input size) comes from the checkpoint; data keys come
from cub/config.py and the overrides. Protocol: resize the shorter side to input_size,
centre crop, one view (no TTA). Writes to <eval_dir> (default: <checkpoint folder>/evaluation):
classification_report.json (top-1/top-5, per-class accuracy, F1, ROC-AUC), predictions.csv,
confusion_matrix.png and Grad-CAM panels next to the human attention in cam/.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from cub.experiment import (
    build_dataset,
    build_model,
    data_root,
    load_cub_config,
    resolve_path,
    write_cam_panels,
)
from gaze.config import ConfigError
from gaze.engine.dist import resolve_device
from gaze.engine.fit import evaluate
from gaze.engine.importers import import_checkpoint, load_model_checkpoint
from gaze.viz.reports import write_reports

#: Keys that define the network; an evaluated checkpoint's values replace the config's.
MODEL_KEYS = ("model_type", "backbone", "num_classes", "input_size", "dropout", "stride", "ratios",
              "N_list", "iou_threshs", "window_side")


def load_evaluated_model(config: dict[str, Any], checkpoint_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The checkpoint's model with its weights; the config updated with its model keys."""
    checkpoint = import_checkpoint(checkpoint_path)
    saved = checkpoint.get("config") or {}
    config = {**config, **{k: saved[k] for k in MODEL_KEYS if k in saved}}
    config.update(model_type=checkpoint["model_name"], pretrain_path=None, GAT_pretrained=None)
    model = build_model(config)
    load_model_checkpoint(model, checkpoint)
    return model, config


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_cub_config(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checkpoint_path = resolve_path(config["checkpoint"] or str(Path(config["model_path"]) / config["model_name"] / "ckpt_best.pt"))
    model, config = load_evaluated_model(config, checkpoint_path)
    device = resolve_device(config["device"])
    model.to(device).eval()
    test_set = build_dataset(config, data_root(config), "test", with_gaze=config["model_type"] == "kfn")
    loader = DataLoader(test_set, batch_size=config["batch_size"], num_workers=config["workers"])
    results = evaluate(model, loader, device)
    out_dir = resolve_path(config["eval_dir"]) if config["eval_dir"] else checkpoint_path.parent / "evaluation"
    report = write_reports(results, out_dir, test_set.class_names)
    write_cam_panels(model, config, out_dir / "cam", config["cam_images"])
    print(
        f"{checkpoint_path}: {config['model_type']} on {results['num_samples']} test images: "
        f"top-1 {report['top1']:.2f}%, top-5 {report['top5']:.2f}% "
        f"(resize + centre crop {config['input_size']} px, one view) -> {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
