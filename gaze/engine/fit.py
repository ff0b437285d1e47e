"""``fit``: a run of epochs with selection on validation, resume, early stop, and phases.

The pieces live beside it: optim.py (optimizers, schedules), loop.py (one epoch, AMP,
accumulation), evaluate.py (evaluation protocols), checkpoint.py (save/load), dist.py and
logging.py.

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

Model contract (DESIGN.md §2): ``model.predict(batch) -> logits`` (B, C) and
``model.loss(batch) -> {"loss": total, "loss_ce": ..., ["logits": (B, C)]}``; the engine
sets ``model.epoch`` (1-based) at each epoch start, and ``model.phase`` at each phase of
:func:`fit_phases`, for losses that depend on them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
)

from gaze.atomic import atomic_path, remove_stale_temporaries
from gaze.config import format_config, save_config
from gaze.engine.checkpoint import (
    CKPT_BEST,
    CKPT_LAST,
    load_checkpoint,
    make_checkpoint,
    plain_config,
    save_checkpoint,
)
from gaze.engine.dist import (
    DistInfo,
    barrier,
    broadcast_buffers,
    distributed_session,
    epoch_seed,
    seed_everything,
)
from gaze.engine.evaluate import (
    BASE_METRICS,
    EVAL_DEFAULTS,
    check_protocol,
    evaluate,
    model_metrics,
)
from gaze.engine.logging import (
    TensorBoard,
    append_metrics_row,
    get_logger,
    log_versions,
    read_metrics,
    setup_logging,
    truncate_metrics,
)
from gaze.engine.loop import (
    LOOP_DEFAULTS,
    SCALAR_PREFIXES,
    LossForward,
    Training,
    amp_dtype,
    optimizer_steps,
    train_one_epoch,
    unwrap_model,
)
from gaze.engine.optim import (
    OPTIM_DEFAULTS,
    build_optimizer,
    build_plateau,
    build_scheduler,
)

#: Config keys the engine reads, with the values used when a config lacks them (the
#: optimisation, loop and evaluation keys are those of their modules): the published CUB-GHA
#: recipe (cub_pim.md §1.3: seed 1142).
ENGINE_DEFAULTS = {
    **OPTIM_DEFAULTS,
    **LOOP_DEFAULTS,
    **EVAL_DEFAULTS,
    "device": "auto",            # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:N' | 'mps'
    "seed": 1142,
    "reload_best_on_lr_drop": False,  # plateau: reload the best weights and optimizer state when the lr drops (GG-CAM)
    "early_stop_patience": None,  # stop after this many epochs without a new best (None: never)
    "stop_lr": None,             # stop once the lr falls below this (GG-CAM: 1e-8; None: never)
    "select_metric": "top1",     # validation metric choosing ckpt_best: 'top1' | 'top5' | 'loss' | a metric the model or protocol reports
    "resume": True,              # continue from run_dir/ckpt_last.pt when it exists
    "deterministic": False,      # torch.use_deterministic_algorithms (slower on GPU)
    "channels_last": True,       # convolution weights in channels-last memory layout (a GAT step on CPU: 2.1x faster)
    "find_unused_parameters": False,  # DDP: set for models with branches unused in a step
    "sync_bn": False,            # DDP on CUDA: BatchNorm statistics over all processes (SyncBatchNorm; CAL's recipe)
    "dist_timeout_minutes": 10.0,  # DDP: a rank waits this long for the others, then names the missing ranks
    "write_reports": True,       # classification reports of the best model at the end
    "class_names": None,         # names for reports; None: the dataset's `class_names` if any
}

METRICS_CSV = "metrics.csv"
CURVES_PNG = "training_curves.png"


# --------------------------------------------------------------------------- fit
@dataclass
class RunState:
    """Where a run stands: the next epoch, the best validation value and its epoch."""

    start_epoch: int = 1
    best_metric: float | None = None
    best_epoch: int = 0


@dataclass
class Run:
    """What the epoch bookkeeping of one fit shares: folder, config, process, logger, board."""

    run_dir: Path
    config: Mapping
    info: DistInfo
    logger: logging.Logger
    board: TensorBoard | None = None


@dataclass
class Phase:
    """One fit of a multi-phase run (:func:`fit_phases`): its sub-folder name, loaders and config."""

    name: str
    loaders: Mapping[str, DataLoader | None]
    config: Mapping = field(default_factory=dict)


def fit(model: nn.Module, loaders: Mapping[str, DataLoader], config: Mapping, run_dir: str | os.PathLike) -> dict:
    """Train, select the best epoch on validation, then test it; resume from ``ckpt_last.pt``.

    Args:
        model: a contract model (``predict(batch)``, ``loss(batch)``, ``name``).
        loaders: ``"train"``, optionally ``"val"`` (none or None: no selection, the last
            epoch is the result) and ``"test"`` DataLoaders. Under torchrun
            they are rebuilt around a DistributedSampler (same dataset, batch size, workers).
        config: a plain dict; the keys of :data:`ENGINE_DEFAULTS` are read (defaults there).
        run_dir: written on rank 0: config.json (+ config file copies), train.log,
            metrics.csv, tensorboard/, ckpt_last.pt, ckpt_best.pt, training_curves.png,
            reports of the best model (val_* and, with a test loader, the unprefixed ones),
            summary.json.

    Returns:
        summary: ``best_epoch``, ``best_metric``, ``select_metric``, ``eval_protocol``, ``val``
        and ``test`` (None without that loader) metrics of the best weights (top1, top5,
        loss, model metrics, num_samples), ``run_dir``. The model holds the best weights.
    """
    config = {**ENGINE_DEFAULTS, **config}
    with distributed_session(config["device"], float(config["dist_timeout_minutes"])) as (device, info):
        return _fit(model, loaders, config, Path(run_dir), device, info)


def fit_phases(model: nn.Module, phases: Sequence[Phase], config: Mapping, run_dir: str | os.PathLike,
               first: int = 1) -> list[dict]:
    """Consecutive fits in one run folder, each starting from the previous phase's best weights.

    Phase k (``first``, ``first + 1``, ...) trains in ``<run_dir>/<phase.name>/`` with
    ``config`` updated by ``phase.config``; the engine sets ``model.phase = k`` first
    (GRADIA's phase 2 changes its loss). A killed run resumes: finished phases reload their
    best weights from their folder, the interrupted one continues from its ``ckpt_last.pt``.

    Returns:
        the :func:`fit` summary of every phase, in order.
    """
    names = [phase.name for phase in phases]
    if not phases or len(set(names)) != len(names) or any(not name or "/" in name for name in names):
        raise ValueError(f"phases need distinct, non-empty folder names without '/', got {names}")
    summaries = []
    for index, phase in enumerate(phases, start=first):
        unwrap_model(model).phase = index
        summaries.append(fit(model, phase.loaders, {**config, **phase.config}, Path(run_dir) / phase.name))
    return summaries


def train_model(model: nn.Module, loaders: Mapping[str, DataLoader | None], config: Mapping,
                run_dir: str | os.PathLike,
                phase_loaders: Mapping[str, Mapping[str, DataLoader | None]] | None = None) -> dict:
    """:func:`fit`, or :func:`fit_phases` over the phases the model's class states (``phases``).

    Phased runs: ``phase_epochs`` gives each phase's epochs (None: ``end_epoch`` shared
    equally, rounded up); ``phase_select_metrics`` each phase's ``select_metric`` (None:
    ``select_metric`` in every phase); ``phase`` (None: all) runs that phase alone, e.g.
    GRADIA's phase 2 from an ``init_from`` checkpoint; ``phase_loaders[name]`` replaces
    ``loaders`` in that phase (GRADIA's phase-2 training set adds rated validation images).

    Returns:
        the summary of the last fit, plus ``phases`` (every phase's summary) for phased runs.
    """
    names = tuple(getattr(unwrap_model(model), "phases", ()))
    if not names:
        return fit(model, loaders, config, run_dir)
    epochs = config.get("phase_epochs") or [-(-int(config["end_epoch"]) // len(names))] * len(names)
    metrics = config.get("phase_select_metrics") or [config.get("select_metric", ENGINE_DEFAULTS["select_metric"])] * len(names)
    start = int(config.get("phase") or 1)
    if len(epochs) != len(names) or len(metrics) != len(names) or not 1 <= start <= len(names):
        raise ValueError(f"phase_epochs={config.get('phase_epochs')}, phase_select_metrics="
                         f"{config.get('phase_select_metrics')}, phase={config.get('phase')}: the model trains in "
                         f"{len(names)} phases {list(names)}")
    phase_loaders = phase_loaders or {}
    phases = [Phase(name, phase_loaders.get(name, loaders), {"end_epoch": int(count), "select_metric": metric})
              for name, count, metric in zip(names, epochs, metrics)]
    summaries = fit_phases(model, phases[start - 1:], config, run_dir, first=start)
    return {**summaries[-1], "phases": summaries}


def _fit(model, loaders, config, run_dir: Path, device: torch.device, info: DistInfo) -> dict:
    """The body of :func:`fit` once the device and the process group are set."""
    _check_config(config)
    archived = _prepare_run_dir(run_dir, bool(config["resume"])) if info.is_main else None
    barrier()  # no rank looks into the run folder before it is ready
    run = Run(run_dir, config, info, setup_logging(run_dir if info.is_main else None, info.rank))
    if archived is not None:
        run.logger.info("resume=False: the previous run in %s was moved to %s", run_dir, archived)
    log_versions(run.logger)
    run.logger.info("config:\n%s", format_config(config))
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
    accumulate = int(config["accumulate_steps"])
    steps = optimizer_steps(len(train_loader), accumulate)
    run.logger.info("device %s, %d process(es), global batch %s x %d accumulated, %d optimizer steps per epoch",
                    device, info.world_size, (train_loader.batch_size or 0) * info.world_size, accumulate, steps)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], config)
    dtype = amp_dtype(config["amp"], device)
    training = Training(optimizer, device, build_scheduler(optimizer, config, steps),
                        torch.amp.GradScaler("cuda", enabled=dtype == torch.float16), dtype,
                        config["clip_grad_norm"], accumulate, int(config["log_interval"]))
    plateau = build_plateau(optimizer, config)
    state = RunState()
    if config["resume"] and (run_dir / CKPT_LAST).is_file():
        state = _resume(run, model, training, plateau)
    train_module = _training_module(model, device, info, config)
    run.board = TensorBoard(run_dir / "tensorboard", enabled=info.is_main)
    try:
        for epoch in range(state.start_epoch, int(config["end_epoch"]) + 1):
            _start_epoch(model, train_loader, config, epoch, info.rank)
            train_stats = train_one_epoch(train_module, train_loader, training, epoch)
            broadcast_buffers(model)  # every rank validates rank 0's model, the one saved
            if "val" in loaders:
                val = _evaluate(run, model, loaders["val"], training, "val")
                improved = _is_better(_selected(val, config), state.best_metric, config["select_metric"])
            else:  # no validation split: every epoch is the newest best, the last one is kept
                val, improved = NO_VALIDATION, True
            if improved:
                best = None if val is NO_VALIDATION else _selected(val, config)
                state.best_metric, state.best_epoch = best, epoch
            _log_epoch(run, epoch, train_stats, val, state)
            if plateau is not None:
                _plateau_step(run, plateau, _selected(val, config), model, optimizer, improved)
            if info.is_main:
                _save_epoch(run, model, training, plateau, epoch, state, improved)
            barrier()  # ranks > 0 wait for the checkpoint
            if _should_stop(run, epoch, state, optimizer):
                break
    finally:
        run.board.close()
    return _finish(run, model, loaders, training, state)


def _evaluate(run: Run, model: nn.Module, loader: DataLoader, training: Training, split: str) -> dict:
    """``split`` through the configured protocol (validation: the model's loss when ``val_loss='model'``)."""
    model_loss = split == "val" and run.config["val_loss"] == "model"
    return evaluate(model, loader, training.device, training.amp, model_loss, run.config["eval_protocol"])


def _selected(results: Mapping, config: Mapping) -> float:
    """The ``select_metric`` value of an evaluation; a metric nobody reports is an error naming those there are."""
    metric = config["select_metric"]
    if metric not in results:
        reported = [k for k, v in results.items() if isinstance(v, float)]
        raise ValueError(f"config key 'select_metric': {metric!r} is not reported by the model or the "
                         f"'{config['eval_protocol']}' protocol (reported: {', '.join(reported)})")
    return results[metric]


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




def _plateau_step(run: Run, plateau, value: float, model, optimizer, improved: bool) -> None:
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
    run.logger.info("validation %s did not improve for %d epochs: lr %.3g -> %.3g", run.config["select_metric"],
                    plateau.patience + 1, before[0], after[0])
    best_path = run.run_dir / CKPT_BEST
    if run.config["reload_best_on_lr_drop"] and not improved and best_path.is_file():
        checkpoint = load_checkpoint(best_path, model)
        optimizer.load_state_dict(checkpoint["optimizer"])
        for group, lr in zip(optimizer.param_groups, after):
            group["lr"] = lr
        run.logger.info("reloaded the best weights and optimizer state of epoch %d", checkpoint.get("best_epoch", 0))


def _should_stop(run: Run, epoch: int, state: RunState, optimizer) -> bool:
    """Early stop: ``early_stop_patience`` epochs without a new best, or the lr below ``stop_lr``."""
    patience, stop_lr = run.config["early_stop_patience"], run.config["stop_lr"]
    if patience is not None and epoch - state.best_epoch >= int(patience):
        run.logger.info("early stop at epoch %d: no new best for %d epochs", epoch, epoch - state.best_epoch)
        return True
    if stop_lr is not None and optimizer.param_groups[0]["lr"] < float(stop_lr):
        run.logger.info("early stop at epoch %d: lr %.3g below stop_lr %.3g", epoch, optimizer.param_groups[0]["lr"],
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
    if not isinstance(config["select_metric"], str) or not config["select_metric"]:
        raise ValueError(f"config key 'select_metric': expected a metric name such as 'top1', 'top5' or 'loss', "
                         f"got {config['select_metric']!r}")
    if config["val_loss"] not in ("ce", "model"):
        raise ValueError(f"config key 'val_loss': expected 'ce' or 'model', got {config['val_loss']!r}")
    if int(config["end_epoch"]) < 1:
        raise ValueError(f"config key 'end_epoch': expected at least 1, got {config['end_epoch']!r}")
    if int(config["accumulate_steps"]) < 1:
        raise ValueError(f"config key 'accumulate_steps': expected at least 1, got {config['accumulate_steps']!r}")
    check_protocol(config["eval_protocol"])


def _training_module(model: nn.Module, device: torch.device, info: DistInfo, config: Mapping) -> nn.Module:
    """:class:`LossForward` around the model, DDP-wrapped when several processes run (its
    BatchNorm layers made SyncBatchNorm first with ``sync_bn`` on CUDA)."""
    if info.distributed and config["sync_bn"]:
        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the root; same parameter names
        else:
            get_logger().warning(f"sync_bn=True needs CUDA: BatchNorm stays per process on {device.type}")
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




def _resume(run: Run, model: nn.Module, training: Training, plateau=None) -> RunState:
    """Restore model, optimizer, schedulers and scaler from ckpt_last.pt; return the loop state."""
    path = run.run_dir / CKPT_LAST
    checkpoint = load_checkpoint(path, model)
    saved = str(checkpoint["config"].get("optimizer", run.config["optimizer"])).lower()
    if saved != str(run.config["optimizer"]).lower():
        raise ValueError(f"{path}: this run was trained with optimizer={saved!r}, the config says "
                         f"{run.config['optimizer']!r}; its state cannot continue another optimizer: give a new "
                         "model_name, or resume=False to start afresh (the old run is kept aside)")
    training.optimizer.load_state_dict(checkpoint["optimizer"])
    training.scheduler.load_state_dict(checkpoint["scheduler"])
    if plateau is not None and checkpoint.get("plateau"):
        plateau.load_state_dict(checkpoint["plateau"])
    if checkpoint["scaler"]:
        training.grad_scaler.load_state_dict(checkpoint["scaler"])
    changed = sorted(k for k, v in plain_config(run.config).items()
                     if k in checkpoint["config"] and checkpoint["config"][k] != v
                     and k not in ("end_epoch", "resume", "device", "config_files"))
    if changed:
        run.logger.warning("resuming with changed config keys (the result will differ from one run): %s", changed)
    if run.info.is_main:
        truncate_metrics(run.run_dir / METRICS_CSV, checkpoint["epoch"])
    run.logger.info("resumed from %s at epoch %d (best %s %s at epoch %d)", path, checkpoint["epoch"],
                    run.config["select_metric"], checkpoint["best_metric"], checkpoint.get("best_epoch", 0))
    return RunState(checkpoint["epoch"] + 1, checkpoint["best_metric"], checkpoint.get("best_epoch", 0))


def _val_scalars(val: Mapping) -> dict[str, float]:
    """loss, top1, top5 and the model's or protocol's metrics of a validation result."""
    return {**{k: v for k, v in val.items() if k in BASE_METRICS}, **model_metrics(val)}


def _log_epoch(run: Run, epoch: int, train_stats: Mapping, val: Mapping, state: RunState) -> None:
    """Console line, tensorboard scalars and the metrics.csv row of one epoch (rank 0)."""
    val_scalars = _val_scalars(val)
    extra = " ".join(f"{k} {v:.4f}" for k, v in val_scalars.items()
                     if k not in BASE_METRICS and not k.startswith("top3_"))  # every head's top-1; top-3 in metrics.csv
    run.logger.info(
        "epoch %d/%d train %s | val (%s) loss %.4f top1 %.2f top5 %.2f%s | best %s %.4f @ epoch %d | %.1fs",
        epoch, run.config["end_epoch"],
        " ".join(f"{k} {v:.2f}" if k == "top1" else f"{k} {v:.4f}" for k, v in _train_scalars(train_stats).items()),
        run.config["eval_protocol"], val["loss"], val["top1"], val["top5"], f" {extra}" if extra else "",
        run.config["select_metric"], state.best_metric if state.best_metric is not None else float("nan"),
        state.best_epoch, train_stats["epoch_time"])
    if not run.info.is_main:
        return
    row = {"epoch": epoch, "lr": train_stats["lr"]}
    row.update({f"train_{k}": v for k, v in _train_scalars(train_stats).items()})
    row.update({f"val_{k}": v for k, v in val_scalars.items()})
    row.update(images_per_second=train_stats["images_per_second"], epoch_time=train_stats["epoch_time"])
    append_metrics_row(run.run_dir / METRICS_CSV, row)
    run.board.add_scalars(_train_scalars(train_stats), epoch, "train")
    run.board.add_scalars(val_scalars, epoch, "val")
    run.board.add_scalars({"lr": train_stats["lr"], "images_per_second": train_stats["images_per_second"]}, epoch,
                          "info")
    run.board.flush()


def _train_scalars(train_stats: Mapping[str, float]) -> dict[str, float]:
    """The loss parts (learnt loss weights, training accuracies: ``SCALAR_PREFIXES``) and train top-1 of
    :func:`train_one_epoch`'s output."""
    return {k: v for k, v in train_stats.items() if k.startswith(SCALAR_PREFIXES) or k == "top1"}




def _save_epoch(run: Run, model: nn.Module, training: Training, plateau, epoch: int, state: RunState,
                improved: bool) -> None:
    """ckpt_best.pt on improvement, then ckpt_last.pt (both atomic; best first, so a crash
    in between re-runs the epoch from the previous ckpt_last and rewrites best)."""
    checkpoint = make_checkpoint(model, training.optimizer, training.scheduler, training.grad_scaler, epoch,
                                 state.best_metric, run.config, state.best_epoch)
    if plateau is not None:
        checkpoint["plateau"] = plateau.state_dict()
    if improved:
        save_checkpoint(run.run_dir / CKPT_BEST, checkpoint)
        with atomic_path(run.run_dir / CKPT_LAST) as temporary:
            shutil.copyfile(run.run_dir / CKPT_BEST, temporary)
    else:
        save_checkpoint(run.run_dir / CKPT_LAST, checkpoint)


def _finish(run: Run, model: nn.Module, loaders: Mapping, training: Training, state: RunState) -> dict:
    """Load the best weights, evaluate val (and test), write plots, reports and summary.json."""
    best_path = run.run_dir / CKPT_BEST if (run.run_dir / CKPT_BEST).is_file() else run.run_dir / CKPT_LAST
    load_checkpoint(best_path, model)
    results = {split: _evaluate(run, model, loaders[split], training, split) for split in ("val", "test")
               if split in loaders}  # test: CE of the image alone
    scalars = {split: {**_val_scalars(r), "num_samples": r["num_samples"]} for split, r in results.items()}
    summary = {"best_epoch": state.best_epoch, "best_metric": state.best_metric,
               "select_metric": run.config["select_metric"], "eval_protocol": run.config["eval_protocol"],
               "val": scalars.get("val"), "test": scalars.get("test"), "run_dir": str(run.run_dir)}
    for split, values in scalars.items():
        run.logger.info("best model (epoch %d) on %s (%s): top1 %.2f top5 %.2f loss %.4f (%d samples)",
                        state.best_epoch, split, run.config["eval_protocol"], values["top1"], values["top5"],
                        values["loss"], values["num_samples"])
    if run.info.is_main:
        _write_artefacts(run, results, summary, loaders)
    barrier()
    return summary


def _write_artefacts(run: Run, results: Mapping, summary: Mapping, loaders: Mapping) -> None:
    """training_curves.png, reports per split (test unprefixed, val as val_*), summary.json."""
    from gaze.viz.attention import write_attention_files
    from gaze.viz.plots import (
        plot_training_curves,  # matplotlib and sklearn: rank 0, at the end only
    )
    from gaze.viz.reports import write_reports

    metrics = read_metrics(run.run_dir / METRICS_CSV)
    if not metrics.empty:
        plot_training_curves(metrics, run.run_dir / CURVES_PNG)
    if run.config["write_reports"]:
        for split, result in results.items():
            names = _class_names(run.config, loaders[split], result["probabilities"].shape[1])
            write_reports(result, run.run_dir, names, prefix="" if split == "test" else f"{split}_")
        if "attention_iou" in results.get("test", {}).get("sample_metrics", {}):
            write_attention_files(results["test"], run.run_dir / "evaluation")  # GRADIA's files (A7)
    with atomic_path(run.run_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")


def _class_names(config, loader, count: int) -> list[str] | None:
    """``class_names`` from the config, else the dataset's, when they fit C."""
    names = config.get("class_names") or getattr(getattr(loader, "dataset", None), "class_names", None)
    return [str(n) for n in names] if names is not None and len(names) == count else None
