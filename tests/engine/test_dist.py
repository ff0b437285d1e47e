"""gaze/engine/dist.py: device resolution, torchrun environment, seeding, collectives on gloo."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gaze.engine import dist
from gaze.engine.dist import (
    DistInfo,
    dist_info_from_env,
    epoch_seed,
    init_distributed,
    is_main_process,
    resolve_device,
    seed_everything,
)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist, "_mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_resolve_device_without_accelerators(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    for name in ("cuda", "cuda:1", "mps"):
        with pytest.raises(ValueError, match=f"device '{name}' requested but"):
            resolve_device(name)
    with pytest.raises(ValueError, match="expected 'auto', 'cpu'"):
        resolve_device("tpu")


def test_resolve_device_prefers_cuda_then_mps(two_gpus, monkeypatch):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # torchrun rank's GPU
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


def test_environment_without_torchrun_is_one_process(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    info = init_distributed()
    assert info == DistInfo(0, 1, 0) and not info.distributed and info.is_main
    assert is_main_process() and dist.get_world_size() == 1
    dist.barrier()  # no-ops without a process group
    dist.cleanup()
    assert dist.all_gather_objects("x") == ["x"]
    assert dist.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]


def test_environment_of_torchrun(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info_from_env()
    assert info == DistInfo(rank=3, world_size=4, local_rank=1)
    assert info.distributed and not info.is_main


def draw() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_repeats_every_generator():
    seed_everything(1142)
    first = draw()
    seed_everything(1142)
    assert draw() == first
    seed_everything(1143)
    assert draw() != first


def test_epoch_seeds_never_collide():
    seeds = {epoch_seed(1142, epoch, rank) for epoch in range(1, 200) for rank in range(8)}
    assert len(seeds) == 199 * 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def collective_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    info = init_distributed()
    result = {
        "info": (info.rank, info.world_size, info.local_rank),
        "main": is_main_process(),
        "gathered": dist.all_gather_objects({"rank": rank}),
        "summed": dist.all_reduce_sum(torch.tensor([rank + 1.0])).item(),
        "backend": torch.distributed.get_backend(),
    }
    dist.barrier()
    dist.cleanup()
    result["after_cleanup"] = dist.get_world_size()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_collectives_on_two_cpu_processes(tmp_path):
    # fork: the workers inherit the imported torch (spawn would import it again, seconds each)
    torch.multiprocessing.start_processes(collective_worker, args=(free_port(), str(tmp_path)), nprocs=2,
                                          join=True, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["info"] == (rank, 2, rank) and result["main"] == (rank == 0)
        assert result["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert result["summed"] == 3.0 and result["backend"] == "gloo"
        assert result["after_cleanup"] == 1


def frozen_rank_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    init_distributed(timeout_minutes=0.05)  # 3 s
    if rank == 1:
        time.sleep(8)  # frozen: misses the barrier
    try:
        dist.barrier()
        message = "passed"
    except dist.RankTimeoutError as error:
        message = str(error)
    Path(out_dir, f"rank{rank}.txt").write_text(message)
    if rank == 0:
        os._exit(0)  # leave without waiting for the frozen rank's group teardown


@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_frozen_rank_is_named_after_the_timeout(tmp_path):
    # Rank 1 sleeps past dist_timeout_minutes: rank 0 stops at the barrier naming it (the
    # process-group timeout used to be a fixed 30 minutes with no word of who froze).
    context = torch.multiprocessing.start_processes(frozen_rank_worker, args=(free_port(), str(tmp_path)),
                                                    nprocs=2, join=False, start_method="fork")
    for process in context.processes:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    message = (tmp_path / "rank0.txt").read_text()
    assert message.startswith("rank 0: waited 0.05 min (dist_timeout_minutes)")
    assert "Ranks 1 failed to pass monitoredBarrier" in message
