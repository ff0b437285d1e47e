"""The attention-map cache: 8-bit maps in an LRU, optionally PNG files shared across runs."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from gaze.attention.heatmap import heatmap_to_uint8, load_heatmap, save_heatmap
from gaze.safe_paths import check_plain_name, path_inside


class AttentionCache:
    """LRU cache of 8-bit attention maps, optionally backed by PNG files on disk.

    Maps are kept as (H, W) uint8 (a quarter of float32, and what the released CUB-GHA
    JPEGs hold), so the in-memory copy costs H*W bytes per image (187 kB for a 500x375
    CUB image). Each DataLoader worker process has its own in-memory cache; the disk cache
    (lossless PNG, written atomically) is shared by all of them and across runs.

    Args:
        produce: ``key -> (H, W)`` float map in [0, 1] (tensor or array), called on a miss.
        capacity: maps kept in memory (least recently used dropped first); 0 disables.
        cache_dir: folder for ``<key>.png`` files, or None. Its name should encode how the
            maps were made (see :func:`cache_folder_name`); stale files are not detected.
    """

    def __init__(
        self,
        produce: Callable[[str], torch.Tensor | np.ndarray],
        capacity: int = 1024,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.produce = produce
        self.capacity = int(capacity)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._maps)

    def get_uint8(self, key: str) -> np.ndarray:
        """The (H, W) uint8 map of ``key``: from memory, else disk, else ``produce``."""
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                self.hits += 1
                return self._maps[key]
        self.misses += 1
        grey = self._from_disk(key)
        if grey is None:
            grey = heatmap_to_uint8(self.produce(key))
            if self.cache_dir is not None:
                save_heatmap(self._cache_file(key), grey.astype(np.float32) / 255.0)
        if self.capacity > 0:
            with self._lock:
                self._maps[key] = grey
                while len(self._maps) > self.capacity:
                    self._maps.popitem(last=False)
        return grey

    def get(self, key: str) -> torch.Tensor:
        """The (H, W) float32 map of ``key`` in [0, 1] (multiples of 1/255)."""
        return torch.from_numpy(self.get_uint8(key).astype(np.float32) / 255.0)

    def _cache_file(self, key: str) -> Path:
        """``<cache_dir>/<key>.png``, the key checked to be a plain name (it comes from a data file)."""
        return path_inside(self.cache_dir, f"{check_plain_name(key, f'attention cache {self.cache_dir}')}.png")

    def _from_disk(self, key: str) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        path = self._cache_file(key)
        if not path.is_file():
            return None
        return heatmap_to_uint8(load_heatmap(path))

    def __getstate__(self) -> dict:
        """Pickle (DataLoader workers) without the lock."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def cache_folder_name(prefix: str, files: Sequence[str | os.PathLike], **params: object) -> str:
    """A folder name for cached maps: ``prefix`` + a short hash of the params and source files.

    The hash covers each file's absolute path, size and modification time, so editing a
    fixation file or changing sigma/min_duration gives a new folder instead of stale maps.
    """
    digest = hashlib.sha256()
    for key in sorted(params):
        digest.update(f"{key}={params[key]!r};".encode())
    for file in sorted(Path(f).resolve() for f in files):
        stat = file.stat()
        digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{prefix}-{digest.hexdigest()[:12]}"
