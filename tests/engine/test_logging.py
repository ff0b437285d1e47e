"""gaze/engine/logging.py: metrics.csv, progress lines and tqdm, lazy tensorboard."""

from __future__ import annotations

import math
import sys

import numpy as np


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


def test_report_lines_reach_the_current_stderr_after_it_was_swapped(monkeypatch):
    """A handler made earlier (by another run) wrote to that run's stream: reports were lost."""
    import io

    from gaze.engine.logging import report_logger, setup_logging

    setup_logging(None)  # handlers made while the old stderr was in place
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    report_logger().info("test top-1 50.00%")
    assert "test top-1 50.00%" in swapped.getvalue()
