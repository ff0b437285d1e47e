"""Build an ImageFolder experiment from its config: data, human attention, loaders, model, run folder.

Shared by ``folder/train.py`` and ``folder/evaluate.py``. GRADIA's phase-2 training set
(the published ``p2_train``, gradia_cal.md A2) is the training images plus every RATED
validation image, written as ``p2_train.csv`` in the run folder (``gaze.data.human_attention``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import DataLoader

from folder.dataset import ImageFolderDataset, folder_samples
from folder.published import PUBLISHED
from gaze.attention.annotations import ATTENTION_SAMPLES, check_known_images, gradia_masks
from gaze.config import (
    PUBLISHED_SUFFIX,
    ConfigError,
    apply_protocol,
    apply_recipe,
    check_numbers,
    load_config,
    registry_choices,
    weights_path,
)
from gaze.config import resolve_path as shared_resolve_path
from gaze.data.human_attention import HumanAttention, load_human_attention, phase_two_split, write_phase_two_train
from gaze.data.layouts import LAYOUTS, Layout, read_layout, write_answer
from gaze.data.splits import stratified_split
from gaze.data.transforms import (
    build_full_resolution_transforms,
    build_hw1_transforms,
    build_pim_transforms,
    build_resize_transforms,
)
from gaze.engine.dist import is_main_process, seed_everything
from gaze.models import model_class
from gaze.models.base import GazeModel
from gaze.published_configs import FOREIGN_CONFIGS
from gaze.synthetic.gradia import ensure_synthetic_gradia
from gaze.synthetic.marker import MARKER_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
FOLDER_DIR = REPO_ROOT / "folder"
#: The tree's training where a method states no recipe of its own (``training_recipe``).
FOLDER_RECIPE = {"optimizer": "sgd", "init_lr": 0.01, "lr_schedule": "constant"}
#: GRADIA's attention files (A3), looked for in ``attention_dir``; each is optional.
ATTENTION_FILES = {"val": "attention_val.json", "update": "attention_val_update.json",
                   "remove": "attention_val_remove.json", "test": "attention_test.json"}
RATINGS_FILE = "reasonablity_val.json"


def resolve_path(path: str | None) -> Path | None:
    """A config path: ``~`` expanded, relative paths taken from the repository root."""
    return shared_resolve_path(path, REPO_ROOT)


def load_folder_config(argv: list[str] | None = None) -> dict[str, Any]:
    """``folder/config.py`` + override files + ``--key=value``, checked, the method's recipe filled."""
    config = load_config(FOLDER_DIR / "config.py", sys.argv[1:] if argv is None else argv,
                         choices={**registry_choices(), "attention_samples": list(ATTENTION_SAMPLES),
                                  "layout": list(LAYOUTS), "transforms": ["resize", "hw1", "pim"]},
                         readers=FOREIGN_CONFIGS)
    config = apply_protocol(config, PUBLISHED, config["model_type"], "model_name")
    config = apply_recipe(config, FOLDER_RECIPE, model_class(config["model_type"]).training_recipe(config))
    check_numbers(config, positive=("input_size", "batch_size", "end_epoch", "init_lr", "log_interval"),
                  non_negative=("workers", "cam_images", "weight_decay", "warmup_epochs"))
    if config["model_name"] is None:
        config["model_name"] = config["model_type"] + (PUBLISHED_SUFFIX if config["protocol"] == "published" else "")
    return config


@dataclass
class FolderData:
    """The splits' (path, label) lists, the class names, and the human attention of the images."""

    samples: dict[str, list[tuple[str, int]]]
    class_names: list[str]
    human: HumanAttention | None = None
    unlabelled: list[str] = field(default_factory=list)


def data_root(config: dict[str, Any]) -> Path:
    """The ImageFolder root; a ``synthetic*`` folder without a finished demo is generated."""
    return ensure_demo(resolve_path(config["root"]))


def ensure_demo(root: Path) -> Path:
    """``root``, generating the synthetic demo set there first when it is a ``synthetic*``
    folder without a finished one."""
    if root.name.startswith("synthetic") and not (root / MARKER_NAME).is_file():
        ensure_synthetic_gradia(root)
    return root


def pim_folders(config: dict[str, Any], root: Path) -> tuple[Path, Path]:
    """Layout 'pim': (training, test) ImageFolders, ``train_dir`` / ``test_dir`` or root/train,
    root/test (a ``synthetic*`` parent is generated first, so a PIM YAML can name the demo)."""
    folders = []
    for key, split in (("train_dir", "train"), ("test_dir", "test")):
        folder = resolve_path(config[key]) if config[key] else root / split
        ensure_demo(folder.parent)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (config key {key!r}; a PIM YAML's "
                                    f"{'train_root' if split == 'train' else 'val_root'}): expected <class>/*.jpg "
                                    "folders, e.g. written from CUB_200_2011 by `python cub/to_folder.py`")
        folders.append(folder)
    return folders[0], folders[1]


def layout_samples(config: dict[str, Any], root: Path) -> tuple[dict[str, list], list[str], list[str]]:
    """(samples per split, class names, unlabelled test files) of the configured ``layout``.

    The ImageFolder layout has its own val/ and test/. The others (PIM's train/ + test/, the
    fine-grained sets' own files): validation carved from the training images (``val_fraction``, stratified by ``seed``); NYCU HW1's test images are
    unlabelled, so its validation images are also the labelled test (answer.txt is the
    prediction for the real test images).
    """
    if config["layout"] == "imagefolder":
        samples, names = {}, None
        for split in ("train", "val", "test"):
            samples[split], split_names = folder_samples(root, split)
            if names is not None and split_names != names:
                raise ValueError(f"{root / split}: classes {split_names} differ from the training classes {names}")
            names = split_names
        return samples, names, []
    if config["layout"] == "pim":
        train_dir, test_dir = pim_folders(config, root)
        train, names = folder_samples(train_dir.parent, train_dir.name)
        test, test_names = folder_samples(test_dir.parent, test_dir.name)
        if test_names != names:
            raise ValueError(f"{test_dir}: classes {test_names} differ from the training classes {names} in {train_dir}")
        layout = Layout({"train": train, "test": test}, names)
    else:
        layout = read_layout(config["layout"], root)
    train = layout.samples["train"]
    if not 0 < config["val_fraction"] < 1:
        raise ConfigError(f"val_fraction={config['val_fraction']}: layout {config['layout']!r} has no validation "
                          "split; carve one with a fraction in (0, 1)")
    kept, held = stratified_split([label for _, label in train], config["val_fraction"], int(config["seed"]))
    val = [train[i] for i in held]
    return ({"train": [train[i] for i in kept], "val": val, "test": layout.samples.get("test", val)},
            layout.class_names, layout.unlabelled)


def load_data(config: dict[str, Any]) -> FolderData:
    """Splits, class names (the same in every split), GRADIA masks / PNG masks and ratings
    (None when the dataset has neither masks nor ratings), unlabelled test files (HW1)."""
    root = data_root(config)
    samples, names, unlabelled = layout_samples(config, root)
    if config["num_classes"] is not None and config["num_classes"] != len(names):
        raise ValueError(f"config key 'num_classes' = {config['num_classes']}, but the data has {len(names)} classes "
                         f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    ids = sorted({Path(path).name for split in samples.values() for path, _ in split})
    attention_dir = resolve_path(config["attention_dir"]) if config["attention_dir"] else root
    if config["layout"] == "pim" and not config["attention_dir"]:
        attention_dir = None  # PIM's trees have no masks; the root's GRADIA files (of its val/ images) are not theirs
    files = {key: attention_dir / name for key, name in ATTENTION_FILES.items()
             if attention_dir and (attention_dir / name).is_file()}
    masks = gradia_masks(**files) if files else {}
    check_known_images(masks, ids, f"masks in {attention_dir}")
    ratings = resolve_path(config["ratings"]) if config["ratings"] else attention_dir and attention_dir / RATINGS_FILE
    human = load_human_attention(ids, ratings if config["ratings"] or (ratings and ratings.is_file()) else None,
                                 resolve_path(config["masks_dir"]), config["attention_samples"],
                                 config["gaze_threshold"], masks=masks)
    return FolderData(samples, names, human if human.masks or human.ratings else None, unlabelled)


def phase_two_samples(data: FolderData) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(training set, validation set) of GRADIA's phase 2 (``gaze.data.human_attention.phase_two_split``)."""
    rated = data.human.ratings if data.human else {}
    by_name = {Path(path).name: (path, label) for split in ("train", "val") for path, label in data.samples[split]}
    train, val = phase_two_split([Path(p).name for p, _ in data.samples["train"]],
                                 [Path(p).name for p, _ in data.samples["val"]], rated)
    return [by_name[name] for name in train], [by_name[name] for name in val]


def build_dataset(config: dict[str, Any], data: FolderData, samples: list[tuple[str, int]], train: bool
                  ) -> ImageFolderDataset:
    """``transforms``: GRADIA's recipe (A4: resize to the input size, a shared flip when training,
    ImageNet normalisation), NYCU HW1's (C2) or PIM's (cub_pim.md §3.2)."""
    if config["transforms"] == "hw1":
        transform = build_hw1_transforms(train=train, input_size=config["input_size"])
    elif config["transforms"] == "pim":
        transform = build_pim_transforms(train=train, input_size=config["input_size"], resize_size=config["resize_size"])
    else:
        transform = build_resize_transforms(train=train, size=config["input_size"], flip=True)
    return ImageFolderDataset(samples, data.class_names, transform, data.human)


def build_loaders(config: dict[str, Any], data: FolderData, train: list, val: list) -> dict[str, DataLoader]:
    """train (shuffled), val and test loaders of the given training and validation images."""
    parts = {"train": (train, True), "val": (val, False), "test": (data.samples["test"], False)}
    return {split: DataLoader(build_dataset(config, data, samples, is_train), batch_size=config["batch_size"],
                              shuffle=is_train, num_workers=config["workers"])
            for split, (samples, is_train) in parts.items()}


def phase_loaders(config: dict[str, Any], data: FolderData, out_dir: Path) -> tuple[dict, dict]:
    """(loaders of every phase, {phase name: loaders} where one differs): GRADIA's phase 2
    trains on ``p2_train`` (written to the run folder) when there are ratings."""
    loaders = build_loaders(config, data, data.samples["train"], data.samples["val"])
    phases = model_class(config["model_type"]).phases
    if not phases or data.human is None or not data.human.ratings:
        return loaders, {}
    train, val = phase_two_samples(data)
    if is_main_process():
        write_phase_two_train(pd.DataFrame(train, columns=["path", "label"]), out_dir)
    return loaders, {phases[-1]: build_loaders(config, data, train, val)}


def answer_file(model: GazeModel, config: dict[str, Any], data: FolderData, out_dir: Path) -> Path | None:
    """NYCU HW1's ``answer.txt`` for the unlabelled test images (``answer_path``, default
    ``<out_dir>/answer.txt``) under the configured ``eval_protocol``; None without such images."""
    if not data.unlabelled:
        return None
    from gaze.engine.evaluate import evaluate  # the engine only where predictions are made

    images = build_dataset(config, data, [(path, 0) for path in data.unlabelled], train=False)
    loader = DataLoader(images, batch_size=config["batch_size"], num_workers=config["workers"])
    results = evaluate(model, loader, next(model.parameters()).device, protocol=config["eval_protocol"])
    path = resolve_path(config["answer_path"]) if config["answer_path"] else out_dir / "answer.txt"
    return write_answer(path, data.unlabelled, list(results["probabilities"].argmax(axis=1)), data.class_names)


def build_model(config: dict[str, Any], num_classes: int) -> GazeModel:
    """The configured model (``from_config``), started from ``init_from`` when set; seeded first."""
    seed_everything(int(config["seed"]))
    model = model_class(config["model_type"]).from_config(
        config, num_classes=num_classes, pretrained_path=weights_path(config["pretrain_path"], REPO_ROOT))
    if config["init_from"]:
        model.init_from(resolve_path(config["init_from"]))
    return model


def annotation_source(config: dict[str, Any], split: str, fold: int = 0) -> tuple[ImageFolderDataset, GazeModel]:
    """For ``gaze.annotate``: the ``split`` images at their own resolution (no gaze: ImageFolder
    data has none), and the configured model without trained weights (``fold`` is unused)."""
    data = load_data(config)
    if split not in data.samples:
        raise ValueError(f"split {split!r}: the ImageFolder tree has {', '.join(data.samples)}")
    dataset = ImageFolderDataset(data.samples[split], data.class_names, build_full_resolution_transforms())
    return dataset, build_model({**config, "init_from": None, "pretrain_path": None}, len(data.class_names))


def run_dir(config: dict[str, Any]) -> Path:
    """``model_path/model_name``, e.g. runs/folder/gradia."""
    return resolve_path(config["model_path"]) / config["model_name"]
