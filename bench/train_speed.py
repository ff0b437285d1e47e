"""Benchmark: CUB training speed, this project against the published CUB-GHA code path.

    python bench/train_speed.py [--images 64] [--input_size 128] [--batch_size 8]
                                [--backbone resnet18] [--rounds 5]

(a) Data pipeline, one training item (images/s, one thread as in a DataLoader worker):
    * ours: ``cub.dataset.CUBDataset`` with ``gaze={'fixations': ...}``: JPEG decode, the
      attention map rendered from the fixations (gaze.attention.heatmap) and cached as uint8, one
      joint ``transforms.v2`` call. "cold" = a fresh dataset (every map rendered), "warm" =
      the second pass over the same dataset (maps from the cache). Also ours reading the
      same JPEG maps as the baseline (``gaze={'dir': ...}``).
    * published (cub_pim.md §1.2, §1.7): imageio decode (grey stacked to RGB), the CUB-GHA
      attention JPEG decoded as 'L' and resized to the image size, PIL Resize, a RandomCrop
      whose box is shared, a Python ``random`` flip, ColorJitter(0.2, 0.2) on the image,
      ToTensor + Normalize, ToTensor of the map and a global min-max without epsilon. The
      map folder is written beforehand with ``gaze.attention.heatmap.save_heatmap`` from the same
      fixations, so both sides see the same attention.
(b) One GAT training step at epoch 2 (loss + backward, same backbone and batch):
    * ours: ``GAT.loss`` (summed-area scores, batched greedy NMS, one ``roi_align``);
    * published (cub_pim.md §1.4-1.5, MMAL-Net APPM/nms): ``AvgPool2d(ratio, stride)``
      scores, per-image per-group numpy NMS (argsort, pop loop, "+1" IoU), then a Python
      loop of ``F.interpolate`` crops (inclusive corners, -1 px quirk, bilinear,
      align_corners=True) to ``window_size``, the windows through the same backbone.
    The proposal + crop part is also timed alone, and the windows both pick on the same
    maps are compared (they should agree up to score ties).

The two sides alternate within every round, so machine load hits both alike; the median
over rounds is reported. Ratio = ours images/s / published images/s (> 1: ours faster).
Everything is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import imageio.v2 as imageio
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import default_collate
from torchvision import transforms
from torchvision.transforms import functional as TF

from cub.dataset import CUBDataset
from gaze.attention.fixations import filter_by_duration, merge_by_image, read_fixations
from gaze.attention.heatmap import render_heatmaps, save_heatmap
from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from gaze.models.gat import GAT, WindowGeometry, crop_windows
from gaze.synthetic.cub import make_synthetic_cub

#: Fixations shorter than this are dropped before rendering (CUB-GHA README: 100 ms).
MIN_DURATION_MS = 100.0
#: Images per synthetic class (the set has ceil(images / this) classes).
IMAGES_PER_CLASS = 8
GHA_DIR = "CUB_GHA"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="synthetic training images timed in (a)")
    parser.add_argument("--image_size", type=int, nargs=2, default=[300, 500],
                        help="min max side of the synthetic images, px (CUB images are mostly 500x3xx)")
    parser.add_argument("--input_size", type=int, default=128, help="training crop side S (published 448)")
    parser.add_argument("--batch_size", type=int, default=8, help="GAT step batch (published 6)")
    parser.add_argument("--backbone", default="resnet18", help="timm backbone of the GAT step (random init)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    return parser.parse_args(argv)


# --- timing helpers ----------------------------------------------------------------------------


def timed(function: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@dataclass
class Timings:
    """Seconds per round for each labelled variant."""

    seconds: dict[str, list[float]]

    def add(self, label: str, value: float) -> None:
        self.seconds.setdefault(label, []).append(value)

    def median(self, label: str) -> float:
        return statistics.median(self.seconds[label])


def print_table(title: str, timings: Timings, count: int, baseline: str, unit: str) -> None:
    """One line per variant: median ms per unit, images/s, ratio to ``baseline``."""
    print(f"\n{title}")
    print(f"  {'variant':<44} {'ms/' + unit:>10} {'images/s':>10} {'ratio':>7}")
    reference = timings.median(baseline)
    for label in timings.seconds:
        seconds = timings.median(label)
        print(f"  {label:<44} {1000 * seconds / count:>10.2f} {count / seconds:>10.1f} {reference / seconds:>6.2f}x")


# --- data -------------------------------------------------------------------------------------


def make_data(folder: Path, images: int, image_size: tuple[int, int]) -> Path:
    """A synthetic CUB tree with ``images`` training images and a CUB_GHA folder of JPEG maps."""
    classes = max(1, -(-images // IMAGES_PER_CLASS))
    root = make_synthetic_cub(folder / "synthetic_cub", num_classes=classes, train_per_class=IMAGES_PER_CLASS,
                              test_per_class=0, image_size=tuple(image_size), seed=0)
    write_gha_maps(root, root / GHA_DIR)
    return root


def write_gha_maps(root: Path, folder: Path) -> None:
    """``<folder>/<id>.jpg``: the all-fixation map of every image, as the CUB-GHA release ships."""
    records = merge_by_image(read_fixations(root / "gaze").records)
    records = [filter_by_duration(record, MIN_DURATION_MS) for record in records.values()]
    for record, heatmap in zip(records, render_heatmaps(records)):
        save_heatmap(folder / f"{record.image_id}.jpg", heatmap)


def our_dataset(root: Path, input_size: int, gaze: dict) -> CUBDataset:
    """All training images with our joint training transform."""
    return CUBDataset(root, split="trainval", transform=build_transforms(train=True, input_size=input_size),
                      gaze=gaze, val_fraction=0.0)


# --- the published data pipeline (cub_pim.md §1.2, §1.7) ---------------------------------------


class PublishedGATTrainItems:
    """The published CUB-GHA GAT training item: ``(img, label, att)`` (cub_pim.md §1.7).

    Per item: imageio decode (grey stacked to 3 channels), ``<root>/<GHA_dir>/<id>.jpg``
    opened as 'L' and resized to the original (w, h); Resize(shorter side -> S) of both;
    one RandomCrop box for both; a horizontal flip of both when ``random.random() < 0.5``;
    ColorJitter(brightness 0.2, contrast 0.2) on the image only; ToTensor + ImageNet
    Normalize of the image; ToTensor of the map and (att - min) / (max - min), no epsilon.
    """

    def __init__(self, dataset: CUBDataset, gha_dir: Path, input_size: int) -> None:
        self.paths, self.ids, self.labels = dataset.paths, dataset.ids, dataset.labels
        self.gha_dir = gha_dir
        self.input_size = input_size
        self.resize = transforms.Resize(input_size)
        self.color_jitter = transforms.ColorJitter(brightness=0.2, contrast=0.2)
        self.to_tensor = transforms.ToTensor()
        self.normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        pixels = imageio.imread(self.paths[index])
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=2)
        img = Image.fromarray(pixels, mode="RGB")
        att = Image.open(self.gha_dir / f"{self.ids[index]}.jpg").convert("L").resize(img.size)
        img, att = self.resize(img), self.resize(att)
        top, left, height, width = transforms.RandomCrop.get_params(img, (self.input_size, self.input_size))
        img, att = TF.crop(img, top, left, height, width), TF.crop(att, top, left, height, width)
        if random.random() < 0.5:
            img, att = TF.hflip(img), TF.hflip(att)
        img = self.normalize(self.to_tensor(self.color_jitter(img)))
        att = self.to_tensor(att)
        att = (att - att.min()) / (att.max() - att.min())
        return img, int(self.labels[index]), att


def pass_over(dataset) -> None:
    """Load every item once, in order."""
    for index in range(len(dataset)):
        dataset[index]


def bench_data(root: Path, input_size: int, rounds: int) -> None:
    """(a): alternate published, ours cold, ours warm and ours on the JPEG maps per round."""
    fixations = {"fixations": "gaze", "min_duration": MIN_DURATION_MS}
    reference = our_dataset(root, input_size, None)
    published = PublishedGATTrainItems(reference, root / GHA_DIR, input_size)
    timings = Timings({})
    setup = []
    for _ in range(rounds):
        timings.add("published (JPEG map, PIL transforms)", timed(lambda: pass_over(published)))
        start = time.perf_counter()
        ours = our_dataset(root, input_size, fixations)
        setup.append(time.perf_counter() - start)
        timings.add("ours, cold (maps rendered from fixations)", timed(lambda: pass_over(ours)))
        timings.add("ours, warm (maps from the uint8 cache)", timed(lambda: pass_over(ours)))
        jpeg_maps = our_dataset(root, input_size, {"dir": GHA_DIR})
        timings.add("ours, same JPEG maps as published", timed(lambda: pass_over(jpeg_maps)))
    title = (f"(a) data pipeline, one training item ({len(reference)} images of "
             f"{_size_range(reference)} px -> {input_size} px, 1 thread)")
    print_table(title, timings, len(reference), "published (JPEG map, PIL transforms)", "item")
    print(f"  (ours: reading and indexing the fixation files once per dataset: {1000 * statistics.median(setup):.0f} ms)")


def _size_range(dataset: CUBDataset) -> str:
    sizes = [Image.open(path).size for path in dataset.paths]
    sides = [side for size in sizes for side in size]
    return f"{min(sides)}-{max(sides)}"


# --- the published GAT window path (cub_pim.md §1.4-1.5) ---------------------------------------


def published_coordinates(input_size: int, geometry: WindowGeometry) -> tuple[np.ndarray, list[int]]:
    """``coordinates_cat`` (N,4) inclusive [x0, y0, x1, y1] (x = row) and windows per group (§1.4).

    Window k of an (h, w) ratio: r = k // cols, c = k % cols, x0 = max(s·r − 1, 0),
    y0 = max(s·c − 1, 0), x1 = s·r − 1 + h, y1 = s·c − 1 + w.
    """
    coordinates, group_sizes, s = [], [], geometry.stride
    for group in geometry.ratios:
        count = 0
        for h, w in group:
            rows, cols = (input_size - h) // s + 1, (input_size - w) // s + 1
            for k in range(rows * cols):
                r, c = k // cols, k % cols
                coordinates.append([max(s * r - 1, 0), max(s * c - 1, 0), s * r - 1 + h, s * c - 1 + w])
            count += rows * cols
        group_sizes.append(count)
    return np.array(coordinates, dtype=np.int64), group_sizes


def published_nms(scores: np.ndarray, proposal_n: int, iou_thresh: float, coordinates: np.ndarray) -> np.ndarray:
    """MMAL-Net/CUB-GHA ``nms`` of one image and group (cub_pim.md §1.5 step 3), numpy.

    Sort ascending, pop the highest, keep candidates with "+1" inclusive IoU <= threshold
    (intersection 0 when an overlap extent is negative), stop at ``proposal_n``; if
    candidates run out, repeat the last popped window. (``np.int`` -> ``np.int64``.)

    Args:
        scores: (n, 1) window scores.
        proposal_n: windows to keep.
        iou_thresh: IoU threshold.
        coordinates: (n, 4) inclusive [x0, y0, x1, y1].

    Returns:
        (1, proposal_n) indices into the group.
    """
    count = scores.shape[0]
    indices_coordinates = np.concatenate((scores, coordinates), 1)
    order = np.argsort(indices_coordinates[:, 0])
    res = np.concatenate((indices_coordinates, np.arange(0, count).reshape(count, 1)), 1)[order]
    results: list[float] = []
    while res.any():
        current = res[-1]
        results.append(current[5])
        if len(results) == proposal_n:
            return np.array(results).reshape(1, proposal_n).astype(np.int64)
        res = res[:-1]
        start_max = np.maximum(res[:, 1:3], current[1:3])
        end_min = np.minimum(res[:, 3:5], current[3:5])
        lengths = end_min - start_max + 1
        intersection = lengths[:, 0] * lengths[:, 1]
        intersection[np.logical_or(lengths[:, 0] < 0, lengths[:, 1] < 0)] = 0
        iou = intersection / ((res[:, 3] - res[:, 1] + 1) * (res[:, 4] - res[:, 2] + 1)
                              + (current[3] - current[1] + 1) * (current[4] - current[2] + 1) - intersection)
        res = res[iou <= iou_thresh]
    while len(results) != proposal_n:
        results.append(current[5])
    return np.array(results).reshape(1, -1).astype(np.int64)


class PublishedWindows(nn.Module):
    """The published APPM + crop loop of GAT ``MainNet`` (cub_pim.md §1.5 steps 2-4).

    Scores: ``AvgPool2d(ratio, stride)`` of the gaze map per ratio, summed over channels,
    flattened and concatenated; moved to numpy; per image and group ``published_nms``
    plus the group offset. Crops: for every image and window, ``F.interpolate`` of
    ``x[i:i+1, :, x0:x1+1, y0:y1+1]`` to window_size² (bilinear, align_corners=True)
    written into a zero tensor.
    """

    def __init__(self, input_size: int, geometry: WindowGeometry, window_size: int) -> None:
        super().__init__()
        self.ratios = [ratio for group in geometry.ratios for ratio in group]
        self.avgpools = [nn.AvgPool2d(ratio, geometry.stride) for ratio in self.ratios]
        self.coordinates, self.group_sizes = published_coordinates(input_size, geometry)
        self.n_list = list(geometry.n_list)
        self.iou_threshold = geometry.iou_threshold
        self.proposal_n = sum(self.n_list)
        self.window_size = window_size

    def propose(self, att: Tensor) -> Tensor:
        """(B, proposalN) window indices (APPM ``forward``)."""
        batch = att.shape[0]
        sums = [torch.sum(pool(att), dim=1) for pool in self.avgpools]
        all_scores = torch.cat([s.view(batch, -1, 1) for s in sums], dim=1)
        scores_np = all_scores.data.cpu().numpy()
        bounds = np.cumsum([0] + self.group_sizes)
        indices = []
        for scores in scores_np:
            picks = [published_nms(scores[bounds[j]:bounds[j + 1]], self.n_list[j], self.iou_threshold,
                                   self.coordinates[bounds[j]:bounds[j + 1]]) + bounds[j]
                     for j in range(len(self.n_list))]
            indices.append(np.concatenate(picks, 1))
        return torch.from_numpy(np.array(indices).reshape(batch, self.proposal_n)).to(att.device)

    def crop(self, x: Tensor, indices: Tensor) -> Tensor:
        """(B·proposalN, 3, window_size, window_size) crops, one ``F.interpolate`` per window."""
        batch, size = x.shape[0], self.window_size
        window_imgs = torch.zeros([batch, self.proposal_n, 3, size, size], device=x.device)
        for i in range(batch):
            for j in range(self.proposal_n):
                x0, y0, x1, y1 = self.coordinates[indices[i, j]]
                window_imgs[i:i + 1, j] = F.interpolate(x[i:i + 1, :, x0:x1 + 1, y0:y1 + 1], size=(size, size),
                                                        mode="bilinear", align_corners=True)
        return window_imgs.reshape(batch * self.proposal_n, 3, size, size)


def published_loss(model: GAT, windows: PublishedWindows, batch: dict) -> Tensor:
    """Epoch >= 2 loss: CE(logits) + CE(window logits, labels repeated) (cub_pim.md §1.5)."""
    images, labels = batch["image"], batch["label"]
    logits = model.classify(images)
    crops = windows.crop(images, windows.propose(batch["gaze"]))
    window_logits = model.classify(crops.detach())
    return F.cross_entropy(logits, labels) + F.cross_entropy(window_logits, labels.repeat_interleave(windows.proposal_n))


def our_proposals_and_crops(model: GAT, batch: dict) -> Tensor:
    """Our proposal + crop part of ``GAT.window_logits``."""
    boxes = model.propose(batch["gaze"]).boxes
    return crop_windows(batch["image"], boxes, model.window_size)


def train_step(loss: Callable[[], Tensor], model: nn.Module) -> None:
    """zero_grad, loss, backward."""
    model.zero_grad(set_to_none=True)
    loss().backward()


def window_agreement(model: GAT, windows: PublishedWindows, gaze: Tensor) -> tuple[float, float]:
    """Fraction of windows (and of images with all windows) picked identically by both."""
    ours = model.propose(gaze).indices
    published = windows.propose(gaze)
    same = ours == published
    return same.float().mean().item(), same.all(dim=1).float().mean().item()


def bench_gat_step(root: Path, args: argparse.Namespace) -> None:
    """(b): alternate our and the published GAT step (and proposal + crop) per round."""
    dataset = our_dataset(root, args.input_size, {"fixations": "gaze", "min_duration": MIN_DURATION_MS})
    batch = default_collate([dataset[i] for i in range(args.batch_size)])
    model = GAT(num_classes=dataset.num_classes, backbone=args.backbone, input_size=args.input_size).train()
    model.epoch = 2
    windows = PublishedWindows(args.input_size, model.geometry, model.window_size)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)  # what gaze.engine.fit trains
    steps = {
        "published step (APPM, numpy NMS, crop loop)": lambda: train_step(lambda: published_loss(model, windows, batch), model),
        "ours step (GAT.loss)": lambda: train_step(lambda: model.loss(batch)["loss"], model),
        "ours step, channels-last weights (fit's default)": lambda: train_step(lambda: fast.loss(batch)["loss"], fast),
    }
    parts = {
        "published proposals + crops": lambda: windows.crop(batch["image"], windows.propose(batch["gaze"])),
        "ours proposals + crops": lambda: our_proposals_and_crops(model, batch),
    }
    for function in (*steps.values(), *parts.values()):
        function()  # warm-up (allocator, window tables)
    step_times, part_times = Timings({}), Timings({})
    for _ in range(args.rounds):
        for label, function in steps.items():
            step_times.add(label, timed(function))
        for label, function in parts.items():
            part_times.add(label, statistics.median(timed(function) for _ in range(5)))
    geometry = model.geometry
    windows_total = len(windows.coordinates)
    print_table(f"(b) GAT train step at epoch 2, loss + backward ({args.backbone}, batch {args.batch_size}, "
                f"{args.input_size} px, {sum(geometry.n_list)} windows of {model.window_size} px per image, "
                f"{torch.get_num_threads()} threads)", step_times, args.batch_size,
                "published step (APPM, numpy NMS, crop loop)", "image")
    print_table(f"    proposals + crops alone ({windows_total} candidate windows, stride {geometry.stride} px)",
                part_times, args.batch_size, "published proposals + crops", "image")
    per_window, per_image = window_agreement(model, windows, batch["gaze"])
    print(f"  same windows picked on the same maps: {100 * per_window:.1f}% of windows, "
          f"{100 * per_image:.1f}% of images (differences only from score ties / float rounding)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    random.seed(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="gaze-train-speed-") as folder:
        root = make_data(Path(folder), args.images, args.image_size)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # (a) as in a DataLoader worker
        try:
            bench_data(root, args.input_size, args.rounds)
        finally:
            torch.set_num_threads(threads)
        bench_gat_step(root, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
