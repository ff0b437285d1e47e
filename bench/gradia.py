"""Benchmark: GRADIA, (a) the phase-2 step against the published per-sample loop, (b) does phase 2 help?

    python bench/gradia.py [--part speed|benefit|all] [--backbone resnet18] [--input_size 224]
                           [--batch_size 16] [--rounds 5] [--seeds 3]

(b) benefit: ``python cub/train.py --model_type=gradia`` and ``python folder/train.py`` with
their defaults (the SYNTHETIC CUB set with gaze masks; the SYNTHETIC set in GRADIA's layout with
its masks and ratings) for seeds 0..N-1; phase 1 alone is GRADIA's baseline (the same network
trained with CE), phase 2 is GRADIA. Test top-1 and attention IoU, mean +- std over seeds.

(a) speed:

* ours: ``GRADIA.loss`` with ``phase = 2``: one train-mode forward of the batch gives the CE and,
  through one ``autograd.grad`` of the ground-truth logits, the Grad-CAM of every sample; then
  one backward.
* published (gradia_cal.md A6, ``model_train_with_map``): the batch forward for the weighted
  CE, then for every sample with an attention weight one extra batch-of-one train-mode
  forward, a backward of its ground-truth logit (``retain_graph=True``) through a hook on
  the last stage, cam = sum_k w_k A_k with the hook's (constant) weights, min-max without an
  epsilon, and the L1 to its 7x7 target; then one backward of the total.

Same model weights (copied), same batch, same masks (every sample has one, weights 1: the
cost the published loop pays in full). The two sides alternate within every round; the
median over rounds is reported. Ratio = published seconds / ours seconds (> 1: ours faster).
The CAMs of the two ways are compared in eval mode (BatchNorm with running statistics),
where they must agree; in train mode they differ by design (G6: batch vs single-image
BatchNorm statistics).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaze.models import create_model
from gaze.models.cam import cam_from_features
from gaze.models.gradia import attention_targets


def published_cam(model: nn.Module, image: Tensor, label: int) -> Tensor:
    """A6 ``get_attention_map``: batch-of-one forward, hook on the last stage, backward of the
    ground-truth logit with ``retain_graph=True``, constant weights, no ReLU, min-max (no eps)."""
    stored = {}

    def keep(_module, _inputs, output):
        stored["features"] = output
        output.register_hook(lambda grad: stored.__setitem__("grad", grad))

    handle = model.backbone.register_forward_hook(keep)
    try:
        logits = model(image)
        logits[0, label].backward(retain_graph=True)
    finally:
        handle.remove()
    weights = stored["grad"].detach().mean(dim=(2, 3), keepdim=True)
    cam = (weights * stored["features"]).sum(dim=1, keepdim=True)
    cam = cam - cam.min()
    return cam / cam.max()


def published_step(model: nn.Module, batch: dict) -> Tensor:
    """The published phase-2 loss of one batch (weights 1, every sample masked), backward included."""
    logits = model(batch["image"])
    loss = F.cross_entropy(logits, batch["label"])
    distances = []
    for k in range(len(batch["label"])):
        cam = published_cam(model, batch["image"][k:k + 1], int(batch["label"][k]))
        distances.append((cam - batch["target"][k:k + 1]).abs().mean())
    model.zero_grad(set_to_none=True)  # the per-sample backwards left gradients behind
    loss = loss + torch.stack(distances).mean()
    loss.backward()
    return loss.detach()


def our_step(model: nn.Module, batch: dict) -> Tensor:
    """``GRADIA.loss`` (phase 2) and its backward."""
    model.zero_grad(set_to_none=True)
    out = model.loss(batch)
    out["loss"].backward()
    return out["loss"].detach()


def timed(step, model: nn.Module, batch: dict) -> float:
    start = time.perf_counter()
    step(model, batch)
    return time.perf_counter() - start


def cam_agreement(model: nn.Module, batch: dict) -> float:
    """Max |ours - published| of the eval-mode CAMs of every sample (ground-truth class)."""
    model.eval()
    features = model.forward_features(batch["image"])
    ours = cam_from_features(features, model.forward_head(features), batch["label"], relu=False, eps=0.0)
    published = torch.cat([published_cam(model, batch["image"][k:k + 1], int(batch["label"][k]))
                           for k in range(len(batch["label"]))]).detach()
    model.zero_grad(set_to_none=True)
    model.train()
    return float((ours - published).abs().max())


def benefit(seeds: int) -> None:
    """Phase 1 (baseline) vs phase 2 (GRADIA) of the default demos, test top-1 and IoU over seeds."""
    from cub import train as cub_train
    from folder import train as folder_train

    trees = {"synthetic CUB, gaze masks": cub_train, "synthetic GRADIA layout, masks + ratings": folder_train}
    print(f"\nDoes phase 2 help? test top-1 (%) and attention IoU, mean +- std over {seeds} seeds")
    print(f"  {'data':<42} {'phase':<22} {'top-1':>14} {'IoU':>14}")
    with tempfile.TemporaryDirectory() as runs:
        for data, tree in trees.items():
            scores: dict[str, list[tuple[float, float]]] = {"phase1": [], "phase2": []}
            for seed in range(seeds):
                name = f"seed{seed}"
                assert tree.main(["--model_type=gradia", f"--seed={seed}", f"--model_path={runs}/{id(tree)}",
                                  f"--model_name={name}", "--cam_images=0"]) == 0
                for phase in scores:
                    test = json.loads((Path(runs) / str(id(tree)) / name / phase / "summary.json").read_text())["test"]
                    scores[phase].append((test["top1"], test["attention_iou"]))
            for phase, label in (("phase1", "phase 1 (CE, baseline)"), ("phase2", "phase 2 (GRADIA)")):
                top1, iou = zip(*scores[phase])
                print(f"  {data:<42} {label:<22} {statistics.mean(top1):>7.2f} +- {_spread(top1):<5.2f}"
                      f"{statistics.mean(iou):>7.3f} +- {_spread(iou):.3f}")


def _spread(values: tuple[float, ...]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("speed", "benefit", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=3, help="benefit: seeds 0..N-1")
    parser.add_argument("--backbone", default="resnet18", help="timm backbone (published: resnet50)")
    parser.add_argument("--input_size", type=int, default=224, help="image side, px (published: 224 -> 7x7 CAM)")
    parser.add_argument("--batch_size", type=int, default=16, help="images per step (published README: 100)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part in ("speed", "all"):
        speed(args)
    if args.part in ("benefit", "all"):
        benefit(args.seeds)
    return 0


def speed(args: argparse.Namespace) -> None:
    """Part (a): median step time of both ways, their ratio, and the eval-mode CAM agreement."""
    torch.manual_seed(0)
    ours = create_model("gradia", num_classes=2, backbone=args.backbone, input_size=args.input_size).train()
    ours.phase = 2
    published = copy.deepcopy(ours)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch_size, 3, args.input_size, args.input_size, generator=generator)
    masks = torch.zeros(args.batch_size, 1, args.input_size, args.input_size)
    half = args.input_size // 2
    masks[::2, :, :half, :half] = 1
    masks[1::2, :, half:, half:] = 1
    grid = ours.forward_features(images[:1]).shape[-2:]
    batch = {"image": images, "label": torch.arange(args.batch_size) % 2, "mask": masks,
             "target": attention_targets(masks, grid)}
    print(f"GRADIA phase-2 step: {args.backbone}, {args.input_size} px ({grid[0]}x{grid[1]} CAM), "
          f"batch {args.batch_size}, {torch.get_num_threads()} thread(s), {args.rounds} rounds")
    timed(our_step, ours, batch), timed(published_step, published, batch)  # warm-up
    times = {"ours": [], "published": []}
    for _ in range(args.rounds):
        times["ours"].append(timed(our_step, ours, batch))
        times["published"].append(timed(published_step, published, batch))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"  {'variant':<52} {'ms/step':>9} {'images/s':>9} {'ratio':>7}")
    for name, label in (("published", "published: + a batch-of-one forward/backward per sample"),
                        ("ours", "ours: the batch's CAMs from its one forward")):
        seconds = median[name]
        print(f"  {label:<52} {1000 * seconds:>9.1f} {args.batch_size / seconds:>9.1f} "
              f"{median['published'] / seconds:>6.2f}x")
    agreement = cam_agreement(copy.deepcopy(ours), batch)
    print(f"  eval-mode CAMs, ours vs published per-sample: max |difference| {agreement:.2e}")


if __name__ == "__main__":
    sys.exit(main())
