"""Shared dataset pieces: image loading to RGB, stratified splits, an attention-map cache.

Nothing here knows a dataset's paths (DESIGN.md §1); ``cub/`` and ``cxr/`` build on it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from gaze.heatmap import heatmap_to_uint8, load_heatmap, save_heatmap
from gaze.safe_paths import check_plain_name, path_inside

#: PIL modes holding 16-bit grey values (scaled by 255 / 65535 to 8 bits).
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
#: Bytes at the end of a JPEG searched for the end-of-image marker (trailing junk allowed).
_JPEG_TAIL_BYTES = 4096


class TableFormatError(ValueError):
    """A malformed or inconsistent metadata table; the message names file:line."""


@dataclass
class IdRow:
    """One line of an id table: its 1-based line number and the fields after the id."""

    line: int
    fields: list[str]


def read_id_table(path: str | os.PathLike, num_fields: int, last_is_rest: bool = False) -> dict[int, IdRow]:
    """Read a whitespace-separated ``<int id> ...`` table (CUB ``images.txt`` style) into {id: row}.

    Blank lines are skipped; a wrong field count, a non-integer or repeated id is a
    :class:`TableFormatError` naming file:line.

    Args:
        path: the text file (a missing file is a FileNotFoundError naming it).
        num_fields: fields per line, id included.
        last_is_rest: the last field takes the rest of the line (paths with spaces).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata file not found")
    rows: dict[int, IdRow] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=num_fields - 1) if last_is_rest else line.split()
        if len(fields) != num_fields:
            raise TableFormatError(f"{path}:{line_no}: expected {num_fields} fields, got {len(fields)}: {line!r}")
        try:
            image_id = int(fields[0])
        except ValueError:
            raise TableFormatError(f"{path}:{line_no}: id {fields[0]!r} is not an integer") from None
        if image_id in rows:
            raise TableFormatError(f"{path}:{line_no}: id {image_id} already on line {rows[image_id].line}")
        rows[image_id] = IdRow(line_no, fields[1:])
    return rows


class ImageLoadError(OSError):
    """An image file that cannot be decoded completely; the message names the file."""


def _check_jpeg_complete(path: Path) -> None:
    """Raise if a JPEG has no end-of-image marker near its end (truncated download)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _JPEG_TAIL_BYTES))
        tail = handle.read()
    if b"\xff\xd9" not in tail:
        raise ImageLoadError(f"{path}: truncated JPEG (no end-of-image marker)")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; 16/32-bit grey is rescaled to 8 bits, alpha is dropped."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode in _SIXTEEN_BIT_MODES:
            scale = 255.0 / 65535.0
        else:  # 'I' (e.g. 16-bit PNG on some PIL versions) and 'F': scale only if out of 8-bit range
            top = float(values.max()) if values.size else 0.0
            scale = 255.0 / (65535.0 if top <= 65535.0 else top) if top > 255.0 else 1.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids PIL's palette-transparency warning
    return image.convert("RGB")  # L, LA, 1, P, PA, RGBA, CMYK, YCbCr, ...


def load_rgb_image(path: str | os.PathLike, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file completely and return it as an 8-bit PIL RGB image.

    Grey ('L', 'LA', '1'), palette ('P', 'PA'), 16-bit grey ('I;16', 'I'), float ('F'),
    RGBA and CMYK images are converted to RGB (alpha dropped; CUB has about a dozen grey
    and CMYK JPEGs). EXIF orientation is **not** applied: gaze coordinates refer to the
    stored pixels, as in the published loaders.

    Truncated files are an error, never silently padded: the pixels are decoded here with
    PIL's default ``LOAD_TRUNCATED_IMAGES = False``; if some other library switched that
    global on, JPEGs are also checked for their end-of-image marker.

    Args:
        path: image file.
        draft_size: (width, height): let the JPEG decoder scale by 1/2, 1/4 or 1/8 in the
            DCT domain while the result stays at least this large (PIL ``draft``); a full
            3056x2544 radiograph then decodes several times faster for a 224 px model.
            Other formats ignore it.

    Returns:
        A loaded (file closed) RGB image.

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        ImageLoadError: the file is not an image, is truncated or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft(image.mode, tuple(int(v) for v in draft_size))
            image.load()
            if ImageFile.LOAD_TRUNCATED_IMAGES and image.format == "JPEG":
                _check_jpeg_complete(path)
            return _to_rgb(image)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not a readable image file") from None
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError) as error:  # PIL: "image file is truncated", broken data
        raise ImageLoadError(f"{path}: cannot decode image ({error})") from error


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation parts with the same class proportions.

    Uses ``sklearn.model_selection.train_test_split(stratify=labels)`` with
    ``random_state=seed``, so the split is reproducible. A class with a single sample
    cannot be stratified: its sample stays in the training part (a warning names the
    classes). A validation part too small to hold one sample of every remaining class is
    an error (raise ``val_fraction``); no silent unstratified fallback.

    Args:
        labels: (N,) class label of every sample.
        val_fraction: fraction of the samples in the validation part, in [0, 1). sklearn
            rounds the validation count up (``ceil(val_fraction * n)``).
        seed: random seed of the split.

    Returns:
        (train_idx, val_idx): sorted int64 index arrays, disjoint, covering 0..N-1.
    """
    labels = np.asarray(labels)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    indices = np.arange(len(labels), dtype=np.int64)
    if val_fraction == 0.0 or len(labels) == 0:
        return indices, np.zeros(0, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    singles = classes[counts < 2]
    if len(singles):
        warnings.warn(
            f"stratified_split: {len(singles)} class(es) with a single sample kept in the training "
            f"part: {singles[:10].tolist()}{' ...' if len(singles) > 10 else ''}",
            stacklevel=2,
        )
    splittable = ~np.isin(labels, singles)
    pool = indices[splittable]
    num_val = int(np.ceil(val_fraction * len(pool)))
    num_classes = len(classes) - len(singles)
    if num_val < num_classes or len(pool) - num_val < num_classes:
        raise ValueError(
            f"stratified_split: val_fraction={val_fraction} gives {num_val} validation and "
            f"{len(pool) - num_val} training samples for {num_classes} classes; each part needs "
            "at least one sample per class (change val_fraction)"
        )
    from sklearn.model_selection import train_test_split

    train_pool, val_idx = train_test_split(
        pool, test_size=num_val, stratify=labels[splittable], random_state=seed
    )
    train_idx = np.concatenate([train_pool, indices[~splittable]])
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


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
