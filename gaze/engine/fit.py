"""Training and evaluation: fit / train_one_epoch / evaluate, checkpoints, resume, AMP, DDP.

The shape of torchvision's ``references/classification`` (specs/style.md §1.3), fixing
the published CUB-GHA loop's defects (cub_pim.md §1.8, §4):

* the best epoch is chosen on the **validation** split (``select_metric``), never on test;
  the test split is evaluated once, at the end, with the best weights;
* ``ckpt_last.pt`` (every epoch) and ``ckpt_best.pt`` (on improvement) hold model,
  optimizer, scheduler, GradScaler, epoch and best metric, so a resumed run continues
  the schedule, the momentum and the best-model choice; the published resume lost all
  three (cub_pim.md §4.3);
* every epoch reseeds torch/NumPy/random from ``seed``, the epoch and the rank, so a
  resumed run gives the same weights and metrics as an uninterrupted one.

Single process: ``python cub/train.py``. Several GPUs (or CPU processes, gloo):
``torchrun --nproc_per_node=N cub/train.py``: each rank gets a DistributedSampler shard of
``batch_size`` images (the global batch is ``N * batch_size``), the model is wrapped in
DistributedDataParallel, and only rank 0 logs and writes files.

Model contract (DESIGN.md §2): ``model(images, gaze=None) -> logits`` (B, C) and
``model.loss(batch) -> {"loss": total, "loss_ce": ..., ["logits": (B, C)]}``; the engine
sets ``model.epoch`` (1-based) at each epoch start for losses that depend on it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
)

import gaze
from gaze.atomic import atomic_path, remove_stale_temporaries
from gaze.config import format_config, save_config
from gaze.engine.dist import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    distributed_session,
    epoch_seed,
    is_distributed,
    is_main_process,
    seed_everything,
)
from gaze.engine.logging import (
    Progress,
    TensorBoard,
    append_metrics_row,
    get_logger,
    log_versions,
    read_metrics,
    setup_logging,
    truncate_metrics,
)
from gaze.torch_files import load_torch_file

#: Config keys the engine reads, with the values used when a config lacks them: the
#: published CUB-GHA recipe (cub_pim.md §1.3: SGD momentum 0.9, lr 1e-3, weight decay
#: 1e-4, MultiStepLR [50, 100] x0.1 per epoch, 150 epochs, seed 1142).
ENGINE_DEFAULTS = {
    "device": "auto",            # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:N' | 'mps'
    "seed": 1142,
    "end_epoch": 150,            # last epoch (1-based, inclusive)
    "optimizer": "sgd",          # 'sgd' | 'adam' | 'adamw'
    "init_lr": 1e-3,
    "momentum": 0.9,             # SGD only
    "nesterov": False,           # SGD only
    "weight_decay": 1e-4,
    "lr_schedule": "multistep",  # 'multistep' | 'cosine' | 'constant' | 'plateau'
    "lr_milestones": [50, 100],  # multistep: epochs after which the lr is multiplied ...
    "lr_decay_rate": 0.1,        # ... by this
    "warmup_epochs": 0.0,        # linear warm-up over this many epochs (per step)
    "min_lr": 0.0,               # cosine: final lr
    "plateau_patience": 40,      # plateau: epochs without improvement of select_metric before lr *= lr_decay_rate
    "reload_best_on_lr_drop": False,  # plateau: reload the best weights and optimizer state when the lr drops (GG-CAM)
    "early_stop_patience": None,  # stop after this many epochs without a new best (None: never)
    "stop_lr": None,             # stop once the lr falls below this (GG-CAM: 1e-8; None: never)
    "val_loss": "ce",            # validation 'loss': 'ce' (cross-entropy) | 'model' (the model's own loss(batch), e.g. GG-CAM's whole sum)
    "amp": None,                 # None/False | 'bf16' | 'fp16' (CUDA only; fp16 uses a GradScaler)
    "clip_grad_norm": None,      # max gradient norm, None: no clipping
    "select_metric": "top1",     # validation metric choosing ckpt_best: 'top1' | 'top5' | 'loss'
    "resume": True,              # continue from run_dir/ckpt_last.pt when it exists
    "log_interval": 50,          # steps between log lines (when stderr is not a terminal)
    "deterministic": False,      # torch.use_deterministic_algorithms (slower on GPU)
    "channels_last": True,       # convolution weights in channels-last memory layout (a GAT step on CPU: 2.1x faster)
    "find_unused_parameters": False,  # DDP: set for models with branches unused in a step
    "dist_timeout_minutes": 10.0,  # DDP: a rank waits this long for the others, then names the missing ranks
    "write_reports": True,       # classification reports of the best model at the end
    "class_names": None,         # names for reports; None: the dataset's `classes` if any
}

CKPT_LAST = "ckpt_last.pt"
CKPT_BEST = "ckpt_best.pt"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "training_curves.png"


# --------------------------------------------------------------------------- optimisation
def build_optimizer(params: Iterable, config: Mapping) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW with ``init_lr`` and ``weight_decay``.

    Args:
        params: parameters or parameter groups.
        config: keys ``optimizer``, ``init_lr``, ``momentum``, ``nesterov``, ``weight_decay``.
    """
    config = {**ENGINE_DEFAULTS, **config}
    name = str(config["optimizer"]).lower()
    lr, decay = config["init_lr"], config["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config["momentum"], weight_decay=decay,
                               nesterov=bool(config["nesterov"]))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    raise ValueError(f"config key 'optimizer': expected 'sgd', 'adam' or 'adamw', got {name!r}")


def lr_factor(
    step: int,
    schedule: str,
    steps_per_epoch: int,
    total_epochs: int,
    warmup_epochs: float,
    milestones: tuple[int, ...],
    decay_rate: float,
    min_factor: float,
) -> float:
    """Multiplier of the initial lr before optimizer step ``step`` (0-based).

    * ``multistep``: ``decay_rate ** (number of milestones m with m <= completed epochs)``,
      constant within an epoch: the published MultiStepLR stepped once per epoch
      (epochs 1-50 at 1e-3, 51-100 at 1e-4, 101-150 at 1e-5; cub_pim.md §1.3).
    * ``cosine``: per step, ``min + (1 - min) * (1 + cos(pi * t / T)) / 2`` with t and T
      counted after the warm-up, so the last step reaches ``min_lr`` (PIM divides by the
      whole length instead and never gets there, cub_pim.md §3.5).
    * ``constant`` and ``plateau``: 1 (``plateau`` changes the lr per epoch through
      :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`, see :func:`build_plateau`).
    * warm-up: times ``(step + 1) / warmup_steps`` during the first warm-up steps.
    """
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if schedule == "multistep":
        completed_epochs = step // steps_per_epoch
        factor = decay_rate ** sum(completed_epochs >= m for m in milestones)
    elif schedule == "cosine":
        span = max(total_epochs * steps_per_epoch - warmup_steps, 1)
        progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
        factor = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule in ("constant", "plateau"):
        factor = 1.0
    else:
        raise ValueError(
            f"config key 'lr_schedule': expected 'multistep', 'cosine', 'constant' or 'plateau', got {schedule!r}")
    if step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: Mapping, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped after every optimizer step (see :func:`lr_factor`).

    Args:
        optimizer: from :func:`build_optimizer`.
        config: keys ``lr_schedule``, ``end_epoch``, ``warmup_epochs``, ``lr_milestones``,
            ``lr_decay_rate``, ``min_lr``.
        steps_per_epoch: optimizer steps per epoch (``len(train_loader)``).
    """
    config = {**ENGINE_DEFAULTS, **config}
    factors = []
    for group in optimizer.param_groups:
        base_lr = group.get("initial_lr", group["lr"])
        factors.append(functools.partial(  # a partial (not a lambda) keeps state_dict primitive
            lr_factor,
            schedule=str(config["lr_schedule"]).lower(),
            steps_per_epoch=max(int(steps_per_epoch), 1),
            total_epochs=int(config["end_epoch"]),
            warmup_epochs=float(config["warmup_epochs"]),
            milestones=tuple(config["lr_milestones"] or ()),
            decay_rate=float(config["lr_decay_rate"]),
            min_factor=float(config["min_lr"]) / base_lr if base_lr else 0.0,
        ))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def build_plateau(optimizer: torch.optim.Optimizer, config: Mapping) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """ReduceLROnPlateau on the validation ``select_metric`` when ``lr_schedule='plateau'``, else None.

    GG-CAM's schedule (cxr.md §3.5): mode min on the validation loss, factor
    ``lr_decay_rate`` (0.1), patience ``plateau_patience`` (40), eps 0; stepped once per epoch.
    """
    config = {**ENGINE_DEFAULTS, **config}
    if str(config["lr_schedule"]).lower() != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min" if "loss" in config["select_metric"] else "max",
        factor=float(config["lr_decay_rate"]), patience=int(config["plateau_patience"]), eps=0.0)


def amp_dtype(amp: object, device: torch.device) -> torch.dtype | None:
    """``amp`` config value -> autocast dtype, or None (off; always off outside CUDA)."""
    if amp in (None, False, "", "none", "no", "false", "fp32"):
        return None
    dtypes = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if amp not in dtypes:
        raise ValueError(f"config key 'amp': expected None, False, 'bf16' or 'fp16', got {amp!r}")
    if device.type != "cuda":
        get_logger().warning("amp=%r ignored: mixed precision runs on CUDA only (device %s)", amp, device)
        return None
    return dtypes[amp]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast on CUDA with ``dtype``; a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- models
class LossForward(nn.Module):
    """``forward(batch) -> model.loss(batch)``: the module DDP wraps.

    DDP synchronises gradients only through its own ``forward``; calling ``model.loss``
    on the inner module would bypass it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.loss(batch)


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel, :class:`LossForward` and torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(model, LossForward):
            model = model.model
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def move_to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch to ``device`` (non-blocking); other values unchanged."""
    return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()}


# --------------------------------------------------------------------------- one epoch
def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device,
    epoch: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: torch.dtype | None = None,
    clip_grad_norm: float | None = None,
    log_interval: int = 50,
) -> dict[str, float]:
    """One pass over ``loader``: loss, backward, optimizer (and per-step scheduler) step.

    Args:
        model: a contract model (``model.loss(batch)``), or a module whose
            ``forward(batch)`` returns that dict (:class:`LossForward`, possibly DDP-wrapped).
        scaler: a GradScaler for fp16 (None or disabled: plain backward/step).
        amp: autocast dtype (None: full precision).

    Returns:
        means over the epoch's samples (all ranks) of every scalar ``loss*`` output, ``top1``
        (%) when the model returns ``logits``, and ``lr`` at the epoch start, ``images_per_second``,
        ``epoch_time`` (s).
    """
    model.train()
    compute_losses = model.loss if hasattr(model, "loss") else model
    scaler = scaler or torch.amp.GradScaler("cuda", enabled=False)  # disabled: plain backward/step
    parameters = [p for p in model.parameters() if p.requires_grad]
    progress = Progress(loader, f"epoch {epoch}", log_interval, enabled=is_main_process())
    totals = EpochTotals(lr=optimizer.param_groups[0]["lr"])
    for step, batch in enumerate(progress):
        batch = move_to_device(batch, device)
        with autocast(device, amp):
            outputs = compute_losses(batch)
        if not torch.isfinite(outputs["loss"]):
            raise FloatingPointError(f"epoch {epoch} step {step}: non-finite loss {scalar_losses(outputs)}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(outputs["loss"]).backward()
        if clip_grad_norm:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        parts = totals.add(outputs, batch["label"])
        progress.update(len(batch["label"]), lr=optimizer.param_groups[0]["lr"], **parts)
    return totals.means(device)


def scalar_losses(outputs: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The scalar ``loss*`` (and learnt loss weights ``sigma*``) entries of a model's loss dict, as floats."""
    return {k: float(v.detach()) for k, v in outputs.items() if k.startswith(("loss", "sigma")) and v.ndim == 0}


class EpochTotals:
    """Sample-weighted sums of one epoch's losses and train accuracy; means over all ranks."""

    def __init__(self, lr: float) -> None:
        self.lr = lr  # at the epoch start
        self.sums: dict[str, float] = {}
        self.samples = 0
        self.correct = 0
        self.has_logits = False
        self.start = time.perf_counter()

    def add(self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        """Add one step; return its scalar losses."""
        parts = scalar_losses(outputs)
        size = len(labels)
        for name, value in parts.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * size
        self.samples += size
        if "logits" in outputs:
            self.has_logits = True
            self.correct += int((outputs["logits"].detach().argmax(dim=1) == labels).sum())
        return parts

    def means(self, device: torch.device) -> dict[str, float]:
        """Means over every rank's samples (one all-reduce), lr, throughput and time."""
        seconds = time.perf_counter() - self.start
        names = sorted(self.sums)  # the same order on every rank
        totals = torch.tensor([self.sums[n] for n in names] + [self.samples, self.correct], dtype=torch.float64)
        if is_distributed():  # nccl reduces CUDA tensors only
            totals = all_reduce_sum(totals.to(device)).cpu()
        samples = max(float(totals[-2]), 1.0)
        means = {name: float(totals[i]) / samples for i, name in enumerate(names)}
        if self.has_logits:
            means["top1"] = 100.0 * float(totals[-1]) / samples
        means.update(lr=self.lr, images_per_second=float(totals[-2]) / max(seconds, 1e-9), epoch_time=seconds)
        return means


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: Iterable, device: torch.device, amp: torch.dtype | None = None,
    model_loss: bool = False,
) -> dict:
    """Top-1/top-5 accuracy, mean loss and per-sample outputs of ``loader``.

    Calls ``model(images, gaze=batch.get("gaze"))``; with ``model_loss`` it calls
    ``model.loss(batch)`` instead (in eval mode) and ``loss`` is the mean of the model's own
    total loss (GG-CAM selects and schedules on its whole weighted sum, cxr.md §3.4), the
    batch means weighted by batch size. Under DDP with a DistributedSampler,
    the ranks' outputs are gathered and the sampler's padding removed, so every sample
    counts exactly once and every rank returns the same result.

    Returns:
        ``top1``, ``top5`` (% ; top-5 is top-C when C < 5), ``loss`` (mean CE, or model loss),
        ``num_samples``, and in dataset order ``ids`` (list of str), ``labels`` (N,) int64,
        ``probabilities`` (N, C) float32 softmax.
    """
    model = unwrap_model(model)
    model.eval()
    ids, labels, probabilities, losses = [], [], [], []
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)  # (B, 3, H, W)
        batch_labels = batch["label"].to(device, non_blocking=True)  # (B,)
        gaze_maps = batch.get("gaze")
        gaze_maps = gaze_maps.to(device, non_blocking=True) if gaze_maps is not None else None
        with autocast(device, amp):
            if model_loss:
                outputs = model.loss({**batch, "image": images, "label": batch_labels, "gaze": gaze_maps})
                logits = outputs["logits"]
            else:
                logits = model(images, gaze=gaze_maps)
        logits = logits.float()  # (B, C)
        if model_loss:
            losses.append(outputs["loss"].detach().float().cpu().expand(len(batch_labels)))
        else:
            losses.append(F.cross_entropy(logits, batch_labels, reduction="none").cpu())
        probabilities.append(logits.softmax(dim=1).cpu())
        labels.append(batch_labels.cpu())
        ids.extend(str(i) for i in batch.get("id", range(len(ids), len(ids) + len(batch_labels))))
    outputs = {
        "ids": ids,
        "labels": torch.cat(labels).numpy() if labels else np.zeros(0, np.int64),
        "probabilities": torch.cat(probabilities).numpy() if probabilities else np.zeros((0, 0), np.float32),
        "losses": torch.cat(losses).numpy() if losses else np.zeros(0, np.float32),
    }
    sampler = getattr(loader, "sampler", None)
    if is_distributed() and isinstance(sampler, DistributedSampler):
        outputs = _gather_shards(outputs, list(iter(sampler))[: len(ids)])
    return _accuracy_summary(outputs)


def _gather_shards(outputs: dict, indices: list[int]) -> dict:
    """Join every rank's outputs in dataset order, keeping each dataset index once."""
    shards = all_gather_objects((indices, outputs))
    all_indices = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in shards])
    _, first = np.unique(all_indices, return_index=True)  # sorted; drops the padding repeats
    joined = {
        "ids": [i for _, shard in shards for i in shard["ids"]],
        **{key: np.concatenate([shard[key] for _, shard in shards]) for key in ("labels", "probabilities", "losses")},
    }
    return {"ids": [joined["ids"][k] for k in first],
            **{key: joined[key][first] for key in ("labels", "probabilities", "losses")}}


def _accuracy_summary(outputs: dict) -> dict:
    """Add top1, top5, loss and num_samples to gathered outputs (drops per-sample losses)."""
    outputs = dict(outputs)
    losses, labels, probabilities = outputs.pop("losses"), outputs["labels"], outputs["probabilities"]
    count = len(labels)
    if count == 0:
        return {**outputs, "top1": float("nan"), "top5": float("nan"), "loss": float("nan"), "num_samples": 0}
    k = min(5, probabilities.shape[1])
    top = torch.from_numpy(probabilities).topk(k, dim=1).indices.numpy()  # (N, k)
    hits = top == labels[:, None]
    return {
        **outputs,
        "top1": 100.0 * float(hits[:, 0].mean()),
        "top5": 100.0 * float(hits.any(axis=1).mean()),
        "loss": float(losses.mean()),
        "num_samples": count,
    }


# --------------------------------------------------------------------------- checkpoints
def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) key prefixes."""
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def plain_config(value: object) -> object:
    """A config made of primitives only (Paths and other objects become strings)."""
    if isinstance(value, Mapping):
        return {str(key): plain_config(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_config(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_checkpoint(path: str | os.PathLike, checkpoint: Mapping) -> Path:
    """``torch.save`` to a temporary file, then rename onto ``path``."""
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(dict(checkpoint), temporary)
    return path


def make_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int = 0,
    best_metric: float | None = None,
    config: Mapping | None = None,
    best_epoch: int = 0,
) -> dict:
    """The DESIGN.md §2 checkpoint dict (plus ``best_epoch``): tensors and primitives only."""
    model = unwrap_model(model)
    return {
        "model": clean_state_dict(model.state_dict()),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "best_epoch": int(best_epoch),
        "model_name": model_name(model),
        "config": plain_config(dict(config or {})),
        "version": gaze.__version__,
    }


def model_name(model: nn.Module) -> str:
    """The registry name of a model (its ``name`` attribute), else its class name."""
    return str(getattr(unwrap_model(model), "name", type(unwrap_model(model)).__name__))


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    expected_model_name: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Load a checkpoint with ``weights_only=True``; optionally put its weights into ``model``.

    Args:
        path: a checkpoint written by :func:`save_checkpoint`.
        model: receives ``checkpoint["model"]`` (``module.``/``_orig_mod.`` stripped), strictly.
        expected_model_name: the registry name the checkpoint must hold; by default the
            model's ``name`` attribute when a model is given.

    Returns:
        the checkpoint dict.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file (:class:`gaze.torch_files.CheckpointFileError`), not a
            gaze checkpoint, a checkpoint of another model, or weights that do not fit the
            model (names both and the first differing keys).
    """
    path = Path(path)
    checkpoint = load_torch_file(path, map_location)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a gaze checkpoint (expected a dict with 'model', found {found})")
    expected = expected_model_name or (getattr(unwrap_model(model), "name", None) if model is not None else None)
    found_name = checkpoint.get("model_name")
    if expected is not None and found_name is not None and found_name != expected:
        raise ValueError(f"{path} holds weights of model {found_name!r}, but model {expected!r} was expected")
    if model is not None:
        _load_weights(unwrap_model(model), clean_state_dict(checkpoint["model"]), path, found_name)
    return checkpoint


def _load_weights(model: nn.Module, state_dict: dict, path: Path, found_name: str | None) -> None:
    """``load_state_dict`` with an error naming the file, both models and the first bad keys."""
    target = f"{type(model).__name__} ({getattr(model, 'name', '?')})"
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"{path}: weights of {found_name!r} do not fit {target}: {error}") from error
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights of {found_name!r} do not fit {target}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


# --------------------------------------------------------------------------- fit
def fit(model: nn.Module, loaders: Mapping[str, DataLoader], config: Mapping, run_dir: str | os.PathLike) -> dict:
    """Train, select the best epoch on validation, then test it; resume from ``ckpt_last.pt``.

    Args:
        model: a contract model (``forward(images, gaze=None)``, ``loss(batch)``, ``name``).
        loaders: ``"train"``, optionally ``"val"`` (none or None: no selection, the last
            epoch is the result) and ``"test"`` DataLoaders. Under torchrun
            they are rebuilt around a DistributedSampler (same dataset, batch size, workers).
        config: a plain dict; the keys of :data:`ENGINE_DEFAULTS` are read (defaults there).
        run_dir: written on rank 0: config.json (+ config file copies), train.log,
            metrics.csv, tensorboard/, ckpt_last.pt, ckpt_best.pt, training_curves.png,
            reports of the best model (val_* and, with a test loader, the unprefixed ones),
            summary.json.

    Returns:
        summary: ``best_epoch``, ``best_metric``, ``select_metric``, ``val`` and ``test``
        (None without that loader) metrics of the best weights (top1, top5, loss,
        num_samples), ``run_dir``.
    """
    config = {**ENGINE_DEFAULTS, **config}
    with distributed_session(config["device"], float(config["dist_timeout_minutes"])) as (device, info):
        return _fit(model, loaders, config, Path(run_dir), device, info)


def _fit(model, loaders, config, run_dir: Path, device: torch.device, info: DistInfo) -> dict:
    """The body of :func:`fit` once the device and the process group are set."""
    _check_config(config)
    archived = _prepare_run_dir(run_dir, bool(config["resume"])) if info.is_main else None
    barrier()  # no rank looks into the run folder before it is ready
    logger = setup_logging(run_dir if info.is_main else None, info.rank)
    if archived is not None:
        logger.info("resume=False: the previous run in %s was moved to %s", run_dir, archived)
    log_versions(logger)
    logger.info("config:\n%s", format_config(config))
    if info.is_main:
        save_config(plain_config(config), run_dir)
    _configure_determinism(bool(config["deterministic"]))
    seed_everything(int(config["seed"]) + info.rank)
    model.to(device, memory_format=torch.channels_last if config["channels_last"] else torch.contiguous_format)
    loaders = {name: loader for name, loader in loaders.items() if loader is not None}
    _check_validation(config, loaders)
    if info.distributed:
        loaders = {name: distributed_loader(loader, int(config["seed"])) for name, loader in loaders.items()}
    train_loader = loaders["train"]
    logger.info("device %s, %d process(es), global batch %s, %d steps per epoch", device, info.world_size,
                (train_loader.batch_size or 0) * info.world_size, len(train_loader))
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], config)
    scheduler = build_scheduler(optimizer, config, len(train_loader))
    plateau = build_plateau(optimizer, config)
    dtype = amp_dtype(config["amp"], device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    state = {"start_epoch": 1, "best_metric": None, "best_epoch": 0}
    if config["resume"] and (run_dir / CKPT_LAST).is_file():
        state = _resume(run_dir, model, optimizer, scheduler, scaler, config, info, plateau)
    train_module = _training_module(model, device, info, config)
    board = TensorBoard(run_dir / "tensorboard", enabled=info.is_main)
    model_loss = config["val_loss"] == "model"
    try:
        for epoch in range(state["start_epoch"], int(config["end_epoch"]) + 1):
            _start_epoch(model, train_loader, config, epoch, info.rank)
            train_stats = train_one_epoch(
                train_module, optimizer, train_loader, device, epoch, scheduler, scaler, dtype,
                config["clip_grad_norm"], int(config["log_interval"]))
            broadcast_buffers(model)  # every rank validates rank 0's model, the one saved
            if "val" in loaders:
                val = evaluate(model, loaders["val"], device, dtype, model_loss)
                improved = _is_better(val[config["select_metric"]], state["best_metric"], config["select_metric"])
            else:  # no validation split: every epoch is the newest best, the last one is kept
                val, improved = NO_VALIDATION, True
            if improved:
                best = None if val is NO_VALIDATION else val[config["select_metric"]]
                state.update(best_metric=best, best_epoch=epoch)
            _log_epoch(logger, board, run_dir, epoch, config, train_stats, val, state, info)
            if plateau is not None:
                _plateau_step(plateau, val[config["select_metric"]], model, optimizer, run_dir, config, improved, logger)
            if info.is_main:
                _save_epoch(run_dir, model, optimizer, scheduler, scaler, epoch, state, config, improved, plateau)
            barrier()  # ranks > 0 wait for the checkpoint
            if _should_stop(epoch, state, optimizer, config, logger):
                break
    finally:
        board.close()
    return _finish(model, loaders, config, run_dir, device, dtype, state, info, logger)


#: Files that show a run folder holds a run.
RUN_FILES = (CKPT_LAST, CKPT_BEST, METRICS_CSV, "config.json")


def _prepare_run_dir(run_dir: Path, resume: bool) -> Path | None:
    """Clean a run folder before a run starts; return where a previous run was moved, if anywhere.

    Temporary files of a writer killed mid-write are deleted (a resumed run would keep them
    forever). ``resume=False`` in a folder holding a run moves that run aside to
    ``<name>.previous-<YYYYmmdd-HHMMSS>`` (nothing is lost, and nothing of it mixes into the
    new run's metrics, plots or checkpoints); ``resume=True`` continues it.
    """
    if not run_dir.is_dir():
        return None
    remove_stale_temporaries(run_dir)
    if resume or not any((run_dir / name).exists() for name in RUN_FILES):
        return None
    stamp = f"{run_dir.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
    archive, suffix = run_dir.with_name(stamp), 1
    while archive.exists():  # two restarts within one second
        archive, suffix = run_dir.with_name(f"{stamp}-{suffix}"), suffix + 1
    run_dir.rename(archive)
    return archive


def _plateau_step(plateau, value: float, model, optimizer, run_dir: Path, config: Mapping, improved: bool,
                  logger) -> None:
    """Step ReduceLROnPlateau; on an lr drop optionally go back to the best weights and optimizer state.

    GG-CAM (cxr.md §3.5) reloads the best net and optimizer when the lr drops and keeps the
    new lr. The reload happens before this epoch's checkpoint is written, so a resumed run
    continues from exactly the same state.
    """
    before = [group["lr"] for group in optimizer.param_groups]
    plateau.step(value)
    after = [group["lr"] for group in optimizer.param_groups]
    if after == before:
        return
    logger.info("validation %s did not improve for %d epochs: lr %.3g -> %.3g", config["select_metric"],
                plateau.patience + 1, before[0], after[0])
    best_path = run_dir / CKPT_BEST
    if config["reload_best_on_lr_drop"] and not improved and best_path.is_file():
        checkpoint = load_checkpoint(best_path, model)
        optimizer.load_state_dict(checkpoint["optimizer"])
        for group, lr in zip(optimizer.param_groups, after):
            group["lr"] = lr
        logger.info("reloaded the best weights and optimizer state of epoch %d", checkpoint.get("best_epoch", 0))


def _should_stop(epoch: int, state: Mapping, optimizer, config: Mapping, logger) -> bool:
    """Early stop: ``early_stop_patience`` epochs without a new best, or the lr below ``stop_lr``."""
    patience, stop_lr = config["early_stop_patience"], config["stop_lr"]
    if patience is not None and epoch - state["best_epoch"] >= int(patience):
        logger.info("early stop at epoch %d: no new best for %d epochs", epoch, epoch - state["best_epoch"])
        return True
    if stop_lr is not None and optimizer.param_groups[0]["lr"] < float(stop_lr):
        logger.info("early stop at epoch %d: lr %.3g below stop_lr %.3g", epoch, optimizer.param_groups[0]["lr"],
                    float(stop_lr))
        return True
    return False


#: The validation "metrics" of an epoch when fit() has no validation loader.
NO_VALIDATION = {"loss": float("nan"), "top1": float("nan"), "top5": float("nan"), "num_samples": 0}


def _check_validation(config: Mapping, loaders: Mapping) -> None:
    """Without a validation loader the last epoch is kept; schedules that watch validation need one."""
    if "val" in loaders:
        return
    watching = [key for key, on in (("lr_schedule='plateau'", str(config["lr_schedule"]).lower() == "plateau"),
                                    ("early_stop_patience", config["early_stop_patience"] is not None)) if on]
    if watching:
        raise ValueError(f"{' and '.join(watching)} watch the validation split, but there is none "
                         "(val_fraction=0?): give a validation split or turn them off")
    get_logger().info("no validation split: every epoch is kept as the newest, the last one is the result")


def _check_config(config: Mapping) -> None:
    """Fail before training on values the loop would only trip over later."""
    if config["select_metric"] not in ("top1", "top5", "loss"):
        raise ValueError(f"config key 'select_metric': expected 'top1', 'top5' or 'loss', "
                         f"got {config['select_metric']!r}")
    if config["val_loss"] not in ("ce", "model"):
        raise ValueError(f"config key 'val_loss': expected 'ce' or 'model', got {config['val_loss']!r}")
    if int(config["end_epoch"]) < 1:
        raise ValueError(f"config key 'end_epoch': expected at least 1, got {config['end_epoch']!r}")


def _training_module(model: nn.Module, device: torch.device, info: DistInfo, config: Mapping) -> nn.Module:
    """:class:`LossForward` around the model, DDP-wrapped when several processes run."""
    module = LossForward(model)
    if not info.distributed:
        return module
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(config["find_unused_parameters"]))


def distributed_loader(loader: DataLoader, seed: int) -> DataLoader:
    """The same loader over this rank's DistributedSampler shard (shuffled iff ``loader`` was)."""
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    if loader.batch_size is None or not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        raise ValueError(
            f"under DDP the engine shards loaders with a DistributedSampler; this loader has "
            f"{type(loader.sampler).__name__} and batch_size={loader.batch_size}: pass a loader "
            "with a DistributedSampler (or a plain shuffled/sequential one)")
    sampler = DistributedSampler(loader.dataset, shuffle=isinstance(loader.sampler, RandomSampler), seed=seed)
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        prefetch_factor=loader.prefetch_factor if loader.num_workers > 0 else None,
        persistent_workers=loader.persistent_workers)


def _configure_determinism(deterministic: bool) -> None:
    """Deterministic kernels when asked (cuBLAS needs its workspace setting first)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _start_epoch(model: nn.Module, loader: DataLoader, config: Mapping, epoch: int, rank: int) -> None:
    """Reseed everything from (seed, epoch, rank); tell the sampler and the model the epoch."""
    seed = epoch_seed(int(config["seed"]), epoch, rank)
    seed_everything(seed)
    for generator in (getattr(loader, "generator", None), getattr(loader.sampler, "generator", None)):
        if generator is not None:
            generator.manual_seed(seed)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    unwrap_model(model).epoch = epoch


def _is_better(value: float, best: float | None, metric: str) -> bool:
    """Higher is better, except for losses; NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if "loss" in metric else value > best


def _resume(run_dir, model, optimizer, scheduler, scaler, config, info, plateau=None) -> dict:
    """Restore model, optimizer, schedulers and scaler from ckpt_last.pt; return the loop state."""
    path = run_dir / CKPT_LAST
    checkpoint = load_checkpoint(path, model)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if plateau is not None and checkpoint.get("plateau"):
        plateau.load_state_dict(checkpoint["plateau"])
    if checkpoint["scaler"]:
        scaler.load_state_dict(checkpoint["scaler"])
    changed = sorted(k for k, v in plain_config(config).items()
                     if k in checkpoint["config"] and checkpoint["config"][k] != v
                     and k not in ("end_epoch", "resume", "device", "config_files"))
    logger = get_logger()
    if changed:
        logger.warning("resuming with changed config keys (the result will differ from one run): %s", changed)
    if info.is_main:
        truncate_metrics(run_dir / METRICS_CSV, checkpoint["epoch"])
    logger.info("resumed from %s at epoch %d (best %s %s at epoch %d)", path, checkpoint["epoch"],
                config["select_metric"], checkpoint["best_metric"], checkpoint.get("best_epoch", 0))
    return {"start_epoch": checkpoint["epoch"] + 1, "best_metric": checkpoint["best_metric"],
            "best_epoch": checkpoint.get("best_epoch", 0)}


def _log_epoch(logger, board, run_dir, epoch, config, train_stats, val, state, info) -> None:
    """Console line, tensorboard scalars and the metrics.csv row of one epoch (rank 0)."""
    val_scalars = {k: val[k] for k in ("loss", "top1", "top5")}
    logger.info(
        "epoch %d/%d train %s | val loss %.4f top1 %.2f top5 %.2f | best %s %.4f @ epoch %d | %.1fs",
        epoch, config["end_epoch"],
        " ".join(f"{k} {v:.2f}" if k == "top1" else f"{k} {v:.4f}" for k, v in _train_scalars(train_stats).items()),
        val["loss"], val["top1"], val["top5"], config["select_metric"],
        state["best_metric"] if state["best_metric"] is not None else float("nan"), state["best_epoch"],
        train_stats["epoch_time"])
    if not info.is_main:
        return
    row = {"epoch": epoch, "lr": train_stats["lr"]}
    row.update({f"train_{k}": v for k, v in _train_scalars(train_stats).items()})
    row.update({f"val_{k}": v for k, v in val_scalars.items()})
    row.update(images_per_second=train_stats["images_per_second"], epoch_time=train_stats["epoch_time"])
    append_metrics_row(run_dir / METRICS_CSV, row)
    board.add_scalars(_train_scalars(train_stats), epoch, "train")
    board.add_scalars(val_scalars, epoch, "val")
    board.add_scalars({"lr": train_stats["lr"], "images_per_second": train_stats["images_per_second"]}, epoch, "info")
    board.flush()


def _train_scalars(train_stats: Mapping[str, float]) -> dict[str, float]:
    """The loss parts (and learnt loss weights ``sigma*``) and train top-1 of :func:`train_one_epoch`'s output."""
    return {k: v for k, v in train_stats.items() if k.startswith(("loss", "sigma")) or k == "top1"}


def _save_epoch(run_dir, model, optimizer, scheduler, scaler, epoch, state, config, improved, plateau=None) -> None:
    """ckpt_best.pt on improvement, then ckpt_last.pt (both atomic; best first, so a crash
    in between re-runs the epoch from the previous ckpt_last and rewrites best)."""
    checkpoint = make_checkpoint(model, optimizer, scheduler, scaler, epoch, state["best_metric"], config,
                                 state["best_epoch"])
    if plateau is not None:
        checkpoint["plateau"] = plateau.state_dict()
    if improved:
        save_checkpoint(run_dir / CKPT_BEST, checkpoint)
        with atomic_path(run_dir / CKPT_LAST) as temporary:
            shutil.copyfile(run_dir / CKPT_BEST, temporary)
    else:
        save_checkpoint(run_dir / CKPT_LAST, checkpoint)


def _finish(model, loaders, config, run_dir, device, dtype, state, info, logger) -> dict:
    """Load the best weights, evaluate val (and test), write plots, reports and summary.json."""
    best_path = run_dir / CKPT_BEST if (run_dir / CKPT_BEST).is_file() else run_dir / CKPT_LAST
    load_checkpoint(best_path, model)
    model_loss = config["val_loss"] == "model"
    results = {}
    if "val" in loaders:
        results["val"] = evaluate(model, loaders["val"], device, dtype, model_loss)
    if "test" in loaders:
        results["test"] = evaluate(model, loaders["test"], device, dtype)  # CE: the image alone
    scalars = {split: {k: r[k] for k in ("top1", "top5", "loss", "num_samples")} for split, r in results.items()}
    summary = {"best_epoch": state["best_epoch"], "best_metric": state["best_metric"],
               "select_metric": config["select_metric"], "val": scalars.get("val"),
               "test": scalars.get("test"), "run_dir": str(run_dir)}
    for split, values in scalars.items():
        logger.info("best model (epoch %d) on %s: top1 %.2f top5 %.2f loss %.4f (%d samples)",
                    state["best_epoch"], split, values["top1"], values["top5"], values["loss"], values["num_samples"])
    if info.is_main:
        _write_artefacts(run_dir, config, results, summary, loaders)
    barrier()
    return summary


def _write_artefacts(run_dir, config, results, summary, loaders) -> None:
    """training_curves.png, reports per split (test unprefixed, val as val_*), summary.json."""
    from gaze.viz.plots import (
        plot_training_curves,  # matplotlib and sklearn: rank 0, at the end only
    )
    from gaze.viz.reports import write_reports

    metrics = read_metrics(run_dir / METRICS_CSV)
    if not metrics.empty:
        plot_training_curves(metrics, run_dir / CURVES_PNG)
    if config["write_reports"]:
        for split, result in results.items():
            names = _class_names(config, loaders[split], result["probabilities"].shape[1])
            write_reports(result, run_dir, names, prefix="" if split == "test" else f"{split}_")
    with atomic_path(run_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")


def _class_names(config, loader, count: int) -> list[str] | None:
    """``class_names`` from the config, else the dataset's ``classes``, when they fit C."""
    names = config.get("class_names") or getattr(getattr(loader, "dataset", None), "classes", None)
    return [str(n) for n in names] if names is not None and len(names) == count else None
