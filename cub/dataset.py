"""CUB-200-2011 with human attention (CUB-GHA): items ``{'image', 'label', 'gaze', 'id'}``
(+ GRADIA's ``mask``, ``weight_ce``, ``weight_att`` with drawn masks or ratings)."""

from __future__ import annotations

import copy
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gaze.attention.fixations import (
    filter_by_duration,
    list_fixation_files,
    merge_by_image,
    read_fixations,
)
from gaze.attention.heatmap import load_heatmap, render_heatmap
from gaze.data.cache import AttentionCache, cache_folder_name
from gaze.data.human_attention import HumanAttention
from gaze.data.images import IdRow, TableFormatError, load_rgb_image, read_id_table
from gaze.data.splits import stratified_split
from gaze.data.transforms import as_attention_map, build_transforms
from gaze.safe_paths import check_relative_path

SPLITS = ("train", "val", "test", "trainval")
#: Fixations shorter than this are dropped before rendering (CUB-GHA README: 100 ms).
DEFAULT_MIN_DURATION_MS = 100.0
#: Relative aspect-ratio difference above which a gaze map does not belong to the image.
ASPECT_TOLERANCE = 0.02
#: Keys of the ``gaze`` option and their defaults (one of 'dir' / 'fixations' is required).
GAZE_DEFAULTS = {
    "dir": None,  # folder of <id>.jpg maps (published layout <root>/<GHA_dir>/<id>.jpg)
    "fixations": None,  # run file(s) or folder of them (data_5runs image layout, or Fixation.txt)
    "sigma": None,  # Gaussian sd in image pixels; None = gaze.attention.heatmap.screen_fit_sigma
    "min_duration": DEFAULT_MIN_DURATION_MS,
    "weighted": True,  # weight each Gaussian by its duration
    "suffix": ".jpg",  # file suffix of the maps in 'dir'
    "missing": "error",  # or 'uniform': an image without gaze gets a map of ones
    "cache_size": 1024,  # maps kept in memory per process (uint8)
    "cache_dir": None,  # folder for rendered maps as PNG (fixations mode), shared across runs
}


CUBFormatError = TableFormatError  # a malformed or inconsistent CUB metadata file (file:line)


def _int_field(
    path: Path, row: IdRow, index: int, allowed: Sequence[int] | None = None, minimum: int | None = None
) -> int:
    text = row.fields[index]
    try:
        value = int(text)
    except ValueError:
        raise CUBFormatError(f"{path}:{row.line}: {text!r} is not an integer") from None
    if allowed is not None and value not in allowed:
        raise CUBFormatError(f"{path}:{row.line}: {value} must be one of {list(allowed)}")
    if minimum is not None and value < minimum:
        raise CUBFormatError(f"{path}:{row.line}: {value} must be >= {minimum}")
    return value


def _check_same_ids(reference: Path, ids: set[int], path: Path, other: set[int]) -> None:
    missing, extra = sorted(ids - other), sorted(other - ids)
    if missing or extra:
        raise CUBFormatError(
            f"{path}: ids differ from {reference.name}: {len(missing)} missing (e.g. {missing[:5]}), "
            f"{len(extra)} not in {reference.name} (e.g. {extra[:5]})"
        )


def published_masked_picture(picture: Image.Image, attention: torch.Tensor) -> Image.Image:
    """The published KFN gaze-branch picture: ToPILImage(ToTensor(image) * ToTensor(map)).

    Float32 product of the image / 255 and the (H, W) map in [0, 1], then ``mul(255).byte()``
    (truncation), as torchvision's ToPILImage does (cub_pim §1.7).
    """
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / np.float32(255))  # (H, W, 3)
    attention = as_attention_map(attention, pixels.shape[:2]).as_subclass(torch.Tensor)  # (1, H, W) at the image size
    product = pixels * attention[0, ..., None]
    return Image.fromarray(product.mul(255).to(torch.uint8).numpy())


def image_files(root: str | os.PathLike) -> dict[str, str]:
    """``{id: '<class_folder>/<file>.jpg'}`` of every image in ``<root>/images.txt``."""
    rows = read_id_table(Path(root) / "images.txt", 2, last_is_rest=True)
    return {str(image_id): rows[image_id].fields[0].strip() for image_id in sorted(rows)}


def _resolve(root: Path, path: str | os.PathLike) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


class CUBDataset(Dataset):
    """CUB-200-2011 (Wah et al. 2011) with optional human attention maps (CUB-GHA).

    The official layout, as unpacked from ``CUB_200_2011.tgz`` (``bounding_boxes.txt``,
    ``classes.txt`` optional), plus the gaze data in either of its forms::

        CUB_200_2011/
        ├── images.txt               "<id> <class_folder>/<file>.jpg"     11,788 lines
        ├── image_class_labels.txt   "<id> <label>", labels 1..200 (0-based in items)
        ├── train_test_split.txt     "<id> <1 train | 0 test>"
        ├── classes.txt              "<label> 001.Black_footed_Albatross"
        ├── bounding_boxes.txt       "<id> <x> <y> <w> <h>"
        ├── images/
        │   ├── 001.Black_footed_Albatross/
        │   │   ├── Black_Footed_Albatross_0001_796111.jpg
        │   │   └── ...
        │   └── ...
        ├── CUB_GHA/<id>.jpg         gaze={'dir': 'CUB_GHA'}: 8-bit maps (cub_pim.md §1.2)
        └── data_5runs/              gaze={'fixations': 'data_5runs'}: rendered on the fly
            └── Fixation_run{1..5}.txt

    Splits: ``trainval`` = the 5,994 official training images, ``test`` = the 5,794 test
    images; ``val`` is carved from the training images with a seeded, stratified split
    (:func:`gaze.data.stratified_split`; ``val_fraction=0.1`` gives 600 val and 5,394
    ``train`` images). Model selection uses ``val``, never ``test``.

    Example::

        >>> train = CUBDataset('data/CUB_200_2011', split='trainval')  # doctest: +SKIP
        >>> test = CUBDataset('data/CUB_200_2011', split='test')  # doctest: +SKIP
        >>> len(train), len(test), train.num_classes  # doctest: +SKIP
        (5994, 5794, 200)
        >>> gha = CUBDataset('data/CUB_200_2011', 'val', gaze={'fixations': 'data_5runs'})  # doctest: +SKIP
        >>> len(gha), gha[0]['image'].shape, gha[0]['gaze'].shape  # doctest: +SKIP
        (600, torch.Size([3, 448, 448]), torch.Size([1, 448, 448]))

    Items are dicts (DESIGN.md §2): ``image`` (3, S, S) normalised float, ``label`` int64
    scalar (0-based), ``gaze`` (1, S, S) float in [0, 1] when ``gaze`` is given, ``id`` the
    ``images.txt`` id as a string. Per item: one JPEG decode, the joint transform and a
    cached attention map.

    Args:
        root: the ``CUB_200_2011`` folder.
        split: 'train', 'val', 'test' or 'trainval'.
        transform: ``(PIL image, gaze (H, W) or None) -> (image, gaze or None)``, e.g.
            :func:`gaze.data.transforms.build_transforms`; None = the published 448 recipe
            (random for train/trainval, centre crop otherwise).
        gaze: None (no attention), or a dict with keys of ``GAZE_DEFAULTS``:
            ``{'dir': 'CUB_GHA'}`` loads ``<dir>/<id><suffix>`` (relative to ``root`` or
            absolute); ``{'fixations': path, 'sigma': None, 'min_duration': 100}`` renders
            the map of all runs of the image (merged, fixations under ``min_duration`` ms
            dropped) with :func:`gaze.attention.heatmap.render_heatmap`, cached as uint8 in an LRU of
            ``cache_size`` maps and, if ``cache_dir`` is set, as PNG files.
            ``missing='uniform'`` gives images without gaze a map of ones instead of an error.
        val_fraction: fraction of the training images in 'val' (0 = no val split).
        seed: seed of the val split.
        num_classes: expected number of classes (checked against ``classes.txt``, else the
            largest label); None skips the check.
        check_files: check at construction that every image of the split exists.
        masked_image: also return ``masked_image``, the published KFN input of the gaze
            branch: ToTensor(image) x ToTensor(map) as 8-bit (truncated) through its own
            ``transform`` call, so a random crop and flip independent of the image's
            (cub_pim §1.7: a defect of the published code, reproduced for its protocol).
        human: drawn masks and ratings keyed by id (GRADIA): items also carry ``mask``,
            ``weight_ce`` and ``weight_att`` (:class:`gaze.data.human_attention.HumanAttention`;
            an image without a drawn mask gets its gaze map thresholded).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        gaze: dict[str, Any] | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        num_classes: int | None = None,
        check_files: bool = True,
        masked_image: bool = False,
        human: HumanAttention | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.transform = transform or build_transforms(train=split in ("train", "trainval"), input_size=448)
        all_ids, paths, labels, is_train, lines = self._read_metadata()
        self.class_names = self._read_class_names(labels)
        self.num_classes = len(self.class_names)
        if num_classes is not None and num_classes != self.num_classes:
            raise CUBFormatError(
                f"{self.root}: num_classes={num_classes} but the metadata has {self.num_classes} classes "
                f"({'classes.txt' if (self.root / 'classes.txt').is_file() else 'largest label'})"
            )
        chosen = self._split_indices(labels, is_train, val_fraction, seed)
        self.ids = [str(all_ids[i]) for i in chosen]
        self.paths = [self.root / "images" / paths[i] for i in chosen]
        self.labels = labels[chosen]
        self.bounding_boxes = self._read_boxes(all_ids, chosen)
        if check_files:
            self._check_images_exist([lines[i] for i in chosen])
        self.gaze = self._setup_gaze(gaze, {str(i) for i in all_ids}) if gaze is not None else None
        if masked_image and self.gaze is None:
            raise ValueError("masked_image=True needs the gaze maps (pass gaze=...)")
        self.masked_image = masked_image
        self.human = human

    # ----------------------------------------------------------------- metadata
    def _read_metadata(self):
        """Parse images.txt, image_class_labels.txt and train_test_split.txt; check ids agree."""
        images_file = self.root / "images.txt"
        labels_file = self.root / "image_class_labels.txt"
        split_file = self.root / "train_test_split.txt"
        images = read_id_table(images_file, 2, last_is_rest=True)
        label_rows = read_id_table(labels_file, 2)
        split_rows = read_id_table(split_file, 2)
        ids = set(images)
        _check_same_ids(images_file, ids, labels_file, set(label_rows))
        _check_same_ids(images_file, ids, split_file, set(split_rows))
        order = sorted(ids)
        paths = [str(check_relative_path(images[i].fields[0].strip(), f"{images_file}:{images[i].line}"))
                 for i in order]
        labels = np.array(
            [_int_field(labels_file, label_rows[i], 0, minimum=1) - 1 for i in order], dtype=np.int64
        )
        is_train = np.array(
            [_int_field(split_file, split_rows[i], 0, allowed=(0, 1)) for i in order], dtype=bool
        )
        lines = [images[i].line for i in order]
        return np.array(order, dtype=np.int64), paths, labels, is_train, lines

    def _read_class_names(self, labels: np.ndarray) -> list[str]:
        """Names from classes.txt ("1 001.Black_footed_Albatross" -> "Black_footed_Albatross")."""
        path = self.root / "classes.txt"
        largest = int(labels.max()) + 1 if len(labels) else 0
        if not path.is_file():
            return [f"class_{k + 1:03d}" for k in range(largest)]
        rows = read_id_table(path, 2, last_is_rest=True)
        if sorted(rows) != list(range(1, len(rows) + 1)):
            raise CUBFormatError(f"{path}: class ids must be 1..{len(rows)} without gaps")
        if largest > len(rows):
            raise CUBFormatError(
                f"{self.root / 'image_class_labels.txt'}: label {largest} but {path.name} lists {len(rows)} classes"
            )
        return [rows[k].fields[0].strip().split(".", 1)[-1] for k in sorted(rows)]

    def _split_indices(
        self, labels: np.ndarray, is_train: np.ndarray, val_fraction: float, seed: int
    ) -> np.ndarray:
        train_pool = np.flatnonzero(is_train)
        if self.split == "test":
            return np.flatnonzero(~is_train)
        if self.split == "trainval":
            return train_pool
        if self.split == "val" and val_fraction <= 0:
            raise ValueError("split='val' needs val_fraction > 0")
        train_part, val_part = stratified_split(labels[train_pool], val_fraction, seed)
        return train_pool[val_part if self.split == "val" else train_part]

    def _read_boxes(self, all_ids: np.ndarray, chosen: np.ndarray) -> np.ndarray | None:
        """(N, 4) float32 boxes x, y, w, h of the split's images, or None without bounding_boxes.txt."""
        path = self.root / "bounding_boxes.txt"
        if not path.is_file():
            return None
        rows = read_id_table(path, 5)
        boxes = np.zeros((len(chosen), 4), dtype=np.float32)
        for k, image_id in enumerate(all_ids[chosen]):
            row = rows.get(int(image_id))
            if row is None:
                raise CUBFormatError(f"{path}: no box for image id {image_id}")
            try:
                boxes[k] = [float(v) for v in row.fields]
            except ValueError:
                raise CUBFormatError(f"{path}:{row.line}: box values must be numbers: {row.fields}") from None
        return boxes

    def _check_images_exist(self, lines: list[int]) -> None:
        missing = [(path, line) for path, line in zip(self.paths, lines) if not path.is_file()]
        if missing:
            path, line = missing[0]
            raise FileNotFoundError(
                f"{path}: image listed at {self.root / 'images.txt'}:{line} not found "
                f"({len(missing)} of {len(self.paths)} {self.split} images missing)"
            )

    # ----------------------------------------------------------------- gaze
    def _setup_gaze(self, options: dict[str, Any], known_ids: set[str]) -> dict[str, Any]:
        """Validate the gaze option, index the available maps/fixations, report id mismatches."""
        unknown = set(options) - set(GAZE_DEFAULTS)
        if unknown:
            raise KeyError(f"unknown gaze option(s) {sorted(unknown)}; allowed: {sorted(GAZE_DEFAULTS)}")
        config = {**GAZE_DEFAULTS, **options}
        if (config["dir"] is None) == (config["fixations"] is None):
            raise ValueError("gaze needs exactly one of 'dir' (folder of maps) or 'fixations' (run files)")
        if config["missing"] not in ("error", "uniform"):
            raise ValueError(f"gaze 'missing' must be 'error' or 'uniform', got {config['missing']!r}")
        if config["dir"] is not None:
            source, available, produce = self._index_map_dir(config)
            cache_dir = None
        else:
            source, available, produce, cache_dir = self._index_fixations(config)
        self._report_gaze_ids(source, available, known_ids, config["missing"])
        config["available"] = available
        config["cache"] = AttentionCache(produce, capacity=config["cache_size"], cache_dir=cache_dir)
        return config

    def _index_map_dir(self, config: dict[str, Any]):
        folder = _resolve(self.root, config["dir"])
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: gaze map folder not found (gaze['dir'])")
        suffix = config["suffix"]
        available = {p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix)}
        self._map_folder = folder
        return folder, available, self._load_map_file

    def _load_map_file(self, image_id: str) -> torch.Tensor:
        """(H, W) map of ``<dir>/<id><suffix>`` in [0, 1] (gaze.attention.heatmap.load_heatmap)."""
        return load_heatmap(self._map_folder / f"{image_id}{self.gaze['suffix']}")

    def _index_fixations(self, config: dict[str, Any]):
        source = _resolve(self.root, config["fixations"])
        files = list_fixation_files(source)
        self._records = merge_by_image(read_fixations(files).records)
        cache_dir = None
        if config["cache_dir"] is not None:
            params = {k: config[k] for k in ("sigma", "min_duration", "weighted")}
            cache_dir = _resolve(self.root, config["cache_dir"]) / cache_folder_name(
                "cub-gaze", files, **params
            )
        return source, set(self._records), self._render_fixations, cache_dir

    def _render_fixations(self, image_id: str) -> torch.Tensor:
        """(H, W) map of all runs of the image at its recorded size (gaze.attention.heatmap.render_heatmap)."""
        record = filter_by_duration(self._records[image_id], self.gaze["min_duration"])
        return render_heatmap(record, sigma=self.gaze["sigma"], weighted=self.gaze["weighted"])

    def _report_gaze_ids(
        self, source: Path, available: set[str], known_ids: set[str], missing_policy: str
    ) -> None:
        """Warn with counts of mismatched ids; error if an image of this split has no gaze."""
        no_gaze = known_ids - available
        unknown = available - known_ids
        self.gaze_report = {
            "images_without_gaze": len(no_gaze),
            "gaze_ids_not_in_images_txt": len(unknown),
        }
        if no_gaze or unknown:
            warnings.warn(
                f"{source}: {len(no_gaze)} of {len(known_ids)} images in images.txt have no gaze; "
                f"{len(unknown)} gaze ids are not in images.txt (e.g. {sorted(unknown)[:5]})",
                stacklevel=3,
            )
        used_missing = [i for i in self.ids if i not in available]
        if used_missing and missing_policy == "error":
            raise FileNotFoundError(
                f"{source}: no gaze for {len(used_missing)} of {len(self.ids)} {self.split} images "
                f"(e.g. ids {used_missing[:5]}, first {self.paths[self.ids.index(used_missing[0])]}); "
                "to use a map of ones for them pass --gaze_missing=uniform (cub/train.py, cub/evaluate.py) "
                "or gaze={..., 'missing': 'uniform'} (CUBDataset)"
            )

    def _attention(self, index: int, image_size: tuple[int, int]) -> torch.Tensor:
        """(H, W) map of item ``index`` in [0, 1]; checks it belongs to an image of this shape."""
        image_id = self.ids[index]
        width, height = image_size
        if image_id not in self.gaze["available"]:
            return torch.ones(height, width)  # missing='uniform' (checked in _report_gaze_ids)
        attention = self.gaze["cache"].get(image_id)
        map_h, map_w = attention.shape
        if abs(math.log((map_w / map_h) / (width / height))) > ASPECT_TOLERANCE:
            raise ValueError(
                f"{self.paths[index]}: image is {width}x{height} but its gaze map (id {image_id}) is "
                f"{map_w}x{map_h}; the gaze data do not belong to this image"
            )
        return attention

    # ----------------------------------------------------------------- dataset
    @property
    def classes(self) -> list[str]:
        """Class names (torchvision's ``ImageFolder.classes`` name, read by the engine's reports)."""
        return self.class_names

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: Collection[str]) -> CUBDataset:
        """The same dataset restricted to the images with these ids (order kept)."""
        keep = [k for k, image_id in enumerate(self.ids) if image_id in ids]
        part = copy.copy(self)
        part.ids = [self.ids[k] for k in keep]
        part.paths = [self.paths[k] for k in keep]
        part.labels = self.labels[keep]
        part.bounding_boxes = None if self.bounding_boxes is None else self.bounding_boxes[keep]
        return part

    def __getitem__(self, index: int) -> dict[str, Any]:
        picture = load_rgb_image(self.paths[index])
        attention = self._attention(index, picture.size) if self.gaze is not None else None
        item = {"label": torch.tensor(int(self.labels[index]), dtype=torch.long), "id": self.ids[index]}
        if self.human is not None:
            item.update(self.human.transform(self.transform, picture, attention, self.ids[index]))
        else:
            item["image"], gaze = self.transform(picture, attention)
            if gaze is not None:
                item["gaze"] = gaze
        if self.masked_image:
            item["masked_image"] = self.transform(published_masked_picture(picture, attention))[0]
        return item

    def __repr__(self) -> str:
        mode = "none" if self.gaze is None else ("dir" if self.gaze["dir"] is not None else "fixations")
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, images={len(self)}, "
            f"classes={self.num_classes}, gaze={mode})"
        )
