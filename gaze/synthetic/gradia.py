"""A deterministic SYNTHETIC set in exactly GRADIA's on-disk layout (gradia_cal.md A2-A3).

    root/{train,val,test}/{horizontal,vertical}/<name>.jpg     ImageFolder, sorted class names
    root/attention_val.json, root/attention_test.json            [{"img", "attention": 224x224 0/1}]
    root/reasonablity_val.json                                   {"<name>.jpg": "<Reasonable|...> <Accurate|...>"}
    root/README.txt, root/.synthetic_complete.json

Each picture is noise with large distracting blobs; its class is decided by one small local
cue, a square of horizontal or vertical stripes at a random place. The human mask of a val
or test image is that square (the attention a person would draw). Half of the val images are
rated, with labels drawn in the published proportions (RA 402, UA 212, RI 71, UI 65 of 750):
they are SYNTHETIC ratings, not judgements of any model. Not photos of people.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from gaze.atomic import atomic_path
from gaze.synthetic.marker import MARKER_NAME, README_HEADER, ensure_set

GENERATOR_VERSION = 1
CLASSES = ("horizontal", "vertical")
MASK_SIZE = 224  # GRADIA's masks are 224x224 whatever the photo's size (A3)
#: Published label counts of reasonablity_val.json (A3), the synthetic ratings' proportions.
LABEL_COUNTS = {"Reasonable Accurate": 402, "Unreasonable Accurate": 212, "Reasonable Inaccurate": 71,
                "Unreasonable Inaccurate": 65}


def _picture(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) uint8 picture and its (size, size) bool cue mask."""
    picture = rng.normal(128, 18, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    for _ in range(3):  # distractors: soft colour blobs, any class
        cy, cx, radius = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 4)]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
        picture += blob[..., None] * rng.uniform(-70, 70, 3)
    side = max(size // 5, 8)
    top, left = rng.integers(0, size - side, 2)
    rows, cols = np.mgrid[:side, :side]
    stripes = ((rows if label == 0 else cols) // max(side // 6, 1)) % 2  # horizontal | vertical
    picture[top:top + side, left:left + side] = np.where(stripes[..., None] == 1, 235, 25)
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return np.clip(picture, 0, 255).round().astype(np.uint8), mask


def _mask_224(mask: np.ndarray) -> list[list[int]]:
    picture = Image.fromarray(mask.astype(np.uint8) * 255).resize((MASK_SIZE, MASK_SIZE), Image.NEAREST)
    return (np.asarray(picture) > 127).astype(int).tolist()


def _write_json(path: Path, value: object) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value))


def make_synthetic_gradia(root: str | Path, per_class: tuple[int, int, int] = (40, 15, 15), image_size: int = 112,
                          seed: int = 0) -> Path:
    """Write the set (see the module docstring) to ``root``.

    Args:
        root: output folder (created).
        per_class: images per class in train, val and test.
        image_size: picture side, px.
        seed: everything is drawn from it.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    masks: dict[str, list] = {"val": [], "test": []}
    val_names = []
    for split, count in zip(("train", "val", "test"), per_class):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                picture, mask = _picture(rng, label, image_size)
                file_name = f"{split}_{name}_{index:04d}.jpg"
                Image.fromarray(picture).save(folder / file_name, quality=92)
                if split in masks:
                    masks[split].append({"img": f"{root.name}/{split}/{name}/{file_name}", "attention": _mask_224(mask)})
                if split == "val":
                    val_names.append(file_name)
    _write_json(root / "attention_val.json", masks["val"])
    _write_json(root / "attention_test.json", masks["test"])
    rated = sorted(rng.choice(val_names, size=len(val_names) // 2, replace=False).tolist())
    labels, weights = list(LABEL_COUNTS), np.array(list(LABEL_COUNTS.values()), float)
    drawn = rng.choice(len(labels), size=len(rated), p=weights / weights.sum())
    _write_json(root / "reasonablity_val.json", {name: labels[k] for name, k in zip(rated, drawn)})
    (root / "README.txt").write_text(
        f"{README_HEADER}: made by gaze.synthetic.gradia in GRADIA's layout. Two classes decided by a small "
        "striped square (horizontal or vertical stripes); the masks are that square; the ratings in "
        "reasonablity_val.json are drawn at random in the published proportions. Not photos of people, "
        "not judgements of a model.\n")
    wanted = {"per_class": list(per_class), "image_size": image_size, "seed": seed}
    _write_json(root / MARKER_NAME, {**wanted, "generator_version": GENERATOR_VERSION})
    return root


def ensure_synthetic_gradia(root: str | Path, verbose: bool = True, **kwargs) -> Path:
    """The set at ``root``, generated unless a complete one with the same parameters is there
    (a folder holding other data is never touched: FileExistsError); says it is SYNTHETIC."""
    root = Path(root)
    wanted = {"per_class": [40, 15, 15], "image_size": 112, "seed": 0}
    wanted.update({key: list(value) if key == "per_class" else value for key, value in kwargs.items()})
    return ensure_set(
        root, wanted, GENERATOR_VERSION, "gaze.synthetic.gradia",
        lambda: make_synthetic_gradia(root, tuple(wanted["per_class"]), wanted["image_size"], wanted["seed"]),
        f"Using the SYNTHETIC GRADIA-layout dataset at {root} (striped-square pictures, random ratings; "
        "not GRADIA's photos or judgements).",
        f"Generating a SYNTHETIC dataset in GRADIA's layout at {root} ({wanted}): two classes decided by a "
        "small striped square, its masks, random ratings in the published proportions. It is NOT GRADIA's "
        "data; for real results point root at your ImageFolder (train/ val/ test/) and attention_dir at "
        "GRADIA's JSON files.",
        verbose)
