"""Device choice, torchrun/DDP helpers and seeding (DESIGN.md §4).

``device = "auto"`` picks cuda, then mps, then cpu. Under ``torchrun --nproc_per_node=N``
the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` environment variables turn on
DistributedDataParallel: nccl on GPUs, gloo on CPUs; only rank 0 logs and saves.
Nothing here (or anywhere in gaze) calls ``.cuda()``: tensors move with ``.to(device)``.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import numpy as np
import torch
import torch.distributed as torch_dist

#: Seeds of different ranks in one epoch stay apart by this much (world sizes stay below it).
RANK_SEED_STRIDE = 1
#: Seeds of consecutive epochs stay apart by this much, so (epoch, rank) pairs never collide.
EPOCH_SEED_STRIDE = 1000
#: How long a rank waits for the others in a collective before it fails (config key
#: ``dist_timeout_minutes``). torch's default is 30 minutes; checkpoint writes and
#: evaluation take seconds to a few minutes, so a frozen rank is reported much sooner.
DEFAULT_TIMEOUT_MINUTES = 10.0

#: The gloo group barriers run in (they name the missing ranks; also under nccl), and its timeout.
_monitor: dict = {"group": None, "timeout": timedelta(minutes=DEFAULT_TIMEOUT_MINUTES)}


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and saves."""
        return self.rank == 0


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"|"cpu"|"cuda"|"cuda:1"|"mps"`` -> a torch.device that exists here.

    Args:
        name: the ``device`` config value. ``"auto"`` is cuda, else mps, else cpu.
        local_rank: GPU index of this process under torchrun (used for ``auto``/``cuda``).

    Raises:
        ValueError: an unknown name, or a device that is not available on this machine.
    """
    name = str(name).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available (use 'auto' or 'cpu')")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {name!r} requested but MPS is not available (use 'auto' or 'cpu')")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


def _mps_available() -> bool:
    """True on Apple silicon with a working MPS backend."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def dist_info_from_env() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (1 process when unset)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
        return DistInfo(rank, world_size, int(os.environ.get("LOCAL_RANK", rank)))
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(backend: str | None = None, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> DistInfo:
    """Join the process group torchrun set up (no-op for a single process).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; None picks nccl when CUDA is available, else gloo.
            Pass ``"gloo"`` to run DDP on CPUs of a GPU machine.
        timeout_minutes: how long collectives wait for a stalled rank (and :func:`barrier`
            before it names the ranks that did not arrive).

    Returns:
        DistInfo of this process. Under nccl the current CUDA device is set to local_rank.
    """
    info = dist_info_from_env()
    if not info.distributed or torch_dist.is_initialized():
        return info
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    timeout = timedelta(minutes=timeout_minutes)
    torch_dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, timeout=timeout)
    _monitor.update(group=torch_dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None,
                    timeout=timeout)
    return info


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def get_rank() -> int:
    """Rank of this process: the process group's, else torchrun's ``RANK`` (0 in a plain process).

    The environment matters after :func:`cleanup`: a torchrun worker that has left the
    group is still not rank 0, so it must not print or write the run's files.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank()
    return int(os.environ.get("RANK", 0))


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that logs and writes files."""
    return get_rank() == 0


@contextlib.contextmanager
def distributed_session(
    device_name: str = "auto", timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES
) -> Iterator[tuple[torch.device, DistInfo]]:
    """``(device, info)`` inside the torchrun process group, joined here unless already joined.

    A group this call joins is left at the end. Scripts that call :func:`gaze.engine.fit`
    several times (cross-validation folds) wrap the whole loop in one session: leaving and
    re-joining a gloo/nccl group on the same port between folds can hang.
    ``timeout_minutes``: see :func:`init_distributed`.
    """
    info = dist_info_from_env()
    device = resolve_device(device_name, info.local_rank)
    owns_group = info.distributed and not (torch_dist.is_available() and torch_dist.is_initialized())
    info = init_distributed(backend="nccl" if device.type == "cuda" else "gloo", timeout_minutes=timeout_minutes)
    try:
        yield device, info
    finally:
        if owns_group:
            cleanup()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank (no-op alone).

    Each DDP rank updates its running statistics on its own batches, so without this the
    ranks would validate different models, and not the one rank 0 saves.
    """
    if is_distributed():
        for buffer in module.buffers():
            torch_dist.broadcast(buffer, src)


class RankTimeoutError(RuntimeError):
    """Some ranks did not reach a barrier in time; the message names them."""


def barrier() -> None:
    """Wait for every rank (no-op without a process group); name the ranks that never come.

    A gloo ``monitored_barrier`` (a gloo side group under nccl) waits ``dist_timeout_minutes``
    and then raises naming the missing ranks, instead of hanging with no word of who froze.
    """
    if not is_distributed():
        return
    try:
        torch_dist.monitored_barrier(group=_monitor["group"], timeout=_monitor["timeout"], wait_all_ranks=True)
    except RuntimeError as error:
        minutes = _monitor["timeout"].total_seconds() / 60
        raise RankTimeoutError(
            f"rank {get_rank()}: waited {minutes:g} min (dist_timeout_minutes) at a barrier for the other ranks: "
            f"{str(error).splitlines()[0]}; a rank froze or died (see its log)") from None


def all_gather_objects(obj: object) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (unchanged without a process group)."""
    if is_distributed():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def cleanup() -> None:
    """Leave the process group, if one is initialised."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
    _monitor["group"] = None


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed for one (epoch, rank): the run seed plus offsets that never collide.

    Reseeding at every epoch start from this makes the data order, the augmentations and
    dropout of an epoch independent of what ran before, so a resumed run repeats an
    uninterrupted one exactly.
    """
    return seed + EPOCH_SEED_STRIDE * epoch + RANK_SEED_STRIDE * rank
