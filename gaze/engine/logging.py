"""Console lines, progress, tensorboard and ``metrics.csv`` (rank 0 only).

* :func:`setup_logging`: the ``gaze`` stdlib logger, to stderr and ``run_dir/train.log``
  on rank 0, silent elsewhere; :func:`log_versions` prints the torch version at start
  (users of the seed repos ask which versions ran, specs/style.md §3.8).
* :class:`Progress`: a tqdm bar when stderr is a terminal, else one log line every
  ``log_interval`` steps with loss parts, lr, img/s and data time (timm / torchvision
  references ``MetricLogger.log_every``: clean SLURM logs).
* :class:`TensorBoard`: a tensorboardX SummaryWriter created on first use, rank 0 only.
* :func:`append_metrics_row`: one ``metrics.csv`` row per epoch (timm ``update_summary``),
  rewritten atomically with stable columns.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch

from gaze.atomic import atomic_path

LOGGER_NAME = "gaze"
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def get_logger() -> logging.Logger:
    """The package logger (configure it once with :func:`setup_logging`)."""
    return logging.getLogger(LOGGER_NAME)


class CurrentStderrHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stderr`` is at each record, not the stream
    of the moment it was made (pytest's capture and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ / setStream assign it: always sys.stderr
        pass


def setup_logging(run_dir: str | os.PathLike | None = None, rank: int = 0) -> logging.Logger:
    """Configure the ``gaze`` logger: INFO to stderr (and run_dir/train.log) on rank 0 only.

    Calling it again replaces the handlers it added before (one line per message).
    """
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_gaze_handler", False):
            logger.removeHandler(handler)
            handler.close()
    logger.propagate = False
    if rank != 0:
        logger.setLevel(logging.ERROR)  # other ranks stay silent unless something breaks
        return logger
    logger.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [CurrentStderrHandler()]
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(run_dir) / "train.log"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        handler._gaze_handler = True
        logger.addHandler(handler)
    return logger


def report_logger() -> logging.Logger:
    """The ``gaze`` logger for a script's report lines: the handlers :func:`setup_logging` set
    (stderr and the run's train.log after a fit), or stderr alone when none is set yet."""
    logger = get_logger()
    if not any(getattr(handler, "_gaze_handler", False) for handler in logger.handlers):
        setup_logging(None)
    return logger


def log_versions(logger: logging.Logger | None = None) -> None:
    """Log Python, torch, CUDA/cuDNN versions and the visible accelerators."""
    logger = logger or get_logger()
    cuda = torch.version.cuda if torch.cuda.is_available() else "none"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    logger.info(
        "python %s, torch %s, cuda %s, cudnn %s, %d GPU(s)",
        platform.python_version(), torch.__version__, cuda,
        torch.backends.cudnn.version() if gpus else "none", gpus,
    )


def stderr_is_interactive() -> bool:
    """True when stderr is a terminal (tqdm bars then; log lines otherwise)."""
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class Progress:
    """Iterate a loader and report running means: tqdm bar or a log line every N steps.

    Usage::

        progress = Progress(loader, header="epoch 3", log_interval=50)
        for batch in progress:
            ...
            progress.update(batch_size, lr=lr, loss=1.2, loss_ce=0.9)

    Args:
        iterable: the loader (its ``len`` gives the step count when it has one).
        header: prefix of every line / the bar's description.
        log_interval: steps between log lines when not interactive.
        enabled: False on ranks other than 0 (iterates silently).
        use_tqdm: None decides from :func:`stderr_is_interactive`.
    """

    def __init__(
        self,
        iterable: Iterable,
        header: str = "",
        log_interval: int = 50,
        enabled: bool = True,
        use_tqdm: bool | None = None,
    ) -> None:
        self.iterable = iterable
        self.header = header
        self.log_interval = max(1, int(log_interval))
        self.enabled = enabled
        self.use_tqdm = enabled and (stderr_is_interactive() if use_tqdm is None else use_tqdm)
        self.total = len(iterable) if hasattr(iterable, "__len__") else None
        self.sums: dict[str, float] = {}
        self.count = 0
        self.images = 0
        self.data_time = 0.0
        self.start = time.perf_counter()
        self.lr = float("nan")
        self._bar = None
        self._step = 0

    def __iter__(self) -> Iterator:
        self.start = time.perf_counter()
        iterable = self.iterable
        if self.use_tqdm:
            from tqdm.auto import tqdm

            iterable = self._bar = tqdm(iterable, desc=self.header, total=self.total, leave=False)
        ticked = time.perf_counter()
        try:
            for item in iterable:
                self.data_time += time.perf_counter() - ticked
                yield item
                ticked = time.perf_counter()
        finally:
            if self._bar is not None:
                self._bar.close()

    def update(self, batch_size: int, lr: float | None = None, **scalars: float) -> None:
        """Add one step's scalars (plain floats, weighted by batch size)."""
        self._step += 1
        self.count += batch_size
        self.images += batch_size
        if lr is not None:
            self.lr = lr
        for name, value in scalars.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * batch_size
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self.summary(short=True), refresh=False)
        elif self._step % self.log_interval == 0 or self._step == self.total:
            get_logger().info("%s %s", self._position(), self.summary())

    def means(self) -> dict[str, float]:
        """Running means of every scalar since the start."""
        return {name: total / max(self.count, 1) for name, total in self.sums.items()}

    def images_per_second(self) -> float:
        """Throughput since the start (this process)."""
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def summary(self, short: bool = False) -> str:
        """``loss 1.234 loss_ce 0.987 lr 1.00e-03 img/s 321.0 data 0.012s [max_mem 1234MB]``."""
        parts = [f"{name} {value:.4f}" for name, value in self.means().items()]
        parts.append(f"lr {self.lr:.2e}")
        if not short:
            parts.append(f"img/s {self.images_per_second():.1f}")
            parts.append(f"data {self.data_time / max(self._step, 1):.3f}s")
            if torch.cuda.is_available():
                parts.append(f"max_mem {torch.cuda.max_memory_allocated() / 2**20:.0f}MB")
        return " ".join(parts)

    def _position(self) -> str:
        """``header [  50/375]``."""
        if self.total is None:
            return f"{self.header} [{self._step}]"
        width = len(str(self.total))
        return f"{self.header} [{self._step:>{width}}/{self.total}]"


class TensorBoard:
    """tensorboardX writer created on first use; does nothing when disabled (ranks > 0)."""

    def __init__(self, log_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self._writer = None

    @property
    def writer(self):
        """The SummaryWriter (created now if needed)."""
        if self._writer is None:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=str(self.log_dir))
        return self._writer

    def add_scalars(self, scalars: dict[str, float], step: int, prefix: str = "") -> None:
        """One scalar per key (``prefix/key``); non-numbers are skipped."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{name}" if prefix else name, float(value), step)

    def add_image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 image."""
        if self.enabled:
            self.writer.add_image(tag, np.asarray(image_hwc), step, dataformats="HWC")

    def flush(self) -> None:
        """Write pending events."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the writer (a later call creates a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def append_metrics_row(csv_path: str | os.PathLike, row: dict) -> pd.DataFrame:
    """Append one row to ``metrics.csv`` and rewrite it atomically.

    Columns keep their first-seen order; a row with new columns extends the header
    (earlier rows get empty cells). A row whose ``epoch`` is already present replaces it.

    Returns:
        the whole table.
    """
    csv_path = Path(csv_path)
    table = read_metrics(csv_path)
    new = pd.DataFrame([row])
    if "epoch" in table.columns and "epoch" in row:
        table = table[table["epoch"] != row["epoch"]]
    table = new if table.empty else pd.concat([table, new], ignore_index=True)
    if "epoch" in table.columns:
        table = table.sort_values("epoch", kind="stable").reset_index(drop=True)
    write_metrics(csv_path, table)
    return table


def read_metrics(csv_path: str | os.PathLike) -> pd.DataFrame:
    """The metrics table, or an empty one when the file does not exist."""
    csv_path = Path(csv_path)
    return pd.read_csv(csv_path) if csv_path.is_file() else pd.DataFrame()


def write_metrics(csv_path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write the table atomically."""
    with atomic_path(csv_path) as temporary:
        table.to_csv(temporary, index=False)


def truncate_metrics(csv_path: str | os.PathLike, last_epoch: int) -> None:
    """Drop rows after ``last_epoch`` (a run killed after its csv row, before its checkpoint)."""
    table = read_metrics(csv_path)
    if "epoch" in table.columns and (table["epoch"] > last_epoch).any():
        write_metrics(csv_path, table[table["epoch"] <= last_epoch])
