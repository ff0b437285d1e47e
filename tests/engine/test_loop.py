"""gaze/engine/loop.py: one epoch, loss parts, non-finite losses, AMP, exact gradient accumulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from gaze.engine.loop import Training, optimizer_steps, train_one_epoch
from gaze.engine.optim import build_optimizer
from gaze.models.base import GazeModel
from tests.engine.toys import NUM_CLASSES, ToyDataset, make_config, make_loaders, new_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_one_epoch_reports_loss_parts_and_accuracy():
    model = new_model()
    loader = make_loaders()["train"]
    optimizer = build_optimizer(model.parameters(), make_config())
    stats = train_one_epoch(model, loader, Training(optimizer, torch.device("cpu")), epoch=1)
    assert {"loss", "loss_ce", "loss_window", "top1", "lr", "images_per_second", "epoch_time"} <= set(stats)
    assert stats["loss"] == pytest.approx(stats["loss_ce"] + stats["loss_window"], rel=1e-6)
    assert 0.0 <= stats["top1"] <= 100.0 and stats["lr"] == 0.1


def test_train_one_epoch_raises_on_non_finite_loss():
    model = new_model()
    model.loss = lambda batch: {"loss": torch.tensor(float("nan"), requires_grad=True)}
    optimizer = build_optimizer(model.parameters(), make_config())
    with pytest.raises(FloatingPointError, match="epoch 4 step 0"):
        train_one_epoch(model, make_loaders()["train"], Training(optimizer, torch.device("cpu")), epoch=4)


def test_amp_is_cuda_only():
    from gaze.engine.loop import amp_dtype

    assert amp_dtype("bf16", torch.device("cpu")) is None
    assert amp_dtype(False, torch.device("cuda")) is None and amp_dtype(None, torch.device("cuda")) is None
    assert amp_dtype("bf16", torch.device("cuda")) == torch.bfloat16
    assert amp_dtype("fp16", torch.device("cuda")) == torch.float16
    with pytest.raises(ValueError, match="'amp'.*'int8'"):
        amp_dtype("int8", torch.device("cuda"))


class LinearNet(GazeModel):
    """No batch statistics: accumulating batches must equal one batch of their samples exactly."""

    name = "linear"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(8 * 8 * 3, NUM_CLASSES)

    def forward(self, images, gaze=None):
        return self.fc(images.flatten(1))

    def loss(self, batch):
        logits = self(batch["image"])
        loss_ce = F.cross_entropy(logits, batch["label"])
        return {"loss": loss_ce, "loss_ce": loss_ce, "logits": logits.detach()}


def weights_after_epoch(samples: int, batch_size: int, accumulate_steps: int) -> tuple[torch.Tensor, int]:
    model = LinearNet()
    optimizer = build_optimizer(model.parameters(), {"optimizer": "sgd", "init_lr": 0.5, "momentum": 0.0,
                                                     "weight_decay": 0.0})
    loader = DataLoader(ToyDataset(samples, seed=4), batch_size=batch_size)
    steps = []
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: steps.append(step) or 1.0)
    train_one_epoch(model, loader, Training(optimizer, torch.device("cpu"), scheduler,
                                            accumulate_steps=accumulate_steps), epoch=1)
    return model.fc.weight.detach().clone(), len(steps) - 1  # LambdaLR calls once at construction


def test_accumulation_equals_the_large_batch_including_a_partial_last_group():
    # 14 samples in batches of 4 (4, 4, 4, 2) accumulated by 3: steps over 12, then over 2 samples,
    # exactly what batches of 12 (12, 2) give without accumulation.
    accumulated, steps = weights_after_epoch(14, 4, 3)
    large, large_steps = weights_after_epoch(14, 12, 1)
    torch.testing.assert_close(accumulated, large, rtol=1e-6, atol=1e-7)
    assert steps == large_steps == 2 == optimizer_steps(4, 3)
    # unequal batches inside a group (4, 4, 2 of 10) weigh by their sizes: one batch of 10
    uneven, _ = weights_after_epoch(10, 4, 3)
    whole, _ = weights_after_epoch(10, 10, 1)
    torch.testing.assert_close(uneven, whole, rtol=1e-6, atol=1e-7)
    # and it is not the plain sum or mean of the batch means
    assert not torch.allclose(weights_after_epoch(14, 4, 1)[0], large)


def test_accumulate_steps_is_a_fit_key(tmp_path):
    from gaze.engine.fit import fit

    summary = fit(LinearNet(), make_loaders(train_size=40), make_config(end_epoch=1, accumulate_steps=2,
                                                                        write_reports=False), tmp_path)
    checkpoint = torch.load(tmp_path / "ckpt_last.pt", weights_only=True)
    assert checkpoint["scheduler"]["last_epoch"] == 2  # 40 / 16 = 3 batches -> 2 optimizer steps
    assert summary["best_epoch"] == 1
    with pytest.raises(ValueError, match="'accumulate_steps'"):
        fit(LinearNet(), make_loaders(), make_config(accumulate_steps=0), tmp_path / "bad")
