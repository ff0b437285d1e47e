"""The heads of a multi-head model: their accuracies, the head chosen on VALIDATION and scored
once on test, and ``eval_results.txt`` in PIM's layout (cub_pim.md §3.6).

A model with several classification heads reports, per sample from ``predict``, the metrics
``top1_<head>`` and ``top3_<head>`` (PIM: layer1-4, combiner, highest-1..5); :func:`evaluate`
averages them like any metric. Fixed: the published PIM reports the best of its ~14 test
numbers (the head chosen on the test set); here the head is chosen on validation and that
head's test accuracy is the one reported. The published pick is still written, labelled so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from gaze.atomic import atomic_path

#: A per-sample head metric: ``top<k>_<head>``.
HEAD_METRIC = re.compile(r"^top([13])_(.+)$")
EVAL_RESULTS_TXT = "eval_results.txt"
HEADS_JSON = "heads.json"


def head_accuracies(results: Mapping | None) -> dict[str, dict[str, float]]:
    """{head: {'top1': %, 'top3': %}} from an evaluation's (or summary's) head metrics, in the
    model's order; {} for a model with one head or no results."""
    table: dict[str, dict[str, float]] = {}
    for key, value in (results or {}).items():
        match = HEAD_METRIC.match(key)
        if match and isinstance(value, float):
            table.setdefault(match.group(2), {})[f"top{match.group(1)}"] = value
    return table


def is_head_metric(name: str) -> bool:
    """Whether a metric name is one of :func:`head_accuracies`' (kept out of summary lines)."""
    return HEAD_METRIC.match(name) is not None


def choose_head(val: Mapping[str, Mapping[str, float]]) -> str:
    """The head of highest validation top-1 (the first in the model's order on ties)."""
    if not val:
        raise ValueError("no head accuracies to choose among")
    return max(val, key=lambda head: val[head]["top1"])


def published_best(test: Mapping[str, Mapping[str, float]]) -> tuple[str, float]:
    """PIM's ``BEST_ACC``: the highest top-1 over every head ON THE TEST SET (``<head>-top-1``)."""
    head = choose_head(test)
    return f"{head}-top-1", test[head]["top1"]


def eval_results_text(project: str, experiment: str, num_samples: int,
                      test: Mapping[str, Mapping[str, float]], val: Mapping[str, Mapping[str, float]] | None) -> str:
    """``eval_results.txt``: PIM's "[Evaluation Results]" header, project and experiment, sample
    count and a ``<head>-top-k acc%`` line per metric (3 decimals), then its BEST_ACC (chosen on
    test, labelled so) and, with validation numbers, the head chosen on validation."""
    lines = ["[Evaluation Results]", f"Project: {project}, Experiment: {experiment}", f"Samples: {num_samples}", ""]
    lines += [f"    {head}-top-{k} {accuracies[f'top{k}']:.3f}%" for head, accuracies in test.items() for k in (1, 3)
              if f"top{k}" in accuracies]
    name, accuracy = published_best(test)
    lines += ["", f"BEST_ACC: {name} {accuracy:.3f}% (as published: the best of the test numbers, chosen ON TEST)"]
    if val:
        head = choose_head(val)
        lines.append(f"CHOSEN_ON_VALIDATION: {head}-top-1 val {val[head]['top1']:.3f}% -> test {test[head]['top1']:.3f}%")
    return "\n".join(lines) + "\n"


def head_lines(test: Mapping[str, Mapping[str, float]], val: Mapping[str, Mapping[str, float]] | None) -> list[str]:
    """Summary lines: every head's val and test top-1/top-3, then the validation-chosen head."""
    lines = []
    for head, accuracies in test.items():
        on_val = f"val top-1 {val[head]['top1']:.2f}%, " if val and head in val else ""
        lines.append(f"head {head}: {on_val}test top-1 {accuracies['top1']:.2f}%, top-3 {accuracies['top3']:.2f}%")
    if val:
        head = choose_head(val)
        lines.append(f"head chosen on validation: {head} (val top-1 {val[head]['top1']:.2f}%) -> "
                     f"test top-1 {test[head]['top1']:.2f}%, top-3 {test[head]['top3']:.2f}%")
    name, accuracy = published_best(test)
    lines.append(f"(the published pick, chosen on test: {name} {accuracy:.2f}%)")
    return lines


def checkpoint_run_names(path: str | Path) -> tuple[str, str]:
    """(project, experiment) of a checkpoint for eval_results.txt: its run folder and the one above
    (PIM's records/<project>/<experiment>/backup/best.pt: the folders above backup/)."""
    run = Path(path).resolve().parent
    if run.name == "backup":
        run = run.parent
    return run.parent.name, run.name


def report_heads(test: Mapping | None, val: Mapping | None, out_dir, project: str, experiment: str) -> list[str]:
    """Write ``eval_results.txt`` and ``heads.json`` ({'chosen_on_val', 'val', 'test'}) of a
    multi-head model's test (and validation) results to ``out_dir``; returns the summary lines
    ([] and nothing written for a one-head model)."""
    test_heads, val_heads = head_accuracies(test), head_accuracies(val) or None
    if not test_heads:
        return []
    out_dir = Path(out_dir)
    with atomic_path(out_dir / EVAL_RESULTS_TXT) as temporary:
        temporary.write_text(eval_results_text(project, experiment, test["num_samples"], test_heads, val_heads))
    record = {"chosen_on_val": choose_head(val_heads) if val_heads else None, "val": val_heads, "test": test_heads}
    with atomic_path(out_dir / HEADS_JSON) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    return head_lines(test_heads, val_heads)
