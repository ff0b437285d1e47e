"""The toy problem of the engine tests: a contract model learns the class from channel 0's mean (8x8 images)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gaze.models.base import GazeModel

NUM_CLASSES = 4


class ToyDataset(Dataset):
    """n samples of 8x8 images whose channel-0 mean encodes the label, with gaze maps."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
        self.images = torch.randn(size, 3, 8, 8, generator=generator)
        self.images[:, 0] += 1.5 * (self.labels.float() - 1.5)[:, None, None]
        self.gaze = torch.rand(size, 1, 8, 8, generator=generator)
        self.class_names = [f"bird_{i}" for i in range(NUM_CLASSES)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index],
                "gaze": self.gaze[index], "id": f"s{index:03d}"}


class ToyNet(GazeModel):
    """The model contract: forward(images, gaze) -> logits; loss(batch) -> dict of tensors."""

    name = "toy"
    gaze_splits = frozenset({"train", "val", "test"})
    inference_needs_gaze = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(8, NUM_CLASSES)
        self.epoch = 0
        self.crash_at_epoch = None
        self.seen = {}  # epoch -> ids trained on

    def forward(self, images, gaze=None):
        features = F.relu(self.norm(self.conv(images)))  # (B, 8, 8, 8)
        if gaze is not None:
            features = features * (0.5 + gaze)
        return self.fc(self.dropout(features.mean(dim=(2, 3))))  # (B, C)

    def loss(self, batch):
        if self.epoch == self.crash_at_epoch:
            raise KeyboardInterrupt("simulated kill")
        self.seen.setdefault(self.epoch, []).extend(batch["id"])
        logits = self(batch["image"], batch.get("gaze"))
        loss_ce = F.cross_entropy(logits, batch["label"])
        loss_window = 0.01 * logits.pow(2).mean()
        return {"loss": loss_ce + loss_window, "loss_ce": loss_ce, "loss_window": loss_window, "logits": logits}


class OtherNet(ToyNet):
    name = "other"


def make_loaders(train_size: int = 96, eval_size: int = 40) -> dict:
    return {
        "train": DataLoader(ToyDataset(train_size, seed=0), batch_size=16, shuffle=True),
        "val": DataLoader(ToyDataset(eval_size, seed=1), batch_size=16),
        "test": DataLoader(ToyDataset(eval_size, seed=2), batch_size=16),
    }


def make_config(**overrides) -> dict:
    config = {"device": "cpu", "seed": 7, "end_epoch": 3, "optimizer": "sgd", "init_lr": 0.1,
              "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "multistep", "lr_milestones": [3],
              "lr_decay_rate": 0.1, "log_interval": 2, "data_root": Path("data/toy")}
    config.update(overrides)
    return config


def new_model(seed: int = 0) -> ToyNet:
    torch.manual_seed(seed)
    return ToyNet()
