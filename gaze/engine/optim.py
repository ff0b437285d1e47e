"""Optimizers and learning-rate schedules: a registry of named per-iteration laws, plus plateau.

Every schedule is a function ``(step, span) -> factor`` of the initial lr before optimizer
step ``step`` (0-based, counted after the warm-up is applied on top), registered under a name
with :func:`register_schedule`; :func:`build_scheduler` wraps it in a LambdaLR stepped after
every optimizer step. ``multistep``, ``cosine``, ``constant`` and ``plateau`` are built in
(CAL's and PIM's per-iteration laws register beside them).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch

from gaze.registries import registrar

#: Config keys this module reads, with the values used when a config lacks them: the
#: published CUB-GHA recipe (cub_pim.md §1.3: SGD momentum 0.9, lr 1e-3, weight decay
#: 1e-4, MultiStepLR [50, 100] x0.1 per epoch, 150 epochs).
OPTIM_DEFAULTS = {
    "end_epoch": 150,            # last epoch (1-based, inclusive): the schedules' length
    "optimizer": "sgd",          # 'sgd' | 'adam' | 'adamw'
    "init_lr": 1e-3,
    "momentum": 0.9,             # SGD only
    "nesterov": False,           # SGD only
    "weight_decay": 1e-4,
    "lr_schedule": "multistep",  # a registered schedule: 'multistep' | 'cosine' | 'constant' | 'plateau' | ...
    "lr_milestones": [50, 100],  # multistep: epochs after which the lr is multiplied ...
    "lr_decay_rate": 0.1,        # ... by this
    "warmup_epochs": 0.0,        # linear warm-up over this many epochs (per step)
    "warmup_steps": None,        # ... or over this many optimizer steps (PIM's warmup_batchs / update_freq); None: warmup_epochs
    "min_lr": 0.0,               # cosine: final lr
    "plateau_patience": 40,      # plateau: epochs without improvement of select_metric before lr *= lr_decay_rate
}


@dataclass(frozen=True)
class ScheduleSpan:
    """What a schedule law knows about the run: optimizer steps per epoch, epochs, warm-up
    steps, multistep milestones (epochs) and decay, and min_lr / init_lr."""

    steps_per_epoch: int
    total_epochs: int
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    decay_rate: float = 0.1
    min_factor: float = 0.0


#: name -> law ``(step, span) -> factor``.
SCHEDULES: dict[str, Callable[[int, ScheduleSpan], float]] = {}


#: ``@register_schedule(name)`` adds a law ``(step, span) -> factor`` to :data:`SCHEDULES`.
register_schedule = registrar(SCHEDULES, "schedule")


@register_schedule("multistep")
def multistep(step: int, span: ScheduleSpan) -> float:
    """``decay_rate ** (milestones m <= completed epochs)``, constant within an epoch: the
    published MultiStepLR stepped once per epoch (1e-3, 1e-4 from epoch 51, 1e-5 from 101;
    cub_pim.md §1.3)."""
    completed_epochs = step // span.steps_per_epoch
    return span.decay_rate ** sum(completed_epochs >= m for m in span.milestones)


@register_schedule("cosine")
def cosine(step: int, span: ScheduleSpan) -> float:
    """Per step ``min + (1 - min)(1 + cos(pi t / T)) / 2``, t and T counted after the warm-up,
    so the last step reaches ``min_lr`` (PIM divides by the whole length and never gets
    there, cub_pim.md §3.5)."""
    length = max(span.total_epochs * span.steps_per_epoch - span.warmup_steps, 1)
    progress = min(max((step - span.warmup_steps) / length, 0.0), 1.0)
    return span.min_factor + (1.0 - span.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@register_schedule("constant")
def constant(step: int, span: ScheduleSpan) -> float:
    """1: the initial lr throughout."""
    return 1.0


@register_schedule("cal_exponential")
def cal_exponential(step: int, span: ScheduleSpan) -> float:
    """CAL's per-iteration law 0.9^((epoch + i/len)/2) (gradia_cal.md B7): x0.9 every two
    epochs, set before every step (about 2e-7 of 1e-3 after 160 epochs)."""
    return 0.9 ** (step / span.steps_per_epoch / 2)


def _pim_law(step: int, span: ScheduleSpan, cosine_length: int) -> float:
    """PIM's per-iteration law (cub_pim.md §3.5): a linear ramp over the warm-up steps, then
    ``(1 + cos(pi t / cosine_length)) / 2`` with t counted after the warm-up (its 1e-9 start
    and 1e-12 floor taken as 0: below 1e-9 of any lr)."""
    if step < span.warmup_steps:
        return step / span.warmup_steps
    return 0.5 * (1.0 + math.cos(math.pi * min(step - span.warmup_steps, cosine_length) / max(cosine_length, 1)))


@register_schedule("pim")
def pim(step: int, span: ScheduleSpan) -> float:
    """PIM's warm-up + cosine with the cosine over the T - W steps after the warm-up: the lr
    reaches 0 at the last step (the corrected law)."""
    return _pim_law(step, span, span.steps_per_epoch * span.total_epochs - span.warmup_steps)


@register_schedule("pim_published")
def pim_published(step: int, span: ScheduleSpan) -> float:
    """PIM's law as published: the cosine divides by the whole length T, so it ends at
    (1 + cos(pi (T - W) / T)) / 2 of the lr (about 2.2e-6 of 5e-4 on CUB: 375 steps a
    epoch, 50 epochs, 800 warm-up steps)."""
    return _pim_law(step, span, span.steps_per_epoch * span.total_epochs)


pim.handles_warmup = pim_published.handles_warmup = True  # their own ramp: lr_factor adds none


@register_schedule("plateau")
def plateau(step: int, span: ScheduleSpan) -> float:
    """1 per step: ReduceLROnPlateau changes the lr per epoch (see :func:`build_plateau`)."""
    return 1.0


def lr_factor(step: int, schedule: str, span: ScheduleSpan) -> float:
    """Multiplier of the initial lr before optimizer step ``step``: the law ``schedule``, times
    ``(step + 1) / warmup_steps`` during the warm-up."""
    if schedule not in SCHEDULES:
        raise ValueError(f"config key 'lr_schedule': expected one of {', '.join(sorted(SCHEDULES))}, got {schedule!r}")
    law = SCHEDULES[schedule]
    factor = law(step, span)
    if step < span.warmup_steps and not getattr(law, "handles_warmup", False):
        factor *= (step + 1) / span.warmup_steps
    return factor


def build_optimizer(params: Iterable, config: Mapping) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW with ``init_lr`` and ``weight_decay``.

    Args:
        params: parameters or parameter groups.
        config: keys ``optimizer``, ``init_lr``, ``momentum``, ``nesterov``, ``weight_decay``.
    """
    config = {**OPTIM_DEFAULTS, **config}
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: Mapping, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped after every optimizer step (see :func:`lr_factor`).

    Args:
        optimizer: from :func:`build_optimizer`.
        config: keys ``lr_schedule``, ``end_epoch``, ``warmup_epochs`` / ``warmup_steps``, ``lr_milestones``,
            ``lr_decay_rate``, ``min_lr``.
        steps_per_epoch: optimizer steps per epoch (batches / ``accumulate_steps``, rounded up).
    """
    config = {**OPTIM_DEFAULTS, **config}
    schedule = str(config["lr_schedule"]).lower()
    steps_per_epoch = max(int(steps_per_epoch), 1)
    lr_factor(0, schedule, ScheduleSpan(steps_per_epoch, 1))  # an unknown name fails here, not mid-run
    factors = []
    for group in optimizer.param_groups:
        base_lr = group.get("initial_lr", group["lr"])
        span = ScheduleSpan(
            steps_per_epoch=steps_per_epoch,
            total_epochs=int(config["end_epoch"]),
            warmup_steps=warmup_steps(config, steps_per_epoch),
            milestones=tuple(config["lr_milestones"] or ()),
            decay_rate=float(config["lr_decay_rate"]),
            min_factor=float(config["min_lr"]) / base_lr if base_lr else 0.0,
        )
        # a partial (not a lambda) keeps the scheduler's state_dict primitive
        factors.append(functools.partial(lr_factor, schedule=schedule, span=span))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def warmup_steps(config: Mapping, steps_per_epoch: int) -> int:
    """Warm-up length in optimizer steps: ``warmup_steps`` when set, else ``warmup_epochs`` epochs."""
    if config.get("warmup_steps") is not None:
        return int(config["warmup_steps"])
    return round(float(config["warmup_epochs"]) * steps_per_epoch)


def build_plateau(optimizer: torch.optim.Optimizer, config: Mapping) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """ReduceLROnPlateau on the validation ``select_metric`` when ``lr_schedule='plateau'``, else None.

    GG-CAM's schedule (cxr.md §3.5): mode min on the validation loss, factor
    ``lr_decay_rate`` (0.1), patience ``plateau_patience`` (40), eps 0; stepped once per epoch.
    """
    config = {**OPTIM_DEFAULTS, **config}
    if str(config["lr_schedule"]).lower() != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min" if "loss" in config.get("select_metric", "top1") else "max",
        factor=float(config["lr_decay_rate"]), patience=int(config["plateau_patience"]), eps=0.0)
