"""Tests for gaze/data/cache.py: the LRU of 8-bit maps, the disk cache, folder names."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from gaze.data.cache import AttentionCache, cache_folder_name

# ----------------------------------------------------------------------------- AttentionCache
class _Producer:
    """Picklable map producer that counts its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, key):
        self.calls.append(key)
        return torch.full((4, 6), int(key) / 10.0)


def test_cache_lru_eviction_and_values():
    producer = _Producer()
    cache = AttentionCache(producer, capacity=2)
    assert torch.allclose(cache.get("2"), torch.full((4, 6), 51 / 255))  # 0.2 * 255 = 51 (uint8)
    assert torch.allclose(cache.get("3"), torch.full((4, 6), 0.3), atol=0.5 / 255)
    cache.get("3")  # hit
    cache.get("5")  # evicts "2"
    cache.get("7")  # evicts "3"
    cache.get("5")  # hit
    assert producer.calls == ["2", "3", "5", "7"]
    cache.get("3")
    assert producer.calls == ["2", "3", "5", "7", "3"]
    assert len(cache) == 2 and cache.get_uint8("5").dtype == np.uint8


def test_cache_on_disk_is_reused(tmp_path):
    first = AttentionCache(_Producer(), capacity=0, cache_dir=tmp_path / "maps")
    expected = first.get("4")
    assert (tmp_path / "maps" / "4.png").is_file()
    producer = _Producer()
    second = AttentionCache(producer, capacity=4, cache_dir=tmp_path / "maps")
    assert torch.equal(second.get("4"), expected) and producer.calls == []


def test_cache_pickles():
    cache = AttentionCache(_Producer(), capacity=4)
    cache.get("1")
    clone = pickle.loads(pickle.dumps(cache))
    assert torch.equal(clone.get("1"), cache.get("1"))


def test_cache_folder_name_tracks_params_and_files(tmp_path):
    source = tmp_path / "run1.txt"
    source.write_text("1,10,10,1,1,100\r\n")
    name = cache_folder_name("gaze", [source], sigma=None, min_duration=100)
    assert name == cache_folder_name("gaze", [source], min_duration=100, sigma=None)
    assert name != cache_folder_name("gaze", [source], sigma=5.0, min_duration=100)
    stamp = source.stat().st_mtime_ns + 10**9
    os.utime(source, ns=(stamp, stamp))
    assert name != cache_folder_name("gaze", [source], sigma=None, min_duration=100)
