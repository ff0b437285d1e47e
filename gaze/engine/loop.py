"""One training epoch: loss, backward (AMP, gradient accumulation), optimizer and per-step schedule.

Model contract (DESIGN.md §2): ``model.loss(batch) -> {"loss": total, "loss_*": parts,
["logits": (B, C)]}``; the engine sets ``model.epoch`` (1-based) before each epoch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gaze.engine.dist import all_reduce_sum, is_distributed, is_main_process
from gaze.engine.logging import Progress, get_logger

#: Config keys this module reads, with the values used when a config lacks them.
LOOP_DEFAULTS = {
    "amp": None,                 # None/False | 'bf16' | 'fp16' (CUDA only; fp16 uses a GradScaler)
    "clip_grad_norm": None,      # max gradient norm, None: no clipping
    "accumulate_steps": 1,       # batches whose gradients add up to one optimizer step (exact mean over the group)
    "log_interval": 50,          # steps between log lines (when stderr is not a terminal)
}


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


@dataclass
class Training:
    """What one optimizer step needs besides the model and the batch.

    Attributes:
        optimizer: the optimizer.
        device: where batches go.
        scheduler: stepped after every optimizer step (None: no per-step schedule).
        scaler: GradScaler for fp16 (None: plain backward and step).
        amp: autocast dtype (None: full precision).
        clip_grad_norm: max gradient norm (None: no clipping).
        accumulate_steps: batches per optimizer step; the gradient is that of the mean loss
            over the group's samples, the last group of an epoch possibly shorter.
        log_interval: steps between progress log lines.
    """

    optimizer: torch.optim.Optimizer
    device: torch.device
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    amp: torch.dtype | None = None
    clip_grad_norm: float | None = None
    accumulate_steps: int = 1
    log_interval: int = 50
    _disabled_scaler: torch.amp.GradScaler = field(default_factory=lambda: torch.amp.GradScaler("cuda", enabled=False),
                                                   repr=False)

    @property
    def grad_scaler(self) -> torch.amp.GradScaler:
        """The scaler, or a disabled one (plain backward and step)."""
        return self.scaler or self._disabled_scaler


def optimizer_steps(batches: int, accumulate_steps: int) -> int:
    """Optimizer steps of an epoch of ``batches`` batches: ceil(batches / accumulate_steps)."""
    return -(-batches // max(int(accumulate_steps), 1))


def _groups(loader: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` batches (the last one possibly shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def train_one_epoch(model: nn.Module, loader: Iterable, training: Training, epoch: int) -> dict[str, float]:
    """One pass over ``loader``: loss, backward, optimizer (and per-step scheduler) step.

    With ``accumulate_steps = k`` the batches go in groups of k; each batch's loss is scaled
    by its share of the group's samples, so the step follows the gradient of the mean loss
    over the whole group, the same as one batch of those samples would give (exact for
    models without batch statistics; BatchNorm sees each batch alone). Under DDP the
    gradients are synchronised once per group.

    Args:
        model: a contract model (``model.loss(batch)``), or a module whose
            ``forward(batch)`` returns that dict (:class:`LossForward`, possibly DDP-wrapped).
        loader: batches (dicts with ``label``).
        training: optimizer, device, scheduler, AMP, clipping, accumulation (:class:`Training`).
        epoch: 1-based, for messages.

    Returns:
        means over the epoch's samples (all ranks) of every scalar ``loss*`` output, ``top1``
        (%) when the model returns ``logits``, and ``lr`` at the epoch start, ``images_per_second``,
        ``epoch_time`` (s).
    """
    model.train()
    compute_losses = model.loss if hasattr(model, "loss") else model
    optimizer, scaler = training.optimizer, training.grad_scaler
    parameters = [p for p in model.parameters() if p.requires_grad]
    progress = Progress(loader, f"epoch {epoch}", training.log_interval, enabled=is_main_process())
    totals = EpochTotals(lr=optimizer.param_groups[0]["lr"])
    step = 0
    for group in _groups(progress, max(int(training.accumulate_steps), 1)):
        optimizer.zero_grad(set_to_none=True)
        group_samples = sum(len(batch["label"]) for batch in group)
        for index, batch in enumerate(group):
            batch = move_to_device(batch, training.device)
            last = index == len(group) - 1
            sync = contextlib.nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync()
            with sync:
                with autocast(training.device, training.amp):
                    outputs = compute_losses(batch)
                if not torch.isfinite(outputs["loss"]):
                    raise FloatingPointError(f"epoch {epoch} step {step}: non-finite loss {scalar_losses(outputs)}")
                share = len(batch["label"]) / group_samples
                scaler.scale(outputs["loss"] * share if len(group) > 1 else outputs["loss"]).backward()
            parts = totals.add(outputs, batch["label"])
            progress.update(len(batch["label"]), lr=optimizer.param_groups[0]["lr"], **parts)
            step += 1
        if training.clip_grad_norm:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(parameters, training.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        if training.scheduler is not None:
            training.scheduler.step()
    return totals.means(training.device)


#: Prefixes of the scalar entries of a model's loss dict the engine averages and logs: loss
#: parts, learnt loss weights (GG-CAM's sigmas), training accuracies in % (CAL's augmented views).
SCALAR_PREFIXES = ("loss", "sigma", "acc")


def scalar_losses(outputs: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The scalar entries of a model's loss dict named with :data:`SCALAR_PREFIXES`, as floats."""
    return {k: float(v.detach()) for k, v in outputs.items() if k.startswith(SCALAR_PREFIXES) and v.ndim == 0}


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
