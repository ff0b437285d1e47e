"""gaze/engine/optim.py: optimizers, the schedule registry and its laws (hand values, torch's MultiStepLR)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gaze.engine.optim import build_optimizer, build_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_optimizer_kinds_and_errors():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(params, {"optimizer": "sgd", "init_lr": 0.5, "weight_decay": 0.1, "nesterov": True})
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.5, 0.9, 0.1, True)
    assert isinstance(build_optimizer(params, {"optimizer": "adam"}), torch.optim.Adam)
    adamw = build_optimizer(params, {"optimizer": "AdamW", "init_lr": 3e-4, "weight_decay": 0.05})
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="'optimizer'.*'rmsprop'"):
        build_optimizer(params, {"optimizer": "rmsprop"})


def lrs_per_step(config: dict, steps_per_epoch: int, epochs: int) -> list[float]:
    """The lr used by each optimizer step, stepping the scheduler as the engine does."""
    optimizer = build_optimizer([nn.Parameter(torch.zeros(1))], config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    used = []
    for _ in range(steps_per_epoch * epochs):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def test_multistep_schedule_matches_published_per_epoch_values():
    # published: MultiStepLR([50, 100], 0.1) stepped after each epoch -> scaled here to [2, 4].
    config = {"init_lr": 1e-3, "lr_schedule": "multistep", "lr_milestones": [2, 4], "lr_decay_rate": 0.1,
              "end_epoch": 5}
    used = np.array(lrs_per_step(config, steps_per_epoch=3, epochs=5)).reshape(5, 3)
    expected = [1e-3, 1e-3, 1e-4, 1e-4, 1e-5]  # epochs 1..5
    np.testing.assert_allclose(used, np.repeat(np.array(expected)[:, None], 3, axis=1), rtol=1e-12)
    # the same values as torch's own MultiStepLR stepped per epoch
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2, 4], 0.1)
    per_epoch = []
    for _ in range(5):
        per_epoch.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(used[:, 0], per_epoch, rtol=1e-12)


def test_cosine_schedule_with_warmup_hand_values():
    config = {"init_lr": 0.1, "lr_schedule": "cosine", "end_epoch": 4, "warmup_epochs": 1, "min_lr": 0.01}
    used = lrs_per_step(config, steps_per_epoch=2, epochs=4)
    warmup = [0.1 * 1 / 2, 0.1 * 2 / 2]  # (step + 1) / warmup_steps
    span = 4 * 2 - 2  # steps after the warm-up
    cosine = [0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * t / span)) for t in range(6)]
    np.testing.assert_allclose(used, warmup + cosine, rtol=1e-12)


def test_multistep_with_warmup_and_constant():
    config = {"init_lr": 0.2, "lr_schedule": "multistep", "lr_milestones": [1], "lr_decay_rate": 0.5,
              "warmup_epochs": 0.5, "end_epoch": 2}
    used = lrs_per_step(config, steps_per_epoch=4, epochs=2)
    np.testing.assert_allclose(used, [0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1], rtol=1e-12)
    constant = lrs_per_step({"init_lr": 0.3, "lr_schedule": "constant"}, steps_per_epoch=2, epochs=2)
    assert constant == [0.3] * 4


def test_scheduler_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="lr_schedule"):
        lrs_per_step({"lr_schedule": "poly"}, steps_per_epoch=1, epochs=1)


def test_a_registered_schedule_law_is_used_per_iteration():
    from gaze.engine.optim import SCHEDULES, ScheduleSpan, register_schedule

    @register_schedule("test_halving")
    def halving(step: int, span: ScheduleSpan) -> float:
        return 0.5 ** (step / span.steps_per_epoch)  # CAL's 0.9^((epoch + i/len)/2) has this shape

    try:
        used = lrs_per_step({"init_lr": 0.8, "lr_schedule": "test_halving", "end_epoch": 2}, steps_per_epoch=2, epochs=2)
        np.testing.assert_allclose(used, [0.8 * 0.5 ** (s / 2) for s in range(4)], rtol=1e-12)
        with pytest.raises(ValueError, match="already registered"):
            register_schedule("cosine")(halving)
    finally:
        del SCHEDULES["test_halving"]
    assert {"multistep", "cosine", "constant", "plateau"} <= set(SCHEDULES)
