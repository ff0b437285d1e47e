"""Benchmark: does radiologist gaze help? Baseline vs GAT vs KFN vs GG-CAM on synthetic CXR-Eye.

    python bench/cxr_gaze_benefit.py [--methods baseline gat kfn ggcam ggcam_equal] [--epochs 6]
                                     [--images_per_class 100] [--input_size 112] [--keep DIR]

Every method is trained by ``cxr.train.main`` on the same 5 patient-disjoint folds (HAFC's
chunking, rseed 1; validation patients carved from each fold's training patients choose the
best epoch) with the SAME budget: backbone (EfficientNet-Lite0) and its ImageNet weights,
input size, batch size, epochs, optimiser (Adam) and learning rate, seed. Methods:

* ``baseline``: backbone + Linear, cross-entropy, no gaze;
* ``gat``: + cross-entropy on 9 gaze-picked windows from epoch 2 (cxr.md §2.3);
* ``kfn``: image branch + gaze-masked-image branch, both from ImageNet (cxr.md §2.4);
* ``ggcam``: the CAM network with GG-CAM's uncertainty-weighted CE + CAM-gaze MSE and its
  published initial log-sigmas (7, -16: a CE weight of 8e-7 at the start, cxr.md §3.4);
* ``ggcam_equal``: the same with both log-sigmas starting at 0 (CE and MSE weighted 1 and 1/2),
  because the published curriculum needs ~1000+ steps to hand over to the CE.

GG-CAM is selected on its whole validation loss (its own rule); the others on validation
accuracy. The data are the synthetic CXR-Eye miniature of :mod:`gaze.synthetic.cxr` (seed 0).
The table gives test accuracy and macro ROC-AUC (one-vs-rest) mean +- sample std over the
5 folds, the mean paired accuracy difference to the baseline, and the wall time per method.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from cxr.train import main as train_main
from gaze.synthetic.cxr import make_synthetic_cxr_eye

METHODS = {
    "baseline": ["--model_type=baseline"],
    "gat": ["--model_type=gat"],
    "kfn": ["--model_type=kfn"],
    "ggcam": ["--model_type=ggcam"],
    "ggcam_equal": ["--model_type=ggcam", "--log_sigma_ce=0.0", "--log_sigma_gaze=0.0"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images_per_class", type=int, default=100)
    parser.add_argument("--input_size", type=int, default=112)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam, constant (every method)")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--pretrain_path", default="package:efficientnet-lite0", help="'None' for random init")
    parser.add_argument("--keep", type=Path, default=None, help="write data and runs here and keep them")
    return parser.parse_args(argv)


def run_method(name: str, args: argparse.Namespace, data: Path, runs: Path) -> tuple[pd.DataFrame, float]:
    """Train the 5 folds of one method; return its cv_metrics.csv and the wall time (s)."""
    overrides = [
        *METHODS[name], f"--mimic_root={data / 'mimic-cxr-jpg'}", f"--egd_dir={data / 'egd-cxr'}",
        f"--backbone={args.backbone}", f"--pretrain_path={args.pretrain_path}", f"--input_size={args.input_size}",
        f"--batch_size={args.batch_size}", f"--end_epoch={args.epochs}", f"--init_lr={args.lr}",
        "--lr_schedule='constant'", "--early_stop_patience=None", f"--model_path={runs}", f"--model_name={name}",
    ]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if train_main(overrides) != 0:
            raise RuntimeError(f"{name}: cxr/train.py failed with {overrides}")
    return pd.read_csv(runs / name / "cv_metrics.csv"), time.perf_counter() - start


def table(results: dict[str, tuple[pd.DataFrame, float]]) -> str:
    """Markdown table: accuracy and macro AUC mean +- std over folds, paired difference, time."""
    lines = ["| method | test accuracy (%) | macro AUC (OvR) | accuracy - baseline (paired) | time (min) |",
             "| --- | --- | --- | --- | --- |"]
    baseline = results.get("baseline", (None, 0))[0]
    for name, (metrics, seconds) in results.items():
        accuracy, auc = metrics["accuracy"], metrics["auc_ovr"]
        paired = "—"
        if baseline is not None and name != "baseline":
            difference = accuracy.to_numpy() - baseline["accuracy"].to_numpy()
            paired = f"{difference.mean():+.2f} +- {difference.std(ddof=1):.2f}"
        lines.append(f"| {name} | {accuracy.mean():.2f} +- {accuracy.std(ddof=1):.2f} | "
                     f"{auc.mean():.3f} +- {auc.std(ddof=1):.3f} | {paired} | {seconds / 60:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="cxr_gaze_benefit_"))
    data = work / "synthetic_cxr"
    try:
        make_synthetic_cxr_eye(data, images_per_class=args.images_per_class, seed=0)
        results = {}
        for name in args.methods:
            results[name] = run_method(name, args, data, work / "runs")
            print(f"{name}: {results[name][0]['accuracy'].mean():.2f}% mean over 5 folds "
                  f"({results[name][1] / 60:.1f} min)", flush=True)
        print(f"\n{datetime.now():%Y-%m-%d}, {platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads; {args.backbone} {args.input_size} px, {args.epochs} epochs, "
              f"Adam {args.lr}, batch {args.batch_size}; synthetic CXR-Eye {3 * args.images_per_class} images, "
              "5-fold CV by patient (rseed 1), best epoch on validation patients\n")
        print(table(results))
        summary = {name: json.loads((work / "runs" / name / "cv_summary.json").read_text())["metrics"]
                   for name in results}
        (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
