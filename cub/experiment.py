"""Build a CUB experiment from its config: paths, data, loaders, model, run directory.

Shared by ``cub/train.py`` and ``cub/evaluate.py``; every function takes the plain config
dict of ``cub/config.py`` (after overrides).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import DataLoader

from cub.dataset import CUBDataset, image_files
from cub.published import PUBLISHED
from gaze.attention.annotations import ATTENTION_SAMPLES
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
from gaze.data.human_attention import (
    HumanAttention,
    configured_human_attention,
    file_name_aliases,
    phase_two_split,
    read_verdicts,
    write_phase_two_train,
)
from gaze.data.transforms import build_full_resolution_transforms, build_pim_transforms, build_transforms
from gaze.engine.dist import is_main_process, seed_everything
from gaze.models import model_class
from gaze.models.base import GazeModel
from gaze.models.cal import ATTENTION_SOURCES
from gaze.synthetic.cub import ensure_synthetic_cub
from gaze.synthetic.marker import MARKER_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
CUB_DIR = REPO_ROOT / "cub"
MASKED_IMAGE_CROPS = ("shared", "independent")
#: The CUB demo's training where a method states no recipe of its own (``training_recipe``):
#: SGD 0.01 with a cosine schedule (the published 1e-3 MultiStepLR is cub/configs/*_r50.py).
CUB_RECIPE = {"optimizer": "sgd", "init_lr": 0.01, "lr_schedule": "cosine", "select_metric": "top1",
              "transforms": "cub"}


def resolve_path(path: str | None) -> Path | None:
    """A config path: ``~`` expanded, relative paths taken from the repository root."""
    return shared_resolve_path(path, REPO_ROOT)


def load_cub_config(argv: list[str] | None = None) -> dict[str, Any]:
    """``cub/config.py`` + override files + ``--key=value`` from ``argv``; values checked."""
    config = load_config(CUB_DIR / "config.py", sys.argv[1:] if argv is None else argv,
                         choices={**registry_choices(), "attention_samples": list(ATTENTION_SAMPLES),
                                  "attention_source": list(ATTENTION_SOURCES), "transforms": [None, "cub", "pim"]})
    config = apply_protocol(config, PUBLISHED, config["model_type"], "model_name")
    if config["model_name"] is None:  # one folder per method: a KFN run never resumes a GAT one
        suffix = PUBLISHED_SUFFIX if config["protocol"] == "published" else ""
        config["model_name"] = f"{config['model_type']}_demo{suffix}"
    config = apply_recipe(config, CUB_RECIPE, model_class(config["model_type"]).training_recipe(config))
    check_numbers(config, positive=("input_size", "batch_size", "end_epoch", "num_classes", "stride", "init_lr",
                                    "log_interval", "N_list"),
                  non_negative=("workers", "cam_images", "weight_decay", "warmup_epochs"))
    if config["gaze_missing"] not in ("error", "uniform"):
        raise ConfigError(f"gaze_missing={config['gaze_missing']!r}: expected 'error' or 'uniform'")
    if config["masked_image_crop"] not in MASKED_IMAGE_CROPS:
        raise ConfigError(f"masked_image_crop={config['masked_image_crop']!r}: expected one of "
                          f"{', '.join(MASKED_IMAGE_CROPS)}")
    if len(set(config["iou_threshs"])) != 1:
        raise ConfigError(f"iou_threshs={config['iou_threshs']}: one threshold for all scales is supported")
    if not 0.0 <= config["val_fraction"] < 1.0:
        raise ConfigError(f"val_fraction={config['val_fraction']}: expected a fraction in [0, 1) (0: train on all training images)")
    if config["color_jitter"] is not None and len(config["color_jitter"]) not in (2, 3):
        raise ConfigError(f"color_jitter={config['color_jitter']}: expected [brightness, contrast], "
                          "[brightness, contrast, saturation] or None")
    if len(config["N_list"]) != len(config["ratios"]):
        raise ConfigError(f"N_list={config['N_list']} needs one entry per group of ratios ({len(config['ratios'])})")
    return config


def data_root(config: dict[str, Any]) -> Path:
    """The CUB_200_2011 folder; a ``synthetic*`` folder without a finished demo is generated."""
    root = resolve_path(config["root"])
    if root.name.startswith("synthetic") and not (root / MARKER_NAME).is_file():
        ensure_synthetic_cub(root, num_classes=config["num_classes"])
    if not (root / "images.txt").is_file():
        raise FileNotFoundError(
            f"root={config['root']!r} ({root}) holds no images.txt: point root at the CUB_200_2011 folder "
            "(python cub/train.py --root=/path/to/CUB_200_2011 --num_classes=200), or at a folder named "
            "synthetic* to generate the synthetic demo there"
        )
    return root


def gaze_source(config: dict[str, Any]) -> dict[str, Any]:
    """The dataset's ``gaze`` option: CUB-GHA maps (``GHA_dir``) or fixations rendered on the fly."""
    if config["GHA_dir"] is not None:
        return {"dir": config["GHA_dir"], "missing": config["gaze_missing"]}
    if config["gaze_fixations"] is None:
        raise ConfigError("set GHA_dir (a folder of CUB-GHA maps) or gaze_fixations (fixation files)")
    return {
        "fixations": config["gaze_fixations"],
        "sigma": config["gaze_sigma"],
        "min_duration": config["gaze_min_duration"],
        "missing": config["gaze_missing"],
    }


def color_jitter(config: dict[str, Any]) -> tuple[float, ...] | None:
    """``color_jitter`` of the config, else the method's published training recipe."""
    if config["color_jitter"] is not None:
        return tuple(float(value) for value in config["color_jitter"])
    return model_class(config["model_type"]).train_color_jitter


def resize_size(config: dict[str, Any]) -> int | None:
    """The side resized to before the crop: the method's recipe (CAL: input / 0.875, 512 for 448), else the input size."""
    ratio = model_class(config["model_type"]).train_resize_ratio
    return None if ratio is None else round(config["input_size"] / ratio)


def image_aliases(root: Path) -> tuple[list[str], dict[str, str]]:
    """(every images.txt id, {image file name: id}): ratings and assessments may key images either way."""
    files = image_files(root)
    return list(files), file_name_aliases(files, files.values())


def human_attention(config: dict[str, Any], root: Path) -> HumanAttention | None:
    """GRADIA's drawn masks (``masks_dir``) and ratings (keyed by image id or file name), or None
    (``gaze.data.human_attention.configured_human_attention``)."""
    return configured_human_attention(config, lambda: image_aliases(root), resolve_path)


def assessments(config: dict[str, Any], root: Path) -> dict[str, bool] | None:
    """{image id: judged unreasonable} of the ``assessments`` file (keys: ids or file names), or None."""
    if config["assessments"] is None:
        return None
    return read_verdicts(resolve_path(config["assessments"]), *image_aliases(root))


def build_dataset(config: dict[str, Any], root: Path, split: str, with_gaze: bool,
                  human: HumanAttention | None = None) -> CUBDataset:
    """One split of the CUB folder ``root`` with the training or evaluation transform of ``transforms``
    (CUB-GHA's, or PIM's: gaze maps follow the image's geometry, not its blur or sharpening)."""
    train = split in ("train", "trainval")
    if config["transforms"] == "pim":
        transform = build_pim_transforms(train=train, input_size=config["input_size"])
    else:
        transform = build_transforms(train=train, input_size=config["input_size"], color_jitter=color_jitter(config),
                                     resize_size=resize_size(config))
    return CUBDataset(
        root,
        split=split,
        transform=transform,
        gaze=gaze_source(config) if with_gaze else None,
        val_fraction=config["val_fraction"],
        seed=config["seed"],
        num_classes=config["num_classes"],
        masked_image=train and with_gaze and config["masked_image_crop"] == "independent",
        human=human,
    )


def needs_gaze(config: dict[str, Any], split: str) -> bool:
    """Whether the configured method reads the attention maps in ``split`` (its class says)."""
    return model_class(config["model_type"]).needs_gaze(split, config)


def split_sources(config: dict[str, Any]) -> dict[str, str | None]:
    """The CUB split behind each loader: ``{'train': ..., 'val': ..., 'test': 'test'}``.

    ``val_fraction > 0`` (default): train on 'train', select on the carved 'val'.
    ``val_fraction = 0``: train on all 5,994 training images ('trainval'), no selection (the
    last epoch is the result). ``select_on_test=True``: train on 'trainval' and select the
    best epoch on 'test', as the published loop did (cub_pim §1.8; optimistic, warned).
    """
    if config["select_on_test"]:
        warnings.warn(
            "select_on_test=True: the best epoch is chosen ON THE TEST SET, as the published CUB-GHA loop did "
            "(cub_pim.md §1.8); no validation split is carved (val_fraction unused) and the test score is "
            "optimistic: report it as test-selected", UserWarning, stacklevel=2)
        return {"train": "trainval", "val": "test", "test": "test"}
    if config["val_fraction"] > 0:
        return {"train": "train", "val": "val", "test": "test"}
    return {"train": "trainval", "val": None, "test": "test"}


def _loader(config: dict[str, Any], dataset: CUBDataset, role: str) -> DataLoader:
    return DataLoader(dataset, batch_size=config["batch_size"], shuffle=role == "train",
                      num_workers=config["workers"], persistent_workers=False)


def build_loaders(config: dict[str, Any], human: HumanAttention | None = None) -> dict[str, DataLoader | None]:
    """train (shuffled), val (None without a validation split) and test loaders, ``batch_size`` per process."""
    root = data_root(config)
    return {role: None if split is None else
            _loader(config, build_dataset(config, root, split, needs_gaze(config, role), human), role)
            for role, split in split_sources(config).items()}


def phase_loaders(config: dict[str, Any], out_dir: Path) -> tuple[dict[str, DataLoader | None], dict[str, dict]]:
    """(loaders of every phase, {phase name: loaders} where one differs).

    With ratings, GRADIA's last phase trains on the published ``p2_train``: the training
    images plus the rated validation images (written to ``<run>/p2_train.csv``: id, path,
    label), and selects on the validation images left (``gaze.data.human_attention``). Rated
    images of other splits only weigh their samples (test images are never trained on).
    """
    human = human_attention(config, data_root(config))
    loaders = build_loaders(config, human)
    phases = model_class(config["model_type"]).phases
    if not phases or human is None or not human.ratings or split_sources(config)["val"] != "val":
        return loaders, {}
    root = data_root(config)
    train_ids, val_ids = phase_two_split(loaders["train"].dataset.ids, loaders["val"].dataset.ids, human.ratings)
    train = build_dataset(config, root, "trainval", needs_gaze(config, "train"), human).subset(set(train_ids))
    val = loaders["val"].dataset.subset(set(val_ids))
    if is_main_process():
        write_phase_two_train(pd.DataFrame({"id": train.ids, "path": [str(p.relative_to(root / "images")) for p in train.paths],
                                            "label": train.labels}), out_dir)
    return loaders, {phases[-1]: {"train": _loader(config, train, "train"), "val": _loader(config, val, "val"),
                                  "test": loaders["test"]}}


def init_checkpoint(config: dict[str, Any]) -> Path | None:
    """The checkpoint the model starts from: ``init_from``, or its published alias ``GAT_pretrained``."""
    chosen = {key: config[key] for key in ("init_from", "GAT_pretrained") if config[key]}
    if len(set(chosen.values())) > 1:
        raise ConfigError(f"init_from={config['init_from']!r} and GAT_pretrained={config['GAT_pretrained']!r}: "
                          "set one (GAT_pretrained is the published name of init_from)")
    return resolve_path(next(iter(chosen.values()))) if chosen else None


def build_model(config: dict[str, Any]) -> GazeModel:
    """The configured model: its class maps the config keys (``from_config``), then
    :func:`init_checkpoint` initialises it (``init_from``; KFN: both branches from a GAT).

    Everything random (head initialisation) is drawn after seeding with ``seed``, so two
    fresh runs of the same config start from the same weights.
    """
    seed_everything(int(config["seed"]))
    model = model_class(config["model_type"]).from_config(
        config, pretrained_path=weights_path(config["pretrain_path"], REPO_ROOT))
    checkpoint = init_checkpoint(config)
    if checkpoint is not None:
        model.init_from(checkpoint)
    return model


def annotation_source(config: dict[str, Any], split: str, fold: int = 0) -> tuple[CUBDataset, GazeModel]:
    """For ``gaze.annotate``: the ``split`` images at their own resolution with their gaze maps,
    and the configured model without trained weights (``fold`` is unused: CUB has one split)."""
    dataset = CUBDataset(data_root(config), split=split, transform=build_full_resolution_transforms(),
                         gaze=gaze_source(config), val_fraction=config["val_fraction"], seed=config["seed"],
                         num_classes=config["num_classes"])
    return dataset, build_model({**config, "init_from": None, "GAT_pretrained": None, "pretrain_path": None})


def run_dir(config: dict[str, Any]) -> Path:
    """``model_path/model_name`` (the published save directory), e.g. runs/cub/gat."""
    return resolve_path(config["model_path"]) / config["model_name"]


def panel_dataset(config: dict[str, Any], human: HumanAttention | None = None) -> CUBDataset:
    """The test split with its attention maps (and the drawn masks of ``human``), for the
    Grad-CAM panels (``gaze.viz.panels``)."""
    return build_dataset(config, data_root(config), "test", with_gaze=True, human=human)
