"""Evaluation through a named protocol: accuracy, loss, per-sample outputs and model metrics.

A protocol is a function ``(model, batch) -> logits`` (or a dict with ``logits`` and
per-sample metrics) registered with :func:`register_protocol`; ``eval_protocol`` in the
config chooses it and its name is written beside every number :func:`evaluate` returns.
'single' (one view: ``model.predict(batch)``) and 'flip' (the mean logits of the view and
its horizontal mirror) are built in; CAL's and PIM's views register beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from gaze.atomic import atomic_path
from gaze.engine.dist import all_gather_objects, is_distributed
from gaze.engine.heads import is_head_metric
from gaze.engine.loop import autocast, move_to_device, unwrap_model
from gaze.registries import registrar

#: Config keys this module reads, with the values used when a config lacks them.
EVAL_DEFAULTS = {
    "eval_protocol": "single",   # a registered evaluation protocol: 'single' (one view) | 'flip' (+ mirror) | ...
    "val_loss": "ce",            # validation 'loss': 'ce' (cross-entropy) | 'model' (the model's own loss(batch), e.g. GG-CAM's whole sum)
}

#: Built-in metrics of every evaluation; models and protocols add per-sample ones.
BASE_METRICS = ("top1", "top5", "loss")

#: name -> protocol ``(model, batch) -> logits (B, C) | {"logits": (B, C), "<metric>": (B,), ...}``.
EVAL_PROTOCOLS: dict[str, Callable[[nn.Module, dict], Tensor | dict]] = {}


#: ``@register_protocol(name)`` adds a protocol to :data:`EVAL_PROTOCOLS`.
register_protocol = registrar(EVAL_PROTOCOLS, "evaluation protocol")


@register_protocol("single")
def single_view(model: nn.Module, batch: dict) -> Tensor | dict:
    """One view: the model's own ``predict(batch)`` (resize + centre crop as the loader gives it)."""
    return model.predict(batch)


register_protocol("raw")(single_view)  # CAL's name for the same view


@register_protocol("flip")
def flip_views(model: nn.Module, batch: dict) -> Tensor | dict:
    """The mean logits of the view and its horizontal mirror (gaze and mask mirrored with it)."""
    return model.predict_views(batch, flip=True)


#: The published CAL/WS-DAN validation crop (gradia_cal.md B8) and infer.py's three (B9): (theta, padding).
VALIDATION_CROP = (0.1, 0.05)
TTA_CROPS = ((0.3, 0.1), (0.2, 0.1), (0.1, 0.05))


@register_protocol("raw+crop")
def raw_and_crop(model: nn.Module, batch: dict) -> Tensor | dict:
    """CAL's validation (B8): the mean of the raw view and one attention crop (theta 0.1, padding 0.05)."""
    return model.predict_views(batch, crops=(VALIDATION_CROP,))


@register_protocol("cal_tta")
def cal_tta(model: nn.Module, batch: dict) -> Tensor | dict:
    """CAL's infer.py (B9): the image and its mirror, each raw + crops at (0.3, 0.1), (0.2, 0.1), (0.1, 0.05)."""
    return model.predict_views(batch, crops=TTA_CROPS, flip=True)


def model_metrics(results: Mapping) -> dict[str, float]:
    """The numbers of an evaluation (or its summary) beyond :data:`BASE_METRICS`: the metrics a
    model or protocol reports (GRADIA's ``attention_iou``, ...), in their order."""
    return {k: v for k, v in results.items() if isinstance(v, float) and k not in BASE_METRICS}


def format_model_metrics(results: Mapping) -> str:
    """``", attention_iou 0.163, ..."`` for a report line; '' when there are none (a multi-head
    model's per-head accuracies have their own lines: :func:`gaze.engine.heads.head_lines`)."""
    return "".join(f", {name} {value:.3f}" for name, value in model_metrics(results).items()
                   if not is_head_metric(name))


def check_protocol(name: str) -> None:
    """Raise ValueError naming the registered protocols when ``name`` is not one."""
    if name not in EVAL_PROTOCOLS:
        raise ValueError(f"config key 'eval_protocol': expected one of {', '.join(sorted(EVAL_PROTOCOLS))}, got {name!r}")


def _logits(output: Tensor | Mapping) -> Tensor:
    return output["logits"] if isinstance(output, Mapping) else output


@torch.no_grad()  # not inference_mode: a protocol may re-enable gradients (Grad-CAM metrics)
def evaluate(
    model: nn.Module, loader: Iterable, device: torch.device, amp: torch.dtype | None = None,
    model_loss: bool = False, protocol: str = "single",
) -> dict:
    """Top-1/top-5 accuracy, mean loss, model metrics and per-sample outputs of ``loader``.

    Calls the evaluation ``protocol`` (default 'single': ``model.predict(batch)``); with
    ``model_loss`` it calls ``model.loss(batch)`` instead (in eval mode) and ``loss`` is the
    mean of the model's own total loss (GG-CAM selects and schedules on its whole weighted
    sum, cxr.md §3.4), the batch means weighted by batch size. Under DDP with a
    DistributedSampler, the ranks' outputs are gathered and the sampler's padding removed,
    so every sample counts exactly once and every rank returns the same result.

    Returns:
        ``top1``, ``top5`` (% ; top-5 is top-C when C < 5), ``loss`` (mean CE, or model loss),
        the mean of every per-sample metric the protocol returns (over the samples where it
        is not NaN, e.g. images with a human mask), ``num_samples``,
        ``protocol`` (its name), and in dataset order ``ids`` (list of str), ``labels`` (N,)
        int64, ``probabilities`` (N, C) float32 softmax, ``sample_metrics`` {name: (N,) float,
        NaN where it does not apply}.
    """
    check_protocol(protocol)
    model = unwrap_model(model)
    model.eval()
    ids, columns = [], {"labels": [], "probabilities": [], "losses": []}
    for batch in loader:
        on_device = move_to_device(batch, device)  # image, label, gaze, mask, weights: whatever the batch holds
        batch_labels = on_device["label"]  # (B,)
        with autocast(device, amp):
            outputs = model.loss(on_device) if model_loss else EVAL_PROTOCOLS[protocol](model, on_device)
        logits = _logits(outputs).float()  # (B, C)
        if model_loss:
            columns["losses"].append(outputs["loss"].detach().float().cpu().expand(len(batch_labels)))
        else:
            columns["losses"].append(F.cross_entropy(logits, batch_labels, reduction="none").cpu())
            for name, values in (outputs.items() if isinstance(outputs, Mapping) else ()):
                if name == "logits":
                    continue
                if values.numel() != len(batch_labels):
                    raise ValueError(f"evaluation protocol {protocol!r}: metric {name!r} has {values.numel()} values "
                                     f"for {len(batch_labels)} samples (expected one per sample)")
                columns.setdefault(f"metric_{name}", []).append(values.detach().float().reshape(-1).cpu())
        columns["probabilities"].append(logits.softmax(dim=1).cpu())
        columns["labels"].append(batch_labels.cpu())
        ids.extend(str(i) for i in batch.get("id", range(len(ids), len(ids) + len(batch_labels))))
    outputs = {"ids": ids, **{key: _joined(key, values) for key, values in columns.items()}}
    sampler = getattr(loader, "sampler", None)
    if is_distributed() and isinstance(sampler, DistributedSampler):
        outputs = _gather_shards(outputs, list(iter(sampler))[: len(ids)])
    return {**_accuracy_summary(outputs), "protocol": protocol}


def protocol_scores(model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, dict[str, float]]:
    """{protocol: {'top1', 'top5', model metrics..., 'num_samples'}} of the split under every
    protocol the model's class reports (``report_protocols``; CAL: raw, raw+crop, cal_tta)."""
    scores = {}
    for protocol in unwrap_model(model).report_protocols:
        results = evaluate(model, loader, device, protocol=protocol)
        scores[protocol] = {"top1": results["top1"], "top5": results["top5"], **model_metrics(results),
                            "num_samples": results["num_samples"]}
    return scores


def protocol_lines(scores: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One summary line per protocol of :func:`protocol_scores`."""
    return [f"protocol {protocol!r}: top-1 {values['top1']:.2f}%, top-5 {values['top5']:.2f}%"
            f"{format_model_metrics(values)} on {values['num_samples']} images" for protocol, values in scores.items()]


PROTOCOLS_JSON = "protocols.json"


def report_protocols(model: nn.Module, loader: Iterable, device: torch.device, out_dir) -> list[str]:
    """:func:`protocol_scores` of the split, written to ``<out_dir>/protocols.json`` when the
    method reports any; returns their summary lines."""
    scores = protocol_scores(model, loader, device)
    if scores:
        with atomic_path(Path(out_dir) / PROTOCOLS_JSON) as temporary:
            temporary.write_text(json.dumps(scores, indent=2) + "\n")
    return protocol_lines(scores)


def _joined(key: str, values: list[Tensor]) -> np.ndarray:
    if values:
        return torch.cat(values).numpy()
    return np.zeros((0, 0), np.float32) if key == "probabilities" else np.zeros(0, np.int64 if key == "labels" else np.float32)


def _gather_shards(outputs: dict, indices: list[int]) -> dict:
    """Join every rank's outputs in dataset order, keeping each dataset index once."""
    shards = all_gather_objects((indices, outputs))
    all_indices = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in shards])
    _, first = np.unique(all_indices, return_index=True)  # sorted; drops the padding repeats
    arrays = [key for key in outputs if key != "ids"]
    joined = {
        "ids": [i for _, shard in shards for i in shard["ids"]],
        **{key: np.concatenate([shard[key] for _, shard in shards]) for key in arrays},
    }
    return {"ids": [joined["ids"][k] for k in first], **{key: joined[key][first] for key in arrays}}


def _nanmean(values: np.ndarray) -> float:
    """Mean over the samples a metric applies to (NaN marks the others); NaN when none."""
    known = values[~np.isnan(values)]
    return float(known.mean()) if len(known) else float("nan")


def _accuracy_summary(outputs: dict) -> dict:
    """Add top1, top5, loss, the metric means and num_samples (drops the per-sample columns)."""
    outputs = dict(outputs)
    losses, labels, probabilities = outputs.pop("losses"), outputs["labels"], outputs["probabilities"]
    metrics = {key[len("metric_"):]: outputs.pop(key) for key in list(outputs) if key.startswith("metric_")}
    count = len(labels)
    if count == 0:
        return {**outputs, "top1": float("nan"), "top5": float("nan"), "loss": float("nan"), "num_samples": 0,
                "sample_metrics": metrics}
    k = min(5, probabilities.shape[1])
    top = torch.from_numpy(probabilities).topk(k, dim=1).indices.numpy()  # (N, k)
    hits = top == labels[:, None]
    return {
        **outputs,
        "top1": 100.0 * float(hits[:, 0].mean()),
        "top5": 100.0 * float(hits.any(axis=1).mean()),
        "loss": float(losses.mean()),
        **{name: _nanmean(values) for name, values in metrics.items()},
        "num_samples": count,
        "sample_metrics": metrics,
    }
