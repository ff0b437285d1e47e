"""PIM under DistributedDataParallel: 2 CPU processes (gloo) through the engine, with PIM's dict outputs.

PIM's README lists DDP as not done and its issue #9 shows DataParallel failing to gather the
dict of heads; here each rank trains on its shard, gradients are averaged, and every head's
validation accuracy is gathered over both shards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from gaze.engine.fit import fit
from gaze.models import create_model
from tests.engine.test_dist import free_port
from tests.engine.toys import make_config


class Squares(Dataset):
    """32x32 images whose channel-0 mean encodes one of 3 classes."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (size,), generator=generator)
        self.images = torch.randn(size, 3, 32, 32, generator=generator)
        self.images[:, 0] += self.labels.float()[:, None, None] - 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index], "id": f"s{index:02d}"}


def pim_worker(rank: int, port: int, run_dir: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights: DDP broadcasts rank 0's
    model = create_model("pim", num_classes=3, backbone="resnet18", input_size=32, fpn_size=16,
                         num_selects=[8, 4, 2, 1])
    loaders = {"train": DataLoader(Squares(24, 0), batch_size=4, shuffle=True),
               "val": DataLoader(Squares(11, 1), batch_size=4)}
    summary = fit(model, loaders, make_config(end_epoch=1, init_lr=0.01, write_reports=False,
                                              lr_schedule="pim", warmup_steps=1), run_dir)
    torch.save({"params": {k: v.detach().clone() for k, v in model.named_parameters()}, "summary": summary},
               Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_pim_trains_under_ddp_on_two_cpu_processes(tmp_path):
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # inherit torch._dynamo (see test_fit)
    import gaze.viz.plots  # noqa: F401  (matplotlib, for rank 0's training curves)

    torch.multiprocessing.start_processes(pim_worker, args=(free_port(), str(run_dir), str(out_dir)), nprocs=2,
                                          join=True, start_method="fork")
    ranks = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name, tensor in ranks[0]["params"].items():  # one model: gradients averaged over the ranks
        torch.testing.assert_close(tensor, ranks[1]["params"][name], rtol=0, atol=0, msg=name)
    val = ranks[0]["summary"]["val"]
    assert val["num_samples"] == 11 and ranks[0]["summary"] == ranks[1]["summary"]
    assert {"top1_layer1", "top3_combiner", "top1_highest-5"} <= set(val)  # every head, gathered over both shards
    hits = val["top1_combiner"] * 11 / 100
    assert abs(hits - round(hits)) < 1e-6 and val["top1_combiner"] == pytest.approx(val["top1"])
