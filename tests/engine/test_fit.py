"""gaze/engine/fit.py: optimiser/scheduler values, fit artefacts, exact resume, checkpoints, DDP.

A toy model implementing the model contract learns a toy problem (the class shifts the
mean of channel 0 of an 8x8 image) in a few epochs on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gaze.engine.dist import is_main_process
from gaze.engine.fit import (
    ENGINE_DEFAULTS,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
    train_one_epoch,
)

NUM_CLASSES = 4
TIME_COLUMNS = ["images_per_second", "epoch_time"]
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "scaler", "epoch", "best_metric",
                   "model_name", "config", "version"}


class ToyDataset(Dataset):
    """n samples of 8x8 images whose channel-0 mean encodes the label, with gaze maps."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
        self.images = torch.randn(size, 3, 8, 8, generator=generator)
        self.images[:, 0] += 1.5 * (self.labels.float() - 1.5)[:, None, None]
        self.gaze = torch.rand(size, 1, 8, 8, generator=generator)
        self.classes = [f"bird_{i}" for i in range(NUM_CLASSES)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index],
                "gaze": self.gaze[index], "id": f"s{index:03d}"}


class ToyNet(nn.Module):
    """The model contract: forward(images, gaze) -> logits; loss(batch) -> dict of tensors."""

    name = "toy"

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


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is far faster than several fighting for 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# --------------------------------------------------------------------------- optimiser, scheduler
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


# --------------------------------------------------------------------------- one epoch, evaluate
def test_train_one_epoch_reports_loss_parts_and_accuracy():
    model = new_model()
    loader = make_loaders()["train"]
    optimizer = build_optimizer(model.parameters(), make_config())
    stats = train_one_epoch(model, optimizer, loader, torch.device("cpu"), epoch=1)
    assert {"loss", "loss_ce", "loss_window", "top1", "lr", "images_per_second", "epoch_time"} <= set(stats)
    assert stats["loss"] == pytest.approx(stats["loss_ce"] + stats["loss_window"], rel=1e-6)
    assert 0.0 <= stats["top1"] <= 100.0 and stats["lr"] == 0.1


def test_train_one_epoch_raises_on_non_finite_loss():
    model = new_model()
    model.loss = lambda batch: {"loss": torch.tensor(float("nan"), requires_grad=True)}
    optimizer = build_optimizer(model.parameters(), make_config())
    with pytest.raises(FloatingPointError, match="epoch 4 step 0"):
        train_one_epoch(model, optimizer, make_loaders()["train"], torch.device("cpu"), epoch=4)


def test_evaluate_matches_direct_computation():
    model = new_model().eval()
    loader = make_loaders(eval_size=37)["val"]
    results = evaluate(model, loader, torch.device("cpu"))
    dataset = loader.dataset
    with torch.no_grad():
        logits = model(dataset.images, gaze=dataset.gaze)
    assert results["num_samples"] == 37 and results["ids"] == [f"s{i:03d}" for i in range(37)]
    np.testing.assert_array_equal(results["labels"], dataset.labels.numpy())
    np.testing.assert_allclose(results["probabilities"], logits.softmax(1).numpy(), atol=1e-6)
    top1 = 100 * (logits.argmax(1) == dataset.labels).float().mean().item()
    assert results["top1"] == pytest.approx(top1)
    assert results["loss"] == pytest.approx(F.cross_entropy(logits, dataset.labels).item(), rel=1e-5)
    assert results["top5"] == 100.0  # top-C with C = 4 < 5 classes


# --------------------------------------------------------------------------- fit
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fit") / "runs" / "toy"
    model = new_model()
    summary = fit(model, make_loaders(), make_config(end_epoch=3), run_dir)
    return run_dir, model, summary


def test_fit_learns_and_selects_on_validation(fitted):
    run_dir, model, summary = fitted
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert summary["test"]["top1"] > 60.0 and summary["val"]["top1"] > 60.0  # chance is 25%
    assert summary["best_epoch"] == int(metrics["epoch"][metrics["val_top1"].idxmax()])
    assert summary["best_metric"] == pytest.approx(metrics["val_top1"].max())
    assert summary["val"]["top1"] == pytest.approx(summary["best_metric"])
    assert sorted(model.seen) == [1, 2, 3]  # model.epoch set (1-based) at each epoch start
    assert sorted(model.seen[1]) == [f"s{i:03d}" for i in range(96)]
    assert model.seen[1] != model.seen[2]  # reshuffled every epoch
    assert {"lr", "train_loss", "train_loss_ce", "train_loss_window", "train_top1",
            "val_loss", "val_top1", "val_top5"} <= set(metrics.columns)


def test_fit_writes_every_artefact(fitted):
    run_dir, _, summary = fitted
    for name in ["config.json", "metrics.csv", "train.log", "training_curves.png", "summary.json",
                 "classification_report.json", "predictions.csv", "confusion_matrix.png",
                 "val_classification_report.json", "val_predictions.csv", "ckpt_last.pt", "ckpt_best.pt"]:
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(run_dir.glob(".*.tmp"))  # no temporary files left
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data_root"] == "data/toy" and config["end_epoch"] == 3
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    report = json.loads((run_dir / "classification_report.json").read_text())
    assert report["top1"] == pytest.approx(summary["test"]["top1"])
    assert "bird_0" in report["per_class_accuracy"]  # class names from dataset.classes
    assert "loss_ce" in (run_dir / "train.log").read_text()


def test_checkpoints_load_with_weights_only(fitted):
    run_dir, _, summary = fitted
    last = torch.load(run_dir / "ckpt_last.pt", map_location="cpu", weights_only=True)
    best = torch.load(run_dir / "ckpt_best.pt", map_location="cpu", weights_only=True)
    assert CHECKPOINT_KEYS <= set(last) and CHECKPOINT_KEYS <= set(best)
    assert last["epoch"] == 3 and best["epoch"] == summary["best_epoch"]
    assert last["model_name"] == "toy" and last["config"]["data_root"] == "data/toy"
    assert last["optimizer"]["state"] and last["scheduler"]["last_epoch"] == 3 * 6
    assert best["best_metric"] == pytest.approx(summary["best_metric"])
    model = ToyNet()
    load_checkpoint(run_dir / "ckpt_best.pt", model)
    results = evaluate(model, make_loaders()["test"], torch.device("cpu"))
    assert results["top1"] == pytest.approx(summary["test"]["top1"])


def run_fit(run_dir: Path, crash_at_epoch=None, **overrides) -> tuple[dict, ToyNet]:
    model = new_model()
    model.crash_at_epoch = crash_at_epoch
    config = make_config(write_reports=False, **overrides)
    return fit(model, make_loaders(), config, run_dir), model


def assert_same_run(run_a: Path, run_b: Path) -> None:
    """Identical weights, optimizer state and metrics (apart from timings)."""
    last_a = torch.load(run_a / "ckpt_last.pt", weights_only=True)
    last_b = torch.load(run_b / "ckpt_last.pt", weights_only=True)
    for key, tensor in last_a["model"].items():
        torch.testing.assert_close(tensor, last_b["model"][key], rtol=0, atol=0, msg=key)
    for index, state in last_a["optimizer"]["state"].items():
        torch.testing.assert_close(state["momentum_buffer"], last_b["optimizer"]["state"][index]["momentum_buffer"],
                                   rtol=0, atol=0)
    assert last_a["scheduler"] == last_b["scheduler"]
    assert (last_a["best_metric"], last_a["best_epoch"]) == (last_b["best_metric"], last_b["best_epoch"])
    metrics_a = pd.read_csv(run_a / "metrics.csv").drop(columns=TIME_COLUMNS)
    metrics_b = pd.read_csv(run_b / "metrics.csv").drop(columns=TIME_COLUMNS)
    pd.testing.assert_frame_equal(metrics_a, metrics_b, check_exact=True)


def test_resume_after_stop_equals_uninterrupted_run(tmp_path):
    # multistep does not depend on end_epoch: 2 epochs, then "continue to 4" as a new command.
    straight, _ = run_fit(tmp_path / "straight", end_epoch=4, lr_milestones=[3])
    run_fit(tmp_path / "resumed", end_epoch=2, lr_milestones=[3])
    resumed, model = run_fit(tmp_path / "resumed", end_epoch=4, lr_milestones=[3])
    assert sorted(model.seen) == [3, 4]  # only the missing epochs ran
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert resumed["test"] == straight["test"] and resumed["best_epoch"] == straight["best_epoch"]


def test_resume_after_kill_mid_epoch_equals_uninterrupted_run(tmp_path):
    cosine = {"end_epoch": 4, "lr_schedule": "cosine", "warmup_epochs": 1, "optimizer": "sgd"}
    straight, _ = run_fit(tmp_path / "straight", **cosine)
    with pytest.raises(KeyboardInterrupt):
        run_fit(tmp_path / "killed", crash_at_epoch=3, **cosine)
    assert torch.load(tmp_path / "killed" / "ckpt_last.pt", weights_only=True)["epoch"] == 2
    resumed, _ = run_fit(tmp_path / "killed", **cosine)
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    assert resumed == {**straight, "run_dir": str(tmp_path / "killed")}


def test_resume_false_starts_over_and_keeps_the_old_run_aside(tmp_path):
    run_fit(tmp_path / "run", end_epoch=4)
    _, model = run_fit(tmp_path / "run", end_epoch=2, resume=False)
    assert sorted(model.seen) == [1, 2]
    # The new run's files hold the new run only (epochs 3-4 of the old one used to follow).
    assert list(pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"]) == [1, 2]
    assert torch.load(tmp_path / "run" / "ckpt_last.pt", weights_only=True)["epoch"] == 2
    (archived,) = tmp_path.glob("run.previous-*")
    assert list(pd.read_csv(archived / "metrics.csv")["epoch"]) == [1, 2, 3, 4]  # nothing lost
    assert torch.load(archived / "ckpt_last.pt", weights_only=True)["epoch"] == 4


@pytest.mark.parametrize("channels_last", [True, False])
def test_fit_trains_convolutions_in_the_configured_memory_layout(tmp_path, channels_last):
    model = new_model()
    fit(model, make_loaders(), make_config(end_epoch=1, write_reports=False, channels_last=channels_last), tmp_path)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert model.conv.weight.is_contiguous(memory_format=layout)
    assert not model.conv.weight.is_contiguous() if channels_last else model.conv.weight.is_contiguous()
    # the checkpoint loads into a model in the default layout
    load_checkpoint(tmp_path / "ckpt_last.pt", new_model())


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    run_fit(tmp_path / "run", end_epoch=1)
    stale = tmp_path / "run" / ".ckpt_last.pt.999999999.0.tmp"  # no such process
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / "run" / f".ckpt_best.pt.{os.getpid()}.7.tmp"  # a writer that still runs
    live.write_bytes(b"being written")
    unrelated = tmp_path / "run" / "notes.tmp"
    unrelated.write_text("mine")
    run_fit(tmp_path / "run", end_epoch=2)
    assert not stale.exists() and live.exists() and unrelated.exists()


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"), (b"PK\x03\x04trunc", "truncated or corrupted")])
def test_unreadable_checkpoint_files_are_named(tmp_path, content, message):
    path = tmp_path / "ckpt_last.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}: .*{message}"):
        load_checkpoint(path, new_model())
    good = save_checkpoint(tmp_path / "good.pt", make_checkpoint(new_model(), epoch=1))
    path.write_bytes(good.read_bytes()[:200])  # cut short, as by a kill without the atomic rename
    with pytest.raises(ValueError, match=f"{path}: cannot be read as a torch file"):
        load_checkpoint(path, new_model())


# --------------------------------------------------------------------------- checkpoints
def test_load_checkpoint_errors_and_prefixes(tmp_path):
    model = new_model()
    checkpoint = make_checkpoint(model, epoch=1, config={"path": Path("x")})
    path = save_checkpoint(tmp_path / "ckpt.pt", checkpoint)
    with pytest.raises(ValueError, match=r"'toy'.*'other'"):
        load_checkpoint(path, OtherNet())
    with pytest.raises(ValueError, match=r"'toy'.*'gat'"):
        load_checkpoint(path, expected_model_name="gat")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt", model)
    # DDP / torch.compile prefixes are stripped
    checkpoint["model"] = {f"module._orig_mod.{k}": v for k, v in checkpoint["model"].items()}
    save_checkpoint(path, checkpoint)
    fresh = ToyNet()
    loaded = load_checkpoint(path, fresh)
    assert loaded["config"] == {"path": "x"} and loaded["model_name"] == "toy"
    torch.testing.assert_close(fresh.fc.weight, model.fc.weight)
    # weights of a different shape name the file and the model
    checkpoint["model"] = {"fc.weight": torch.zeros(3, 3)}
    save_checkpoint(path, checkpoint)
    with pytest.raises(ValueError, match="ckpt.pt.*ToyNet"):
        load_checkpoint(path, ToyNet())


def test_engine_defaults_are_config_types():
    for key, value in ENGINE_DEFAULTS.items():
        assert value is None or isinstance(value, (bool, int, float, str, list)), key


# --------------------------------------------------------------------------- DDP
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def watch_writes(root: Path) -> list:
    """Record every file or folder creation/write under ``root`` (Python audit events)."""
    writes = []
    root = str(root)

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = args[0], args[1], args[2]
            writing = (mode and any(c in str(mode) for c in "wax+")) or (flags and flags & WRITE_FLAGS)
            if writing and str(os.fspath(path)).startswith(root):
                writes.append(str(path))
        elif event in ("os.mkdir", "os.rename", "os.replace", "tempfile.mkstemp", "shutil.copyfile"):
            if any(str(a).startswith(root) for a in args if isinstance(a, (str, os.PathLike))):
                writes.append(f"{event} {args[0]}")

    sys.addaudithook(hook)
    return writes


def ddp_worker(rank: int, world_size: int, port: int, run_dir: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    writes = watch_writes(Path(run_dir))
    model = new_model(seed=rank)  # different initial weights: DDP must broadcast rank 0's
    loaders = make_loaders(train_size=96, eval_size=41)
    summary = fit(model, loaders, make_config(end_epoch=2, write_reports=False), run_dir)
    plain = evaluate(model, DataLoader(ToyDataset(41, seed=1), batch_size=7), torch.device("cpu"))
    torch.save({"params": {k: v.detach() for k, v in model.named_parameters()}, "seen": model.seen,
                "summary": summary, "plain_val": {k: plain[k] for k in ("top1", "loss", "num_samples")},
                "writes": list(writes), "main_after_fit": is_main_process()}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_ddp_two_cpu_processes(tmp_path):
    import torch.multiprocessing as mp

    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    # fork (not spawn) so the workers inherit the imported modules instead of importing
    # torch again; build an optimizer first so they also inherit torch._dynamo, which the
    # first optimizer imports (seconds). Safe on CPU: each worker uses one thread, no CUDA.
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    import gaze.viz.plots  # noqa: F401  (matplotlib, for rank 0's training curves)

    mp.start_processes(ddp_worker, args=(2, free_port(), str(run_dir), str(out_dir)), nprocs=2,
                       join=True, start_method="fork")
    ranks = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for epoch in (1, 2):  # each rank trains on its own half of the data, every epoch
        shard_0, shard_1 = (set(r["seen"][epoch]) for r in ranks)
        assert len(shard_0) == len(shard_1) == 48 and not shard_0 & shard_1
        assert shard_0 | shard_1 == {f"s{i:03d}" for i in range(96)}
    for name, tensor in ranks[0]["params"].items():  # gradients were synchronised
        torch.testing.assert_close(tensor, ranks[1]["params"][name], rtol=0, atol=0, msg=name)
    checkpoint = torch.load(run_dir / "ckpt_best.pt", weights_only=True)
    torch.testing.assert_close(checkpoint["model"]["fc.weight"], ranks[0]["params"]["fc.weight"])
    for rank in ranks:  # 41 validation samples, sharded 21 + 21 with one padding repeat
        assert rank["summary"]["val"]["num_samples"] == 41
        assert rank["summary"]["val"]["top1"] == pytest.approx(rank["plain_val"]["top1"])
        assert rank["summary"]["val"]["loss"] == pytest.approx(rank["plain_val"]["loss"], rel=1e-5)
    assert ranks[0]["summary"] == ranks[1]["summary"]
    assert ranks[0]["writes"] and not ranks[1]["writes"]  # only rank 0 writes files
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    # the epoch's validation used rank 0's BatchNorm statistics, i.e. the model that was saved
    best_row = metrics[metrics["epoch"] == ranks[0]["summary"]["best_epoch"]].iloc[0]
    assert best_row["val_loss"] == pytest.approx(ranks[0]["summary"]["val"]["loss"], rel=1e-5)
    # torchrun workers stay non-main after leaving the process group (no duplicate prints)
    assert [r["main_after_fit"] for r in ranks] == [True, False]


# --------------------------------------------------------------------------- logging pieces the engine uses
def test_metrics_csv_rows_columns_and_truncation(tmp_path):
    from gaze.engine.logging import append_metrics_row, read_metrics, truncate_metrics

    path = tmp_path / "metrics.csv"
    append_metrics_row(path, {"epoch": 1, "lr": 0.1, "train_loss": 2.0})
    append_metrics_row(path, {"epoch": 2, "lr": 0.1, "train_loss": 1.5, "val_top1": 40.0})
    append_metrics_row(path, {"epoch": 2, "lr": 0.1, "train_loss": 1.4, "val_top1": 41.0})  # epoch re-run
    table = read_metrics(path)
    assert list(table.columns) == ["epoch", "lr", "train_loss", "val_top1"]
    assert table["epoch"].tolist() == [1, 2] and table["train_loss"].tolist() == [2.0, 1.4]
    assert math.isnan(table["val_top1"][0])
    truncate_metrics(path, last_epoch=1)
    assert read_metrics(path)["epoch"].tolist() == [1]


def test_progress_log_lines_and_tqdm(caplog, monkeypatch):
    import logging

    from gaze.engine.logging import Progress, get_logger

    monkeypatch.setattr(get_logger(), "propagate", True)  # let caplog see the lines
    with caplog.at_level(logging.INFO, logger="gaze"):
        progress = Progress(range(5), "epoch 1", log_interval=2, use_tqdm=False)
        for step in progress:
            progress.update(4, lr=0.1, loss=float(step))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("]")[0] for line in lines] == ["epoch 1 [2/5", "epoch 1 [4/5", "epoch 1 [5/5"]
    assert "loss 2.0000 lr 1.00e-01 img/s" in lines[-1] and progress.means() == {"loss": 2.0}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gaze"):
        bar = Progress(range(3), "epoch 2", use_tqdm=True)
        for _ in bar:
            bar.update(1, loss=1.0)
    assert not caplog.records  # the bar replaces the lines
    silent = Progress(range(3), "rank 1", enabled=False)
    for _ in silent:
        silent.update(1, loss=1.0)
    assert silent.means() == {"loss": 1.0}


def test_tensorboard_is_lazy_and_rank_zero_only(tmp_path):
    from gaze.engine.logging import TensorBoard

    off = TensorBoard(tmp_path / "off", enabled=False)
    off.add_scalars({"loss": 1.0}, step=1, prefix="train")
    off.add_image("overlay", np.zeros((4, 4, 3), np.uint8), step=1)
    assert not (tmp_path / "off").exists()
    board = TensorBoard(tmp_path / "on")
    assert not (tmp_path / "on").exists()  # nothing until the first value
    board.add_scalars({"loss": 1.0, "name": "skipped"}, step=1, prefix="train")
    board.add_image("overlay", np.zeros((4, 4, 3), np.uint8), step=1)
    board.close()
    assert list((tmp_path / "on").glob("events.out.tfevents.*"))


def test_amp_is_cuda_only():
    from gaze.engine.fit import amp_dtype

    assert amp_dtype("bf16", torch.device("cpu")) is None
    assert amp_dtype(False, torch.device("cuda")) is None and amp_dtype(None, torch.device("cuda")) is None
    assert amp_dtype("bf16", torch.device("cuda")) == torch.bfloat16
    assert amp_dtype("fp16", torch.device("cuda")) == torch.float16
    with pytest.raises(ValueError, match="'amp'.*'int8'"):
        amp_dtype("int8", torch.device("cuda"))


def test_fit_rejects_bad_select_metric(tmp_path):
    with pytest.raises(ValueError, match="'select_metric'.*'test_top1'"):
        fit(new_model(), make_loaders(), make_config(select_metric="test_top1"), tmp_path)


def test_fit_without_validation_keeps_the_last_epoch(tmp_path):
    loaders = make_loaders()
    loaders["val"] = None
    summary = fit(new_model(), loaders, make_config(end_epoch=2), tmp_path)
    assert summary["best_epoch"] == 2 and summary["val"] is None and summary["test"]["num_samples"] == 40
    best = torch.load(tmp_path / "ckpt_best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["best_metric"] is None
    for schedule in ({"lr_schedule": "plateau"}, {"early_stop_patience": 3}):
        with pytest.raises(ValueError, match="watch the validation split, but there is none"):
            fit(new_model(), loaders, make_config(**schedule), tmp_path / "watching")


# --------------------------------------------------------------------------- plateau, early stop, model loss
def test_plateau_step_drops_lr_and_reloads_best(tmp_path):
    from gaze.engine.fit import CKPT_BEST, _plateau_step, build_plateau, get_logger

    model = new_model()
    optimizer = build_optimizer(model.parameters(), {"optimizer": "adam", "init_lr": 0.01, "weight_decay": 0})
    config = {**ENGINE_DEFAULTS, "lr_schedule": "plateau", "plateau_patience": 0, "select_metric": "loss",
              "reload_best_on_lr_drop": True}
    plateau = build_plateau(optimizer, config)
    best_weights = {k: v.clone() for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / CKPT_BEST, make_checkpoint(model, optimizer, epoch=1, config=config, best_epoch=1))
    plateau.step(1.0)  # epoch 1: the best so far
    with torch.no_grad():
        model.fc.weight.add_(1.0)  # epoch 2 moved the weights ...
    _plateau_step(plateau, 2.0, model, optimizer, tmp_path, config, improved=False, logger=get_logger())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # ... did not improve: lr x 0.1
    torch.testing.assert_close(model.fc.weight, best_weights["fc.weight"])  # and the best weights are back


def test_plateau_run_resumes_exactly_and_logs_the_drop(tmp_path):
    plateau = {"end_epoch": 5, "lr_schedule": "plateau", "plateau_patience": 0, "select_metric": "loss",
               "reload_best_on_lr_drop": True, "init_lr": 0.5, "lr_decay_rate": 0.5}
    straight, _ = run_fit(tmp_path / "straight", **plateau)
    with pytest.raises(KeyboardInterrupt):  # killed right after epoch 4's lr drop and reload
        run_fit(tmp_path / "killed", crash_at_epoch=5, **plateau)
    resumed, _ = run_fit(tmp_path / "killed", **plateau)
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    last = torch.load(tmp_path / "straight" / "ckpt_last.pt", weights_only=True)
    assert last["plateau"]["num_bad_epochs"] >= 0 and "best" in last["plateau"]
    metrics = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    val = metrics["val_loss"].to_numpy()
    worse = [e for e in range(1, 5) if val[e] >= val[:e].min()]  # 0-based epochs that did not improve
    assert worse, "the toy run should have a non-improving epoch (lr 0.5 overshoots at epoch 4)"
    expected_lr = [0.5 * 0.5 ** sum(1 for w in worse if w < e) for e in range(5)]
    np.testing.assert_allclose(metrics["lr"], expected_lr)


def test_early_stop_after_patience_without_improvement(tmp_path):
    # lr 0: the validation loss never changes, so epoch 1 stays the best and epoch 3 stops.
    summary, model = run_fit(tmp_path / "run", end_epoch=6, init_lr=0.0, select_metric="loss",
                             lr_schedule="constant", early_stop_patience=2)
    assert sorted(model.seen) == [1, 2, 3] and summary["best_epoch"] == 1


def test_evaluate_with_model_loss_averages_the_model_total():
    model = new_model().eval()
    loader = DataLoader(ToyDataset(20, seed=3), batch_size=8)
    results = evaluate(model, loader, torch.device("cpu"), model_loss=True)
    with torch.no_grad():
        totals = [(float(model.loss(batch)["loss"]), len(batch["label"])) for batch in loader]
    expected = sum(t * n for t, n in totals) / 20
    assert results["loss"] == pytest.approx(expected, rel=1e-6)
    assert results["num_samples"] == 20 and 0 <= results["top1"] <= 100
