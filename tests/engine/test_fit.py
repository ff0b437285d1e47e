"""gaze/engine/fit.py: fit artefacts, selection, exact resume, plateau, early stop, phases, DDP.

A toy model implementing the model contract learns a toy problem (the class shifts the
mean of channel 0 of an 8x8 image) in a few epochs on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from gaze.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from gaze.engine.dist import is_main_process
from gaze.engine.evaluate import evaluate
from gaze.engine.fit import ENGINE_DEFAULTS, fit
from gaze.engine.optim import build_optimizer
from tests.engine.toys import ToyDataset, ToyNet, make_config, make_loaders, new_model

pytestmark = pytest.mark.usefixtures("one_thread")


CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "scaler", "epoch", "best_metric",
                   "model_name", "config", "version"}


TIME_COLUMNS = ["images_per_second", "epoch_time"]


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
    assert "bird_0" in report["per_class_accuracy"]  # class names from dataset.class_names
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


def test_engine_defaults_are_config_types():
    for key, value in ENGINE_DEFAULTS.items():
        assert value is None or isinstance(value, (bool, int, float, str, list)), key


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


def test_plateau_step_drops_lr_and_reloads_best(tmp_path):
    from gaze.engine.checkpoint import CKPT_BEST
    from gaze.engine.fit import Run, _plateau_step
    from gaze.engine.logging import get_logger
    from gaze.engine.optim import build_plateau

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
    run = Run(tmp_path, config, info=None, logger=get_logger())
    _plateau_step(run, plateau, 2.0, model, optimizer, improved=False)
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


# --------------------------------------------------------------------------- phases, model metrics
def phase_run(run_dir: Path, crash_at_epoch=None) -> tuple[list[dict], ToyNet]:
    from gaze.engine.fit import Phase, fit_phases

    model = new_model()
    model.crash_at_epoch = crash_at_epoch
    phases = [Phase("phase1", make_loaders(), {"end_epoch": 2}),
              Phase("phase2", make_loaders(), {"end_epoch": 3, "init_lr": 0.02})]
    return fit_phases(model, phases, make_config(write_reports=False), run_dir), model


def test_phases_start_from_the_previous_best_and_resume_exactly(tmp_path):
    summaries, model = phase_run(tmp_path / "straight")
    assert [s["run_dir"] for s in summaries] == [str(tmp_path / "straight" / p) for p in ("phase1", "phase2")]
    assert model.phase == 2 and sorted(model.seen) == [1, 2, 3]  # phase 2 trained epochs 1-3
    from gaze.engine.fit import Phase, fit_phases

    # a phase with lr 0 keeps the weights it starts from: those are the previous phase's best
    phases = [Phase("a", make_loaders(), {"end_epoch": 2}), Phase("b", make_loaders(), {"init_lr": 0.0, "end_epoch": 1})]
    fit_phases(new_model(), phases, make_config(write_reports=False), tmp_path / "zero")
    start = torch.load(tmp_path / "zero" / "a" / "ckpt_best.pt", weights_only=True)["model"]
    after = torch.load(tmp_path / "zero" / "b" / "ckpt_last.pt", weights_only=True)["model"]
    last_of_a = torch.load(tmp_path / "zero" / "a" / "ckpt_last.pt", weights_only=True)
    for key in ("conv.weight", "fc.weight", "fc.bias"):
        torch.testing.assert_close(after[key], start[key], rtol=0, atol=0, msg=key)
    assert last_of_a["best_epoch"] in (1, 2)
    with pytest.raises(KeyboardInterrupt):  # killed in phase 2, epoch 3
        phase_run(tmp_path / "killed", crash_at_epoch=3)
    phase_run(tmp_path / "killed")
    assert_same_run(tmp_path / "straight" / "phase2", tmp_path / "killed" / "phase2")
    with pytest.raises(ValueError, match="distinct"):
        fit_phases(new_model(), [Phase("p", {}), Phase("p", {})], make_config(), tmp_path / "dup")


class ConfidenceNet(ToyNet):
    """Reports the mean top probability as a validation metric."""

    def predict(self, batch):
        logits = super().predict(batch)
        return {"logits": logits, "confidence": logits.softmax(1).amax(1)}


def test_selection_on_a_metric_the_model_reports(tmp_path):
    torch.manual_seed(0)
    model = ConfidenceNet()
    summary = fit(model, make_loaders(), make_config(end_epoch=3, select_metric="confidence", write_reports=False),
                  tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["best_epoch"] == int(metrics["epoch"][metrics["val_confidence"].idxmax()])
    assert summary["val"]["confidence"] == pytest.approx(metrics["val_confidence"].max(), rel=1e-6)
    assert summary["eval_protocol"] == "single"
    with pytest.raises(ValueError, match="'nope' is not reported .* \\(reported: .*confidence"):
        fit(ConfidenceNet(), make_loaders(), make_config(end_epoch=1, select_metric="nope"), tmp_path / "bad")


def test_resuming_with_another_optimizer_is_a_clear_error(tmp_path):
    """Resuming an SGD run with optimizer='adam' died in torch's Adam.__setstate__ (KeyError: 'step')."""
    run_fit(tmp_path / "run", end_epoch=1, optimizer="sgd")
    with pytest.raises(ValueError, match=r"trained with optimizer='sgd', the config says 'adam'"):
        run_fit(tmp_path / "run", end_epoch=2, optimizer="adam")
