"""Inter-run agreement of eye-tracking data (leave one run out), with a centre-bias baseline.

How well does one group of viewers predict another? This is the human-consistency
baseline of saliency benchmarks (Judd, Durand, Torralba, "A benchmark of computational
models of saliency to predict human fixations", MIT-CSAIL-TR-2012-001; Bylinskii et al.,
TPAMI 2019), with runs in place of observers. For every image and every run r that looked
at it, the attention map rendered from the OTHER runs' fixations (:mod:`gaze.attention.heatmap`) is
scored against run r with the metrics of :mod:`gaze.attention.saliency`:

* at run r's fixated pixels: NSS and AUC-Judd;
* against run r's own map (rendered the same way): CC, SIM and KL(run r || others).

The same metrics are computed for a **centre-bias** map: one anisotropic Gaussian per
image, placed at the mean gaze position measured in the data (in fractions of the image
width/height) with the measured spread, both duration-weighted like the maps, widened by
the map's own Gaussian sigma (``sd^2 = sd_gaze^2 + sigma^2``) so that it predicts a rendered
map, not a point set (:func:`fit_centre_bias`). It is fitted once on all the fixations
analysed (CUB-GHA: four numbers from ~430k fixations), so the held-out run has no
measurable influence on it.

A run's repeat viewings of an image (run 1 of CUB-GHA shows 699 images more than once) are
pooled: they are held out together. Pairs are rendered and scored in batches of one image
size, in worker processes; ``--scale`` renders at a fraction of the original size.

``python -m gaze agreement --gaze_file_path DIR_OR_FILES [--out_dir runs/agreement]
[--limit N] [--sigma S] [--scale F] [--min_duration 100] [--classes image_class_labels.txt]``
prints a table (mean +- std per metric, per held-out run and overall), writes
``agreement.csv`` (one row per image and held-out run) and ``agreement.png``.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from gaze.atomic import atomic_path
from gaze.attention import saliency
from gaze.attention.fixations import (
    FixationRecord,
    filter_by_duration,
    merge_by_image,
    read_fixations,
)
from gaze.attention.heatmap import (
    gaussian_profiles,
    normalize_min_max,
    render_heatmaps,
    screen_fit_sigma,
)
from gaze.data.images import IdRow, TableFormatError, read_id_table
from gaze.engine.logging import stderr_is_interactive

#: Metric name -> (function, what the prediction is scored against).
METRICS = {
    "nss": (saliency.nss, "fixations"),
    "auc_judd": (saliency.auc_judd, "fixations"),
    "cc": (saliency.cc, "map"),
    "sim": (saliency.sim, "map"),
    "kl": (saliency.kl, "map"),
}
#: Display names (KL is the only one where lower is better).
METRIC_LABELS = {"nss": "NSS", "auc_judd": "AUC-Judd", "cc": "CC", "sim": "SIM", "kl": "KL"}
#: Predictors scored against each held-out run.
PREDICTORS = {"human": "other runs (leave-one-run-out)", "centre": "centre bias"}
#: Fixations shorter than this are dropped first (CUB-GHA README: "after filtering <0.1 s").
DEFAULT_MIN_DURATION_MS = 100.0


@dataclass(frozen=True)
class CentreBias:
    """An axis-aligned Gaussian gaze density in image-relative coordinates.

    Attributes:
        mean_x, mean_y: centre as fractions of the width/height (0 = left/top edge).
        sd_x, sd_y: standard deviations as fractions of the width/height.
    """

    mean_x: float
    mean_y: float
    sd_x: float
    sd_y: float

    def render(self, size: tuple[int, int], image_size: tuple[int, int], sigma: float) -> torch.Tensor:
        """The (H, W) centre-bias map in [0, 1] for maps of ``size`` of an image of ``image_size``.

        Args:
            size: (H, W) of the map.
            image_size: (H, W) of the original image (``sigma`` is in its pixels).
            sigma: sd of the fixation Gaussian of the maps, original-image pixels; added in
                quadrature to the gaze spread.

        Returns:
            (H, W) float32 map, min-max normalised like :mod:`gaze.attention.heatmap` maps.
        """
        (out_h, out_w), (height, width) = size, image_size
        profiles = []
        axes = ((self.mean_y, self.sd_y, out_h, height), (self.mean_x, self.sd_x, out_w, width))
        for mean, sd, length, full in axes:
            spread = math.hypot(sd * length, sigma * length / full)
            centre = torch.tensor([[mean * length - 0.5]])  # pixel-centre coordinates
            profiles.append(gaussian_profiles(centre, length, torch.tensor([spread]))[0, 0])
        return normalize_min_max(torch.outer(*profiles).float())


def fit_centre_bias(records: Sequence[FixationRecord]) -> CentreBias:
    """Duration-weighted mean and sd of fixation positions relative to the image size.

    A fixation at pixel-centre coordinate x of a W-pixel-wide image is at ``(x + 0.5) / W``.

    Args:
        records: fixations of any number of images.

    Returns:
        The fitted :class:`CentreBias`.
    """
    x = np.concatenate([(r.x + 0.5) / r.width for r in records])
    y = np.concatenate([(r.y + 0.5) / r.height for r in records])
    weights = np.concatenate([r.duration for r in records])
    if weights.sum() <= 0:
        raise ValueError("fit_centre_bias: no fixation with a positive duration to fit")
    mean_x, mean_y = np.average(x, weights=weights), np.average(y, weights=weights)
    sd_x = math.sqrt(np.average((x - mean_x) ** 2, weights=weights))
    sd_y = math.sqrt(np.average((y - mean_y) ** 2, weights=weights))
    return CentreBias(float(mean_x), float(mean_y), sd_x, sd_y)


@dataclass(frozen=True)
class HeldOutPair:
    """One image and one held-out run: ``others`` (all other runs) predicts ``target``."""

    image_id: str
    run: int
    others: FixationRecord
    target: FixationRecord


def leave_one_run_out(images: dict[str, FixationRecord]) -> list[HeldOutPair]:
    """Split every image's fixations into (other runs, run r) for each run r present.

    An image seen by one run only (or whose other runs lost all their fixations to the
    duration filter) gives no pair. A run's several lines for one image stay together.

    Args:
        images: one merged record per image (:func:`gaze.attention.fixations.merge_by_image`).

    Returns:
        Pairs in image order, runs ascending within an image.
    """
    pairs = []
    for image_id, record in images.items():
        for run in np.unique(record.run):
            held_out = record.run == run
            if held_out.all():  # no other run to predict with
                continue
            pairs.append(HeldOutPair(image_id, int(run), record.subset(~held_out), record.subset(held_out)))
    return pairs


def fixated_pixels(record: FixationRecord, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels of an (H, W) map holding each fixation of ``record``.

    Pixels are centred at integer coordinates (as in :mod:`gaze.attention.heatmap`), so at the
    original size a fixation at x lies in pixel ``floor(x + 0.5)``; at another size the
    coordinate is scaled first. Results are clipped into the map.
    """
    out_h, out_w = size
    cols = np.floor((record.x + 0.5) * (out_w / record.width)).astype(np.int64)
    rows = np.floor((record.y + 0.5) * (out_h / record.height)).astype(np.int64)
    return np.clip(rows, 0, out_h - 1), np.clip(cols, 0, out_w - 1)


def _map_size(record: FixationRecord, scale: float) -> tuple[int, int]:
    return max(1, round(record.height * scale)), max(1, round(record.width * scale))


def _batches(
    pairs: Sequence[HeldOutPair], scale: float, batch_size: int
) -> Iterator[tuple[tuple[int, int], list[HeldOutPair]]]:
    """Pairs grouped by image size, in chunks of ``batch_size``, fewest fixations first.

    Yields:
        (H, W) map size at ``scale`` and the chunk of pairs.
    """
    groups: dict[tuple[int, int], list[HeldOutPair]] = defaultdict(list)
    for pair in pairs:
        groups[(pair.target.height, pair.target.width)].append(pair)
    for group in groups.values():
        size = _map_size(group[0].target, scale)
        group.sort(key=lambda p: (len(p.target), len(p.others)))  # little padding per batch
        for start in range(0, len(group), batch_size):
            yield size, group[start : start + batch_size]


def score_batch(
    pairs: Sequence[HeldOutPair], size: tuple[int, int], centre_map: torch.Tensor, sigma: float | None
) -> dict[str, np.ndarray]:
    """All metrics for a batch of pairs of one map size, human and centre bias.

    Args:
        pairs: B pairs whose images share one size.
        size: (H, W) to render at.
        centre_map: (H, W) centre-bias map of that size.
        sigma: Gaussian sd in original-image pixels (None: :func:`screen_fit_sigma`).

    Returns:
        ``{"<predictor>_<metric>": (B,) values}`` for every predictor and metric.
    """
    records = [p.others for p in pairs] + [p.target for p in pairs]
    maps = render_heatmaps(records, sigma=sigma, size=size, batch_size=len(pairs))
    predicted = torch.stack(maps[: len(pairs)])  # (B, H, W) from the other runs
    observed = torch.stack(maps[len(pairs) :])  # (B, H, W) of the held-out run
    pixels = [fixated_pixels(p.target, size) for p in pairs]
    item = np.repeat(np.arange(len(pairs)), [len(rows) for rows, _ in pixels])
    fixations = (item, np.concatenate([r for r, _ in pixels]), np.concatenate([c for _, c in pixels]))
    predictions = {"human": predicted, "centre": centre_map.expand_as(observed)}
    scores = {}
    for name, prediction in predictions.items():
        for metric, (function, against) in METRICS.items():
            values = function(prediction, fixations if against == "fixations" else observed)
            scores[f"{name}_{metric}"] = values.numpy()
    return scores


class _BatchScorer(torch.utils.data.Dataset):
    """Batches of pairs as a map-style dataset: item k renders and scores batch k.

    Run through a :class:`torch.utils.data.DataLoader` so that worker processes (one
    thread each) score batches in parallel; centre-bias maps are cached per process.
    """

    def __init__(self, batches: list[tuple[tuple[int, int], list[HeldOutPair]]], centre: CentreBias,
                 sigma: float | None) -> None:
        self.batches, self.centre, self.sigma = batches, centre, sigma
        self.centre_maps: dict[tuple[int, ...], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> pd.DataFrame:
        size, pairs = self.batches[index]
        scores = score_batch(pairs, size, self.centre_map(size, pairs[0].target), self.sigma)
        return pd.DataFrame({**_pair_columns(pairs), **scores})

    def centre_map(self, size: tuple[int, int], record: FixationRecord) -> torch.Tensor:
        """The (H, W) centre-bias map for maps of ``size`` of ``record``'s image size."""
        key = size + (record.height, record.width)
        if key not in self.centre_maps:
            sigma = screen_fit_sigma(record.width, record.height) if self.sigma is None else self.sigma
            self.centre_maps[key] = self.centre.render(size, (record.height, record.width), sigma)
        return self.centre_maps[key]


def evaluate_agreement(
    images: dict[str, FixationRecord],
    sigma: float | None = None,
    scale: float = 1.0,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Score every (image, held-out run) pair; one row each.

    Args:
        images: one merged record per image (run indices set).
        sigma: Gaussian sd in original-image pixels; None uses :func:`screen_fit_sigma`.
        scale: render maps at this fraction of the original size (coordinates and sigma
            scaled with it); 1 is the original size.
        batch_size: pairs rendered and scored per batch.
        workers: worker processes (0: score in this process, with torch's threads).
        progress: show a tqdm bar.

    Returns:
        DataFrame with ``image_id, run, fixations, other_fixations`` and a
        ``<predictor>_<metric>`` column per predictor and metric, sorted by image and run.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    columns = ["image_id", "run", "fixations", "other_fixations"]
    columns += [f"{predictor}_{metric}" for predictor in PREDICTORS for metric in METRICS]
    pairs = leave_one_run_out(images)
    if not pairs:
        return pd.DataFrame(columns=columns)
    centre = fit_centre_bias(list(images.values()))
    scorer = _BatchScorer(list(_batches(pairs, scale, batch_size)), centre, sigma)
    loader = torch.utils.data.DataLoader(
        scorer, batch_size=None, num_workers=workers, collate_fn=_identity,
        worker_init_fn=_retain_freed_memory,
    )
    if workers == 0:
        _retain_freed_memory()
    parts = []
    with tqdm(total=len(pairs), unit="pair", disable=not progress) as bar:
        for part in loader:
            parts.append(part)
            bar.update(len(part))
    frame = pd.concat(parts, ignore_index=True)[columns]
    order = frame["image_id"].map({image_id: k for k, image_id in enumerate(images)})
    return frame.iloc[np.lexsort((frame["run"].to_numpy(), order.to_numpy()))].reset_index(drop=True)


def _identity(item: pd.DataFrame) -> pd.DataFrame:
    return item


def _retain_freed_memory(worker_id: int = 0) -> None:
    """Ask glibc to keep freed maps in the heap instead of returning them to the system.

    Every batch allocates and frees ~MB tensors; by default glibc serves those with fresh
    ``mmap`` pages, and the page faults cost ~25% of the scoring time. Raising the mmap and
    trim thresholds to glibc's maximum (32 MiB) reuses the memory. No-op elsewhere.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 64 * 1024 * 1024)


def _pair_columns(pairs: Sequence[HeldOutPair]) -> dict[str, list]:
    return {
        "image_id": [p.image_id for p in pairs],
        "run": [p.run for p in pairs],
        "fixations": [len(p.target) for p in pairs],
        "other_fixations": [len(p.others) for p in pairs],
    }


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std of every metric per held-out run and over all pairs.

    Returns:
        One row per run and a last row ``all``; columns ``pairs`` and
        ``"<Metric> <predictor>"`` holding ``"mean ± std"`` strings.
    """
    groups = [(f"run {run}", part) for run, part in frame.groupby("run")] + [("all", frame)]
    table = {}
    for label, part in groups:
        row = {"pairs": str(len(part))}
        for metric in METRICS:
            for predictor in PREDICTORS:
                values = part[f"{predictor}_{metric}"]
                row[f"{METRIC_LABELS[metric]} {predictor}"] = f"{values.mean():.3f} ± {values.std():.3f}"
        table[label] = row
    return pd.DataFrame.from_dict(table, orient="index")


def to_markdown(table: pd.DataFrame, index_name: str = "held-out run") -> str:
    """A pipe table of a small DataFrame (no extra dependency)."""
    header = [index_name] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in zip(table.index, table.values):
        lines.append("| " + " | ".join([str(label)] + [str(value) for value in row]) + " |")
    return "\n".join(lines)


def read_class_labels(path: str | os.PathLike) -> pd.DataFrame:
    """CUB ``image_class_labels.txt`` (``<image_id> <class_id>`` per line) -> DataFrame.

    Class names are taken from ``classes.txt`` (``<class_id> <NNN.Name>``) beside it when
    present, without the ``NNN.`` prefix (as :mod:`cub.dataset` names them); else the class
    id is the name. Malformed lines are errors naming file:line (:func:`gaze.data.read_id_table`).

    Returns:
        DataFrame indexed by image id (str) with columns ``class_id`` (int), ``class_name``.
    """
    path = Path(path)
    labels = {str(i): _class_id(path, row) for i, row in read_id_table(path, 2).items()}
    names_file = path.with_name("classes.txt")
    names = {}
    if names_file.is_file():
        names = {i: row.fields[0].split(".", 1)[-1] for i, row in read_id_table(names_file, 2, last_is_rest=True).items()}
    frame = pd.DataFrame({"class_id": pd.Series(labels, dtype="int64")})
    frame["class_name"] = [names.get(c, str(c)) for c in frame["class_id"]]
    frame.index.name = "image_id"
    return frame


def _class_id(path: Path, row: IdRow) -> int:
    try:
        return int(row.fields[0])
    except ValueError:
        raise TableFormatError(f"{path}:{row.line}: class id {row.fields[0]!r} is not an integer") from None


def plot_agreement(frame: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """Histograms of each metric (human vs centre bias); per-class NSS if ``class_name`` is set.

    Args:
        frame: output of :func:`evaluate_agreement` (optionally with a ``class_name`` column).
        path: PNG to write (atomically).
        title: figure title.
    """
    import matplotlib.pyplot as plt

    from gaze.viz.plots import (
        save_figure,  # first: importing it selects the Agg backend
    )

    with_classes = "class_name" in frame.columns
    figure = plt.figure(figsize=(17, 7.5 if with_classes else 3.8), constrained_layout=True)
    grid = figure.add_gridspec(2 if with_classes else 1, len(METRICS))
    for column, metric in enumerate(METRICS):
        _plot_histograms(figure.add_subplot(grid[0, column]), frame, metric, legend_title=column == 0)
    if with_classes:
        _plot_per_class(figure.add_subplot(grid[1, :]), frame)
    figure.suptitle(title)
    save_figure(figure, path, dpi=110)


def _plot_histograms(axes, frame: pd.DataFrame, metric: str, legend_title: bool) -> None:
    """Overlaid histograms of one metric per predictor (central 99% of values), means dashed."""
    values = frame[[f"{predictor}_{metric}" for predictor in PREDICTORS]].to_numpy()
    bins = np.linspace(*np.nanpercentile(values, [0.5, 99.5]), 60)
    for (predictor, label), colour in zip(PREDICTORS.items(), ("tab:blue", "tab:orange")):
        data = frame[f"{predictor}_{metric}"]
        axes.hist(data, bins=bins, histtype="stepfilled", alpha=0.45, color=colour,
                  label=f"{label if legend_title else predictor}: mean {data.mean():.3f}")
        axes.axvline(data.mean(), color=colour, linestyle="--", linewidth=1.2)
    better = "lower is better" if metric == "kl" else "higher is better"
    axes.set_title(f"{METRIC_LABELS[metric]} ({better})")
    axes.set_xlabel(f"{METRIC_LABELS[metric]} (central 99% of pairs)")
    axes.set_yticks([])
    axes.legend(loc="upper right" if metric == "kl" else "upper left", fontsize=7.5, frameon=False)
    if legend_title:
        axes.set_ylabel("(image, held-out run) pairs")


def _plot_per_class(axes, frame: pd.DataFrame, listed: int = 5) -> None:
    """Per-class mean NSS (human and centre), classes sorted by the human value; extremes named."""
    means = frame.groupby("class_name")[["human_nss", "centre_nss"]].mean().sort_values("human_nss")
    ranks = np.arange(len(means))
    axes.plot(ranks, means["human_nss"], ".-", color="tab:blue", label=PREDICTORS["human"])
    axes.plot(ranks, means["centre_nss"], ".", color="tab:orange", label=PREDICTORS["centre"])
    box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"}
    for title, part, where in (
        ("highest", means.iloc[::-1][:listed], {"x": 0.01, "y": 0.78, "ha": "left", "va": "top"}),
        ("lowest", means.iloc[:listed], {"x": 0.99, "y": 0.03, "ha": "right", "va": "bottom"}),
    ):
        lines = [f"{name}: {value:.2f}" for name, value in part["human_nss"].items()]
        text = f"{title} mean NSS\n" + "\n".join(lines)
        axes.text(s=text, transform=axes.transAxes, fontsize=7.5, bbox=box, **where)
    axes.set_xlabel("class, sorted by mean NSS of the other runs")
    axes.set_ylabel("mean NSS")
    axes.set_title("Per-class mean NSS")
    axes.legend(loc="upper left", fontsize=8, frameon=False)


def load_images(
    path: str | os.PathLike | Sequence[str | os.PathLike], min_duration: float, limit: int | None = None
) -> dict[str, FixationRecord]:
    """Read run files, drop short fixations, pool each image's runs; keep the first ``limit`` ids.

    Args:
        path: run files or a folder of them (:func:`gaze.attention.fixations.read_fixations`).
        min_duration: drop fixations shorter than this, ms.
        limit: keep only the first ``limit`` image ids (None: all).

    Returns:
        image id -> merged record; integer ids (CUB) in numeric order, then other ids sorted.
    """
    records = read_fixations(path).records
    images = merge_by_image(filter_by_duration(r, min_duration) for r in records)
    ids = sorted(images, key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i))
    return {image_id: images[image_id] for image_id in ids[:limit]}


def default_workers(limit: int = 8) -> int:
    """The CPUs this process may use, at most ``limit`` (each worker holds a batch of maps)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, limit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gaze agreement",
        description="Leave-one-run-out agreement of eye-tracking runs vs a centre-bias baseline "
        "(NSS, AUC-Judd at the held-out run's fixations; CC, SIM, KL against its map).",
    )
    add = parser.add_argument
    add("--gaze_file_path", nargs="+", required=True, help="run files or their folder (Fixation_run*.txt)")
    add("--out_dir", default="runs/agreement", help="where agreement.csv and agreement.png go")
    add("--limit", type=int, default=None, help="only the first N image ids")
    add("--sigma", type=float, default=None, help="Gaussian sd, image px (default: 75 screen px, fitted)")
    add("--scale", type=float, default=1.0, help="render at this fraction of the original size (faster)")
    add("--min_duration", type=float, default=DEFAULT_MIN_DURATION_MS, help="drop shorter fixations, ms")
    add("--classes", default=None, help="CUB image_class_labels.txt: class columns and a per-class NSS plot")
    add("--batch_size", type=int, default=8, help="pairs rendered and scored together")
    add("--workers", type=int, default=default_workers(), help="worker processes (0: score in this process)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the agreement analysis; print the table; write agreement.csv and agreement.png."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    images = load_images(args.gaze_file_path, args.min_duration, args.limit)
    loaded = time.perf_counter()
    frame = evaluate_agreement(
        images, args.sigma, args.scale, args.batch_size, args.workers, progress=stderr_is_interactive()
    )
    scored = time.perf_counter()
    if frame.empty:
        raise ValueError(f"{' '.join(args.gaze_file_path)}: no image has fixations from two runs to compare")
    if args.classes:
        labels = read_class_labels(args.classes)
        missing = sorted(set(frame["image_id"]) - set(labels.index))
        if missing:
            raise ValueError(f"{args.classes}: no class label for image id(s) {missing[:5]}")
        frame = frame.join(labels, on="image_id")
    out_dir = Path(args.out_dir)
    with atomic_path(out_dir / "agreement.csv") as temporary:
        frame.to_csv(temporary, index=False, float_format="%.6g")
    title = f"Inter-run agreement: {len(images)} images, {len(frame)} (image, held-out run) pairs"
    plot_agreement(frame, out_dir / "agreement.png", title)
    print(to_markdown(summarise(frame)))
    print(
        f"\n{len(images)} images, {len(frame)} pairs; read {loaded - started:.1f} s, "
        f"scored {scored - loaded:.1f} s, total {time.perf_counter() - started:.1f} s "
        f"(scale {args.scale}, {args.workers} workers); wrote {out_dir / 'agreement.csv'}, "
        f"{out_dir / 'agreement.png'}"
    )
    return 0
