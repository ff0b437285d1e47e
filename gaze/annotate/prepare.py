"""Prepare the items of an annotation study from trained runs: images, Grad-CAM overlays, gaze maps.

A *method* is a trained model to explain, named by a folder (or a checkpoint file): a run
folder with ``ckpt_best.pt``; a phased run (GRADIA) is explained by its FIRST phase, the
model people judge before phase 2 (name ``<run>/phase2`` to explain another); a
cross-validation run (CXR) by fold ``fold``'s. The experiment tree (cub, cxr, folder) is
recognised from the keys of the checkpoint's saved config, and the tree's
``experiment.annotation_source`` gives the split's images at their own resolution (with
their gaze maps) and the untrained network.

Each model sees the whole image squash-resized to its input size (the CXR and ImageFolder
evaluation protocol; CUB's evaluation crops the centre, so there the Accurate/Inaccurate of
an item comes from this whole-image view, the one its overlay shows). Files, computed once
and reused when the study is started again (``<files>/``, beside the database):

* ``images/<position>.jpg``: the image, its longer side at most ``display_side`` px;
* ``gaze/<position>.png``: the gaze map (8-bit) at that size, where the dataset has one;
* ``cams/<method index>/<position>.png``: the predicted class's Grad-CAM (8-bit, min-max);
* ``overlays/<method index>/<position>.jpg`` (and ``overlays/gaze/``): jet heat over the image.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from tqdm import tqdm

from gaze.annotate.store import Item, Store
from gaze.config import load_config
from gaze.data.transforms import denormalize
from gaze.engine.importers import import_checkpoint, load_model_checkpoint
from gaze.models.cam import grad_cam

#: The experiment trees whose runs can be annotated (each has ``experiment.annotation_source``).
TREES = ("cub", "cxr", "folder")
MAX_METHODS = 4
DISPLAY_SIDE = 512
OVERLAY_ALPHA = 0.45
BATCH = 16


def explained_checkpoint(folder: str | os.PathLike, fold: int = 0) -> Path:
    """The checkpoint a method folder stands for (see the module docstring)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    if (folder / "ckpt_best.pt").is_file():
        return folder / "ckpt_best.pt"
    if (folder / f"fold{fold}").is_dir():
        return explained_checkpoint(folder / f"fold{fold}", fold)
    phases = sorted(path for path in folder.glob("phase*") if path.is_dir())
    if phases:
        return explained_checkpoint(phases[0], fold)
    raise FileNotFoundError(f"{folder}: no ckpt_best.pt (nor phase*/ or fold{fold}/ holding one); train the run first")


def tree_keys(tree: str) -> set[str]:
    """The keys of ``<tree>/config.py``."""
    spec = importlib.util.find_spec(tree)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"experiment tree {tree!r} is not installed (pip install -e .)")
    return set(load_config(Path(next(iter(spec.submodule_search_locations))) / "config.py", []))


def tree_of(config: Mapping[str, Any], origin: str) -> str:
    """The tree whose config keys the saved ``config`` holds (each has keys the others lack)."""
    matches = [tree for tree in TREES if tree_keys(tree) <= set(config)]
    if len(matches) != 1:
        raise ValueError(f"{origin}: its saved config matches {matches or 'none'} of the trees {', '.join(TREES)}")
    return matches[0]


def load_method(checkpoint_path: Path, split: str, fold: int) -> tuple[Any, torch.nn.Module, dict]:
    """(the split's dataset, the trained model in eval mode, its config) of one checkpoint."""
    checkpoint = import_checkpoint(checkpoint_path)
    config = checkpoint.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{checkpoint_path}: no saved config (a released file? evaluate it with its tree instead)")
    tree = tree_of(config, str(checkpoint_path))
    dataset, model = importlib.import_module(f"{tree}.experiment").annotation_source(config, split, fold)
    load_model_checkpoint(model, checkpoint)
    return dataset, model.eval(), config


def input_hw(config: Mapping[str, Any]) -> tuple[int, int]:
    """The model's (H, W) input: ``input_hw`` (CXR) or the square ``input_size``."""
    if config.get("input_hw"):
        height, width = config["input_hw"]
        return int(height), int(width)
    return int(config["input_size"]), int(config["input_size"])


def display_size(width: int, height: int, side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(W, H) with the longer side at most ``side``."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def heat_overlay(picture: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """(H, W, 3) uint8: the jet colour map of ``heat`` in [0, 1] blended over the photo."""
    coloured = colormaps["jet"](heat)[..., :3] * 255
    return ((1 - alpha) * picture + alpha * coloured).round().clip(0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray, **options: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(temporary, format="JPEG" if path.suffix == ".jpg" else "PNG", **options)
    os.replace(temporary, path)
    return path.as_posix()


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", antialias=True, align_corners=False)


def prepare(store: Store, files: str | os.PathLike, methods: Sequence[str | os.PathLike], split: str = "val",
            fold: int = 0, display_side: int = DISPLAY_SIDE, limit: int | None = None) -> int:
    """Fill ``store`` with the split's items and each method's prediction and overlays.

    Args:
        store: the study's database.
        files: folder for the image files (created).
        methods: up to 4 method folders (or checkpoints); all must be of the same dataset.
        split: the split whose images are rated ('val' feeds GRADIA's phase 2).
        fold: the cross-validation fold of CXR runs.
        display_side: longer side of the images shown.
        limit: only the first ``limit`` images (None: all).

    Returns:
        The number of items.
    """
    if not 1 <= len(methods) <= MAX_METHODS:
        raise ValueError(f"{len(methods)} methods: a study explains 1 to {MAX_METHODS} models (one overlay each)")
    files = Path(files)
    checkpoints = [explained_checkpoint(method, fold) for method in methods]
    names = [Path(method).as_posix().rstrip("/") for method in methods]
    loaded = [load_method(path, split, fold) for path in checkpoints]
    dataset = loaded[0][0]
    ids = list(dataset.ids)[:limit]
    for (other, _, _), path in zip(loaded[1:], checkpoints[1:]):
        if list(other.ids)[:limit] != ids:
            raise ValueError(f"{path}: its {split} images differ from those of {checkpoints[0]}: explain models of one dataset")
    store.set_meta({"split": split, "run": names[0], "fold": str(fold)})
    store.add_methods([(name, str(path)) for name, path in zip(names, checkpoints)])
    mean, std = dataset.transform.mean, dataset.transform.std
    items, predictions = [], []
    progress = tqdm(range(0, len(ids), BATCH), desc=f"preparing {len(ids)} {split} images", unit="batch")
    for start in progress:
        batch = [dataset[index] for index in range(start, min(start + BATCH, len(ids)))]
        shown = [display_size(item["image"].shape[-1], item["image"].shape[-2], display_side) for item in batch]
        pictures = []
        for offset, (item, (width, height)) in enumerate(zip(batch, shown)):
            position = start + offset
            picture = denormalize(_resize(item["image"][None], (height, width)), mean, std)[0]
            picture = (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            pictures.append(picture)
            image = _save(files / "images" / f"{position}.jpg", picture, quality=92)
            gaze = None
            if item.get("gaze") is not None:
                heat = _resize(item["gaze"][None], (height, width))[0, 0]
                heat = (heat / heat.max().clamp_min(1e-12)).numpy()
                gaze = _save(files / "gaze" / f"{position}.png", (heat * 255).round().astype(np.uint8))
                _save(files / "overlays" / "gaze" / f"{position}.jpg", heat_overlay(picture, heat), quality=92)
            items.append(Item(str(item["id"]), position, int(item["label"]), str(Path(image).relative_to(files)),
                              None if gaze is None else str(Path(gaze).relative_to(files)),
                              int(item["image"].shape[-1]), int(item["image"].shape[-2])))
        for index, (_, model, config) in enumerate(loaded):
            predictions += _explain(model, config, batch, shown, pictures, files, index, start)
    store.add_items(items, [(items[p].item, names[m], predicted, overlay) for p, m, predicted, overlay in predictions])
    return len(items)


def _explain(model, config: Mapping, batch: list[dict], shown: list[tuple[int, int]], pictures: list[np.ndarray],
             files: Path, index: int, start: int) -> list[tuple[int, int, int, str]]:
    """(position, method index, predicted class, overlay path) of a batch; writes CAMs and overlays."""
    size = input_hw(config)
    device = next(model.parameters()).device
    images = torch.cat([_resize(item["image"][None], size) for item in batch]).to(device)
    gaze = None
    if model.inference_needs_gaze:
        gaze = torch.cat([_resize(item["gaze"][None], size) for item in batch]).to(device)
    result = grad_cam(model, images, gaze)
    rows = []
    for offset, (cam, (width, height), picture) in enumerate(zip(result.cams.cpu(), shown, pictures)):
        position = start + offset
        heat = _resize(cam[None], (height, width))[0, 0].clamp(0, 1).numpy()
        _save(files / "cams" / str(index) / f"{position}.png", (heat * 255).round().astype(np.uint8))
        overlay = _save(files / "overlays" / str(index) / f"{position}.jpg", heat_overlay(picture, heat), quality=92)
        rows.append((position, index, int(result.targets[offset]), str(Path(overlay).relative_to(files))))
    return rows
