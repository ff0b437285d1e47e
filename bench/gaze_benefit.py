"""Benchmark: does human attention help? Baseline vs GAT vs KFN on the synthetic CUB set.

    python bench/gaze_benefit.py [--seeds 3] [--epochs 20 5] [--train_per_class 5 30]
                                 [--methods baseline gat kfn [kfn_gat]] [--input_size 128]
                                 [--backbone tf_efficientnet_lite0] [--keep DIR]

Every method is trained by ``cub.train.main`` with ``--key=value`` overrides and the SAME
budget: backbone and its ImageNet weights, input size, batch size, optimiser, learning rate
and schedule, epochs; and the same seeds (config ``seed``: the validation split carved
from the training images, the initialisation of the new layers, the shuffling and the
augmentation). Methods:

* ``baseline``: the backbone + Linear, cross-entropy, no gaze;
* ``gat``: + the cross-entropy on gaze-picked windows from epoch 2 (cub_pim.md §1.5);
* ``kfn``: image branch + gaze-masked-image branch from ImageNet (cub_pim.md §1.6);
* ``kfn_gat``: KFN with both branches from the GAT run of the same seed (the paper's
  strongest setting; costs a GAT and a KFN run).

The data are the synthetic CUB-layout set of :func:`gaze.synthetic.cub.make_synthetic_cub` (fixed
images, generator seed 0; classes differ only in three small parts, the simulated gaze
falls mostly on them), one set per ``--train_per_class`` value K with ``--test_per_class``
test images per class; ``--val_fraction`` of the K training images per class are held out
for model selection (the best validation epoch is tested). ``--epochs`` takes one value
for every K or one per K (fewer images per class -> fewer steps per epoch, so the small
sets get more epochs by default). The table gives test top-1 mean +- sample std over the
seeds, the mean paired difference to the baseline, and the mean wall time per run.
Runs go to a temporary folder (``--keep DIR`` keeps them there instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from seeded_runs import mean_std

from cub.train import main as train_main
from gaze.synthetic.cub import make_synthetic_cub

METHODS = ("baseline", "gat", "kfn", "kfn_gat")
#: Written by cub/train.py in every run directory: best epoch, val and test metrics.
SUMMARY = "summary.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (config 'seed')")
    parser.add_argument("--train_per_class", type=int, nargs="+", default=[5, 30],
                        help="official training images per class K (a sweep); val is carved from them")
    parser.add_argument("--epochs", type=int, nargs="+", default=[20, 5],
                        help="epochs: one value for every K, or one per K")
    parser.add_argument("--methods", nargs="+", default=["baseline", "gat", "kfn"], choices=METHODS)
    parser.add_argument("--num_classes", type=int, default=10, help="synthetic species")
    parser.add_argument("--test_per_class", type=int, default=30)
    parser.add_argument("--val_fraction", type=float, default=0.2,
                        help="share of the training images held out for model selection (>= 1 per class)")
    parser.add_argument("--input_size", type=int, default=128)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--pretrain_path", default="package:efficientnet-lite0", help="'none' for random init")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.01, help="init_lr (cosine schedule, SGD momentum 0.9)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: in process, maps cached)")
    parser.add_argument("--keep", type=Path, default=None, help="write the runs here and keep them")
    args = parser.parse_args(argv)
    if len(args.epochs) not in (1, len(args.train_per_class)):
        parser.error("--epochs takes one value, or one per --train_per_class value")
    if "kfn_gat" in args.methods and "gat" not in args.methods:
        args.methods.insert(args.methods.index("kfn_gat"), "gat")  # kfn_gat starts from the GAT run
    return args


@dataclass
class RunResult:
    """One training run: where, test and val top-1 (%), best epoch, wall seconds."""

    method: str
    train_per_class: int
    seed: int
    test_top1: float
    val_top1: float
    best_epoch: int
    seconds: float


def overrides(args: argparse.Namespace, root: Path, epochs: int, seed: int) -> list[str]:
    """The ``--key=value`` items shared by every method of one (K, seed)."""
    pretrain = None if args.pretrain_path.lower() == "none" else args.pretrain_path
    return [
        f"--root={root}", f"--num_classes={args.num_classes}", f"--val_fraction={args.val_fraction}",
        f"--backbone={args.backbone}", f"--pretrain_path={pretrain!r}", f"--input_size={args.input_size}",
        f"--batch_size={args.batch_size}", f"--init_lr={args.lr}", f"--end_epoch={epochs}",
        f"--seed={seed}", f"--workers={args.workers}", "--cam_images=0", "--resume=False",
    ]


def method_overrides(method: str, gat_run: Path | None) -> list[str]:
    """What distinguishes the method: model_type, and the GAT checkpoint for kfn_gat."""
    if method == "kfn_gat":
        return ["--model_type=kfn", f"--GAT_pretrained={gat_run / 'ckpt_best.pt'}"]
    return [f"--model_type={method}"]


def train_once(argv: list[str], run: Path) -> dict:
    """``cub.train.main(argv)`` with its console output in ``<run>.log``; returns summary.json."""
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.with_suffix(".log"), "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        status = train_main(argv)
    if status != 0:
        raise RuntimeError(f"cub/train.py {' '.join(argv)} exited with {status}; see {run.with_suffix('.log')}")
    return json.loads((run / SUMMARY).read_text())


def run_method(args, method: str, k: int, seed: int, base: list[str], runs: Path) -> RunResult:
    """Train one method for one (K, seed); checkpoints are deleted unless ``--keep``."""
    name = f"k{k}_seed{seed}_{method}"
    gat_run = runs / f"k{k}_seed{seed}_gat"
    argv = base + method_overrides(method, gat_run) + [f"--model_path={runs}", f"--model_name={name}"]
    start = time.perf_counter()
    summary = train_once(argv, runs / name)
    seconds = time.perf_counter() - start
    if args.keep is None and method != "gat":
        shutil.rmtree(runs / name, ignore_errors=True)
    result = RunResult(method, k, seed, summary["test"]["top1"], summary["val"]["top1"], summary["best_epoch"], seconds)
    print(f"  K={k:<3} seed {seed}  {method:<9} test top-1 {result.test_top1:6.2f}%  "
          f"(val {result.val_top1:6.2f}%, best epoch {result.best_epoch})  {seconds:6.1f} s", flush=True)
    return result


def make_data(folder: Path, args: argparse.Namespace, k: int) -> Path:
    """The synthetic set with K training and ``test_per_class`` test images per class."""
    return make_synthetic_cub(folder / f"synthetic_cub_k{k}", num_classes=args.num_classes, train_per_class=k,
                              test_per_class=args.test_per_class, seed=0)


def print_table(results: list[RunResult], args: argparse.Namespace) -> None:
    """Per K and method: test top-1 mean +- std, paired difference to the baseline, time per run."""
    print(f"\n{'K/class':>7}  {'epochs':>6}  {'method':<9}  {'test top-1 (%)':>16}  "
          f"{'vs baseline (pp)':>17}  {'val top-1 (%)':>16}  {'s/run':>6}")
    for k, epochs in zip(args.train_per_class, epochs_per_k(args)):
        rows = [r for r in results if r.train_per_class == k]
        baseline = {r.seed: r.test_top1 for r in rows if r.method == "baseline"}
        for method in args.methods:
            mine = [r for r in rows if r.method == method]
            if not mine:
                continue
            paired = [r.test_top1 - baseline[r.seed] for r in mine if r.seed in baseline]
            difference = mean_std(paired) if paired and method != "baseline" else ""
            print(f"{k:>7}  {epochs:>6}  {method:<9}  {mean_std([r.test_top1 for r in mine]):>16}  "
                  f"{difference:>17}  {mean_std([r.val_top1 for r in mine]):>16}  "
                  f"{statistics.mean(r.seconds for r in mine):>6.0f}")


def epochs_per_k(args: argparse.Namespace) -> list[int]:
    """One epoch count per K."""
    return args.epochs * len(args.train_per_class) if len(args.epochs) == 1 else list(args.epochs)


def print_setting(args: argparse.Namespace, seconds: float) -> None:
    """The budget shared by every run, and the total wall time."""
    val = args.val_fraction
    print(f"\nsetting: synthetic CUB, {args.num_classes} classes, K training images per class "
          f"({val:.0%} of them held out for validation), {args.test_per_class} test images per class; "
          f"{args.backbone} ({args.pretrain_path}), {args.input_size} px, batch {args.batch_size}, "
          f"SGD lr {args.lr} cosine, epochs {dict(zip(args.train_per_class, epochs_per_k(args)))} per K; "
          f"seeds 0..{args.seeds - 1}; {torch.get_num_threads()} threads, {platform.machine()} CPU; "
          f"wall time {seconds / 60:.1f} min ({datetime.now():%Y-%m-%d})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="gaze-benefit-") as temporary:
        folder = args.keep or Path(temporary)
        for k, epochs in zip(args.train_per_class, epochs_per_k(args)):
            root = make_data(folder, args, k)
            for seed in range(args.seeds):
                base = overrides(args, root, epochs, seed)
                for method in args.methods:  # interleaved: machine load hits every method alike
                    results.append(run_method(args, method, k, seed, base, folder / "runs"))
    print_table(results, args)
    print_setting(args, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
