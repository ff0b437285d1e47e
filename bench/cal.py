"""Benchmark: CAL / WS-DAN attention crop and drop, batched against the published per-sample loop; the
step's parts; and baseline vs WS-DAN vs CAL vs gaze-guided CAL on the synthetic CUB set.

    python bench/cal.py [--part speed|accuracy|all] [--batch_size 16] [--image_size 448] [--map_size 28]
                        [--attentions 32] [--rounds 5] [--backbone resnet18] [--step_size 224] [--seeds 3]

(a) augmentation, on the same maps (random, B x M x map x map, ReLU-like):

* ours: ``gaze.models.cal.attention_crop_drop``: the two maps per sample by one
  ``torch.multinomial``, the thresholds by one draw each, the crop boxes of the whole batch by
  tensor reductions, one ``grid_sample`` for the crops and one product for the drops;
* published (gradia_cal.md B5; WS-DAN/CAL ``batch_augment`` and the map choice of
  ``WSDAN_CAL.forward``): per sample ``np.random.choice(M, 2, p)``, then for the crop per sample
  ``random.uniform`` x max, ``F.upsample_bilinear`` of the map, ``torch.nonzero``, int box with
  padding, a slice and ``F.upsample_bilinear`` back; for the drop per sample the upsampled map
  ``< threshold``, then one product.

The two alternate within every round; the median over rounds is reported, and ratio =
published seconds / ours. Agreement, with one map and fixed thresholds (so both use the same
map and threshold): drops must be identical; crops differ by the resampling (bilinear over
the exact box vs an integer slice upsampled with align_corners=True):
the mean absolute difference is printed beside the images' range.

(b) one CAL training step of ``--backbone`` at ``--step_size`` px, its parts timed
(forward raw, augmentation, forward of the 2B batch, losses + backward).

(c) accuracy: ``python cub/train.py`` with its defaults (the SYNTHETIC CUB set, EfficientNet-Lite0
at 112 px, 10 epochs, the best epoch on validation) for ``--model_type`` baseline, wsdan, cal and
gaze-guided CAL (``attention_source='mixed'``, ``gaze_alignment=0.5``), seeds 0..N-1; test
top-1 under each protocol (raw, raw+crop, cal_tta; the baseline has one view), mean +- std.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from seeded_runs import cub_runs, mean_std

from gaze.models import create_model
from gaze.models.cal import attention_crop_drop


def published_choice(attention_maps: torch.Tensor) -> torch.Tensor:
    """WSDAN_CAL.forward in training: per sample two maps drawn with p = L1(sqrt(sum A + eps))."""
    weights = F.normalize(torch.sqrt(attention_maps.sum(dim=(2, 3)).detach() + 1e-12), p=1, dim=1)
    chosen = []
    for i in range(len(attention_maps)):
        p = weights[i].cpu().numpy().astype(np.float64)
        index = np.random.choice(np.arange(attention_maps.shape[1]), 2, p=p / p.sum())
        chosen.append(attention_maps[i, index])
    return torch.stack(chosen)


def published_augment(images: torch.Tensor, attention_map: torch.Tensor, mode: str, theta, padding_ratio: float = 0.1
                      ) -> torch.Tensor:
    """``batch_augment`` of WS-DAN / CAL, line for line (F.upsample_bilinear = interpolate align_corners=True)."""
    batches, _, height, width = images.size()
    if mode == "crop":
        crops = []
        for index in range(batches):
            atten_map = attention_map[index:index + 1]
            threshold = (random.uniform(*theta) if isinstance(theta, tuple) else theta) * atten_map.max()
            crop_mask = F.interpolate(atten_map, size=(height, width), mode="bilinear", align_corners=True) >= threshold
            nonzero = torch.nonzero(crop_mask[0, 0, ...])
            top = max(int(nonzero[:, 0].min().item() - padding_ratio * height), 0)
            bottom = min(int(nonzero[:, 0].max().item() + padding_ratio * height), height)
            left = max(int(nonzero[:, 1].min().item() - padding_ratio * width), 0)
            right = min(int(nonzero[:, 1].max().item() + padding_ratio * width), width)
            crops.append(F.interpolate(images[index:index + 1, :, top:bottom, left:right], size=(height, width),
                                       mode="bilinear", align_corners=True))
        return torch.cat(crops, dim=0)
    masks = []
    for index in range(batches):
        atten_map = attention_map[index:index + 1]
        threshold = (random.uniform(*theta) if isinstance(theta, tuple) else theta) * atten_map.max()
        masks.append(F.interpolate(atten_map, size=(height, width), mode="bilinear", align_corners=True) < threshold)
    return images * torch.cat(masks, dim=0).float()


def published_step(images: torch.Tensor, attentions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = published_choice(attentions)
    return (published_augment(images, chosen[:, :1], "crop", (0.4, 0.6), 0.1),
            published_augment(images, chosen[:, 1:], "drop", (0.2, 0.5)))


#: (name, cub/train.py overrides) of the accuracy comparison.
ACCURACY_METHODS = (
    ("baseline", ["--model_type=baseline"]),
    ("wsdan", ["--model_type=wsdan"]),
    ("cal", ["--model_type=cal"]),
    ("cal + gaze", ["--model_type=cal", "--attention_source=mixed", "--gaze_alignment=0.5"]),
)


def accuracy_table(seeds: int) -> None:
    """(c): every method x seed through cub/train.py; test top-1 per protocol, mean +- std."""
    import json

    rows = {}
    for name, folder in cub_runs(ACCURACY_METHODS, seeds):
        protocols = folder / "protocols.json"
        if protocols.is_file():
            scores = {p: v["top1"] for p, v in json.loads(protocols.read_text()).items()}
        else:
            scores = {"raw": json.loads((folder / "summary.json").read_text())["test"]["top1"]}
        for protocol, top1 in scores.items():
            rows.setdefault(name, {}).setdefault(protocol, []).append(top1)
    print(f"(c) test top-1 (%) on the synthetic CUB set, cub/train.py defaults, {seeds} seeds, mean +- std")
    print(f"    {'method':12s} {'raw':>16s} {'raw+crop':>16s} {'cal_tta':>16s}")
    for name, scores in rows.items():
        cells = [mean_std(v) if v else "-" for v in (scores.get(p, []) for p in ("raw", "raw+crop", "cal_tta"))]
        print(f"    {name:12s} " + " ".join(f"{cell:>16s}" for cell in cells))


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=448)
    parser.add_argument("--map_size", type=int, default=28)
    parser.add_argument("--attentions", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--step_size", type=int, default=224)
    parser.add_argument("--part", choices=("speed", "accuracy", "all"), default="speed")
    parser.add_argument("--seeds", type=int, default=3, help="(c): seeds 0..N-1")
    args = parser.parse_args(argv)
    if args.part in ("accuracy", "all"):
        accuracy_table(args.seeds)
        if args.part == "accuracy":
            return 0
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    attentions = torch.relu(torch.randn(args.batch_size, args.attentions, args.map_size, args.map_size))
    with torch.no_grad():
        ours_times, published_times = [], []
        for _ in range(args.rounds):
            ours_times.append(timed(attention_crop_drop, images, attentions))
            published_times.append(timed(published_step, images, attentions))
        ours_s, published_s = statistics.median(ours_times), statistics.median(published_times)
        print(f"(a) crop + drop, batch {args.batch_size} at {args.image_size} px, {args.attentions} maps of "
              f"{args.map_size}x{args.map_size}, median of {args.rounds} rounds")
        print(f"    published per-sample loop: {published_s * 1000:8.1f} ms  ({args.batch_size / published_s:7.1f} images/s)")
        print(f"    ours, batched            : {ours_s * 1000:8.1f} ms  ({args.batch_size / ours_s:7.1f} images/s)")
        print(f"    ratio (published / ours) : {published_s / ours_s:.2f}x")
        one_map = attentions[:, :1]
        crops, drops = attention_crop_drop(images, one_map, crop_theta=0.5, drop_theta=0.35)
        published_crops = published_augment(images, one_map, "crop", 0.5, 0.1)
        published_drops = published_augment(images, one_map, "drop", 0.35)
        print(f"    agreement (one map, fixed thresholds): drops identical {torch.equal(drops, published_drops)}; "
              f"crops mean |diff| {float((crops - published_crops).abs().mean()):.4f} "
              f"(images span {float(images.max() - images.min()):.1f}; the exact box vs an integer slice)")

    model = create_model("cal", num_classes=200, backbone=args.backbone, input_size=args.step_size,
                         num_attentions=args.attentions).train()
    batch_images = torch.randn(args.batch_size, 3, args.step_size, args.step_size)
    labels = torch.randint(0, 200, (args.batch_size,))
    parts: dict[str, list[float]] = {"forward raw": [], "crop + drop": [], "forward 2B": [], "losses + backward": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        raw = model.forward_all(batch_images)
        centre = model.centre_loss(raw["pooled"], labels)
        mark = time.perf_counter()
        parts["forward raw"].append(mark - start)
        crops, drops = attention_crop_drop(batch_images, raw["attentions"].detach())
        parts["crop + drop"].append(time.perf_counter() - mark)
        mark = time.perf_counter()
        augmented = model.forward_all(torch.cat([crops, drops]))
        parts["forward 2B"].append(time.perf_counter() - mark)
        mark = time.perf_counter()
        both = torch.cat([labels, labels])
        loss = (F.cross_entropy(raw["logits"], labels) / 3 + 2 * F.cross_entropy(augmented["logits"], both) / 3
                + F.cross_entropy(torch.cat([raw["effect"], augmented["effect"]]), torch.cat([labels, both])) + centre)
        model.zero_grad(set_to_none=True)
        loss.backward()
        parts["losses + backward"].append(time.perf_counter() - mark)
    medians = {name: statistics.median(values) for name, values in parts.items()}
    total = sum(medians.values())
    print(f"(b) one CAL training step, {args.backbone} at {args.step_size} px, batch {args.batch_size}: "
          f"{total * 1000:.0f} ms")
    for name, seconds in medians.items():
        print(f"    {name:18s} {seconds * 1000:8.1f} ms  {100 * seconds / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
