"""Benchmark: PIM's cost over its backbone per backbone and size, and baseline vs PIM vs gaze-guided PIM
on the synthetic CUB set.

    python bench/pim.py [--part cost|accuracy|all] [--rounds 3] [--seeds 3] [--demo_only]

(a) cost: one training step (forward, loss, backward, SGD step) of PIM on each backbone and of the
same backbone with a plain linear head (global average pool -> Linear(K)) — the baseline —
at the CPU demo size (EfficientNet-Lite0, 112 px, batch 16) and at the published sizes with
batch 1-2 (ResNet-50 at 448, Swin-L at 384 with the published stages after each patch merging,
ViT-B/16 at 448 with the class token, EfficientNet-B7 at 448 with the published features.4-7; 200 classes, PIM's
published fpn_size 1536 / 512 and selections). Each configuration runs in a fresh
process: the median step time over ``--rounds`` (after one warm-up step) and the process's peak
memory (CUDA: max_memory_allocated; CPU: peak resident set, torch included); ratio = PIM /
plain, so the ratio is what the FPN, selector and combiner add.

(b) accuracy: ``python cub/train.py`` with its defaults (the SYNTHETIC CUB set, EfficientNet-Lite0
at 112 px, 10 epochs, epoch and head chosen on validation) for the baseline, PIM and gaze-guided
PIM (``lambda_g=1``), seeds 0..N-1: test top-1 of the combiner and of the head chosen on
validation, mean +- std.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from seeded_runs import cub_runs, mean_std
from torch import nn

#: The published Swin, EfficientNet and ViT stages (gaze.models.backbones: SWIN_MERGED_STAGES, ...),
#: spelled out so the parent process imports no model.
SWIN_STAGES = ["layers.1.downsample", "layers.2.downsample", "layers.3.downsample", "layers.3"]
EFFICIENTNET_STAGES = ["blocks.3", "blocks.4", "blocks.5", "blocks.6"]
VIT_STAGES = ["blocks.8", "blocks.9", "blocks.10", "blocks.11"]
#: (label, backbone, input px, batch, fpn_size, fpn_upsample, num_selects or None, stage_modules or None) of (a).
COST_CASES = (
    ("demo: Lite0", "tf_efficientnet_lite0", 112, 16, 512, "bilinear", None, None),
    ("ResNet-50", "resnet50", 448, 2, 512, "bilinear", None, None),
    ("Swin-L", "swin_large_patch4_window12_384", 384, 1, 1536, "conv", [2048, 512, 128, 32], SWIN_STAGES),
    ("ViT-B/16", "vit_base_patch16_224_miil", 448, 2, 512, "conv", None, VIT_STAGES),
    ("EfficientNet-B7", "efficientnet_b7", 448, 1, 512, "bilinear", None, EFFICIENTNET_STAGES),
)
NUM_CLASSES = 200


class PlainHead(nn.Module):
    """The baseline of (a): the backbone's last stage, global average pool, Linear(K)."""

    def __init__(self, backbone: str, size: int, stages: list[str] | None) -> None:
        super().__init__()
        from gaze.models.backbones import create_backbone

        self.backbone = create_backbone(backbone, out_indices=None if stages else (-1,), img_size=size,
                                        stage_modules=stages)
        self.fc = nn.Linear(self.backbone.num_features, NUM_CLASSES)

    def loss(self, batch: dict) -> dict:
        return {"loss": F.cross_entropy(self.fc(self.backbone(batch["image"]).mean((2, 3))), batch["label"])}


def measure(case: dict) -> dict:
    """(in the worker process) median step seconds and peak memory of one model of ``case``."""
    from gaze.models import create_model

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if case["model"] == "pim":
        model = create_model("pim", num_classes=NUM_CLASSES, backbone=case["backbone"], input_size=case["size"],
                             fpn_size=case["fpn_size"], fpn_upsample=case["upsample"], num_selects=case["selects"],
                             stage_modules=case["stages"])
    else:
        model = PlainHead(case["backbone"], case["size"], case["stages"])
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    batch = {"image": torch.randn(case["batch"], 3, case["size"], case["size"], device=device),
             "label": torch.randint(0, NUM_CLASSES, (case["batch"],), device=device)}
    times = []
    for _ in range(case["rounds"] + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": statistics.median(times[1:]), "peak_mib": peak, "device": device.type}


def in_fresh_process(case: dict) -> dict:
    """:func:`measure` in a new interpreter (so each peak is its own)."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(case)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case['label']} ({case['model']}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cost_table(rounds: int, demo_only: bool) -> None:
    """(a): PIM and the plain head per backbone and size; ratios PIM / plain."""
    cases = COST_CASES[:1] if demo_only else COST_CASES
    rows = []
    for label, backbone, size, batch, fpn_size, upsample, selects, stages in cases:
        common = {"label": label, "backbone": backbone, "size": size, "batch": batch, "fpn_size": fpn_size,
                  "upsample": upsample, "selects": selects, "stages": stages, "rounds": rounds}
        plain, pim = (in_fresh_process({**common, "model": model}) for model in ("plain", "pim"))
        rows.append((label, size, batch, plain, pim))
        print(f"    measured {label}", file=sys.stderr, flush=True)
    device = rows[0][3]["device"]
    memory = "peak GPU memory allocated" if device == "cuda" else "peak resident memory of the process"
    print(f"(a) one training step (forward, loss, backward, SGD), {NUM_CLASSES} classes, {device}, median of {rounds}; "
          f"memory: {memory}")
    print(f"    {'backbone':16s} {'px':>4s} {'B':>2s} {'plain s':>8s} {'PIM s':>8s} {'ratio':>6s} "
          f"{'plain MiB':>10s} {'PIM MiB':>9s} {'ratio':>6s}")
    for label, size, batch, plain, pim in rows:
        print(f"    {label:16s} {size:4d} {batch:2d} {plain['seconds']:8.3f} {pim['seconds']:8.3f} "
              f"{pim['seconds'] / plain['seconds']:5.2f}x {plain['peak_mib']:10.0f} {pim['peak_mib']:9.0f} "
              f"{pim['peak_mib'] / plain['peak_mib']:5.2f}x")


#: (name, cub/train.py overrides) of the accuracy comparison.
ACCURACY_METHODS = (
    ("baseline", ["--model_type=baseline"]),
    ("pim", ["--model_type=pim"]),
    ("pim + gaze", ["--model_type=pim", "--lambda_g=1.0"]),
)


def accuracy_table(seeds: int) -> None:
    """(b): every method x seed through cub/train.py; test top-1 of the combiner (the model's
    logits) and of the head chosen on validation, mean +- std."""
    rows: dict[str, dict[str, list[float]]] = {}
    for name, folder in cub_runs(ACCURACY_METHODS, seeds):
        test = json.loads((folder / "summary.json").read_text())["test"]["top1"]
        chosen = test
        if (folder / "heads.json").is_file():
            heads = json.loads((folder / "heads.json").read_text())
            chosen = heads["test"][heads["chosen_on_val"]]["top1"]
        rows.setdefault(name, {}).setdefault("model", []).append(test)
        rows[name].setdefault("chosen", []).append(chosen)
    print(f"(b) test top-1 (%) on the synthetic CUB set, cub/train.py defaults, {seeds} seeds, mean +- std")
    print(f"    {'method':12s} {'logits (combiner)':>18s} {'head chosen on val':>19s}")
    for name, scores in rows.items():
        cells = [mean_std(v) for v in (scores["model"], scores["chosen"])]
        print(f"    {name:12s} {cells[0]:>18s} {cells[1]:>19s}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("cost", "accuracy", "all"), default="cost")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="(b): seeds 0..N-1")
    parser.add_argument("--demo_only", action="store_true", help="(a): the demo size only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    if args.part in ("cost", "all"):
        cost_table(args.rounds, args.demo_only)
    if args.part in ("accuracy", "all"):
        accuracy_table(args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
