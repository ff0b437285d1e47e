"""Build a CXR-Eye experiment from its config: data, patient splits, loaders, models, run folders.

Shared by ``cxr/train.py``, ``cxr/evaluate.py`` and ``cxr/prepare.py``; every function takes
the plain config dict of ``cxr/config.py`` (after overrides and :func:`method_defaults`).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from cxr.dataset import Catalogue, CXREyeDataset, load_catalogue
from cxr.published import PUBLISHED
from gaze.attention.annotations import (
    ATTENTION_SAMPLES,
)
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
from gaze.data.patient_splits import (
    DEFAULT_RSEED,
    SPLIT_PROTOCOLS,
    build_split_table,
    keeps_patients_apart,
    read_split_table,
    write_split_table,
)
from gaze.data.transforms import GGCAMTransform, build_full_resolution_transforms, build_resize_transforms
from gaze.engine.checkpoint import best_checkpoint
from gaze.engine.dist import is_main_process, seed_everything
from gaze.engine.logging import report_logger
from gaze.models import model_class
from gaze.models.base import GazeModel
from gaze.synthetic.cxr import ensure_synthetic_cxr_eye
from gaze.synthetic.marker import MARKER_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
CXR_DIR = REPO_ROOT / "cxr"
#: Keys renamed since earlier releases (an old override file gets an error saying so).
RENAMED_KEYS = {"model": "model_type"}

SPLITS_CSV = "splits.csv"


def resolve_path(path: str | None) -> Path | None:
    """A config path: ``~`` expanded, relative paths taken from the repository root."""
    return shared_resolve_path(path, REPO_ROOT)


def load_cxr_config(argv: list[str] | None = None) -> dict[str, Any]:
    """``cxr/config.py`` + override files + ``--key=value``, checked, with method defaults filled."""
    config = load_config(CXR_DIR / "config.py", sys.argv[1:] if argv is None else argv,
                         choices={**registry_choices(), "preprocessing": list(PREPROCESSING),
                                  "attention_samples": list(ATTENTION_SAMPLES)},
                         renamed=RENAMED_KEYS)
    if config["protocol"] in SPLIT_PROTOCOLS:
        raise ConfigError(f"protocol={config['protocol']!r}: the patient split is the key 'split' now "
                          f"(--split={config['protocol']}); protocol is 'ours' or 'published'")
    config = apply_protocol(config, PUBLISHED, config["model_type"], "model_name")
    check_numbers(config, positive=("input_size", "input_hw", "batch_size", "end_epoch", "folds", "log_interval",
                                    "init_lr", "ggcam_fraction"),
                  non_negative=("workers", "cam_images", "weight_decay", "warmup_epochs", "val_fraction"))
    if config["preprocessing"] == "pad_subsample" and config["gaze_source"] != "fixations":
        raise ConfigError("preprocessing='pad_subsample' renders the gaze from fixations.csv: set gaze_source='fixations'")
    return method_defaults(config)


#: HAFC's training of GAT/KFN/the baseline (cxr §2.5-2.6), the default of every method whose
#: class states no recipe of its own: Adam 5e-4, MultiStepLR [50] x0.1, best accuracy.
HAFC_RECIPE = {"pretrain_path": "default", "init_lr": 5e-4, "lr_schedule": "multistep", "early_stop_patience": None,
               "select_metric": "top1", "val_loss": "ce", "reload_best_on_lr_drop": False, "stop_lr": None}


def method_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Fill the keys left at None (or 'default') from the method's training recipe, and set
    the engine's selection keys from it.

    The recipe is HAFC's (:data:`HAFC_RECIPE`) overlaid with what the model class states
    (``training_recipe``, e.g. GG-CAM's, cxr §3.5; see ``gaze.config.apply_recipe``).
    ``pretrain_path='default'`` left by the recipe means the package's ImageNet weights for
    tf_efficientnet_lite0, else from scratch.
    ``gaze_sampling=None``: 'point' with ``preprocessing='pad_subsample'`` (published), else 'area'.
    """
    config = apply_recipe(config, HAFC_RECIPE, model_class(config["model_type"]).training_recipe(config))
    if config["pretrain_path"] == "default":
        lite0 = config["backbone"] == "tf_efficientnet_lite0"
        config["pretrain_path"] = "package:efficientnet-lite0" if lite0 else None
    if config["gaze_sampling"] is None:
        config["gaze_sampling"] = "point" if config["preprocessing"] == "pad_subsample" else "area"
    if config["rseed"] is None:
        config["rseed"] = DEFAULT_RSEED.get(config["split"], 0)
    if config["model_name"] is None:
        suffix = PUBLISHED_SUFFIX if config["protocol"] == "published" else ""
        config["model_name"] = f"{config['model_type']}_{config['split']}_rseed{config['rseed']}{suffix}"
    return config


def ensure_data(config: dict[str, Any]) -> None:
    """Generate the synthetic demo when ``mimic_root`` lies in a ``synthetic*`` folder without one."""
    mimic_root = resolve_path(config["mimic_root"])
    demo_root = mimic_root.parent
    if demo_root.name.startswith("synthetic") and not (demo_root / MARKER_NAME).is_file():
        ensure_synthetic_cxr_eye(demo_root)
    elif demo_root.name.startswith("synthetic"):
        report_logger().info(f"Using the SYNTHETIC CXR-Eye miniature at {demo_root} (not real radiographs; "
                             "gaze is simulated).")


def build_catalogue(config: dict[str, Any]) -> Catalogue:
    """Master sheet + images + gaze joined (see ``cxr.dataset.load_catalogue``); prints the report."""
    ensure_data(config)
    catalogue = load_catalogue(
        resolve_path(config["mimic_root"]), resolve_path(config["egd_dir"]), config["gaze_source"],
        resolve_path(config["heatmaps_dir"]), config["heatmap_png_mode"], config["gaze_sigma"],
        config["gaze_duration_weighted"], config["gaze_calibrate"], resolve_path(config["gaze_cache_dir"]))
    report_logger().info(catalogue.report)
    return catalogue


def split_table(config: dict[str, Any], catalogue: Catalogue) -> pd.DataFrame:
    """The patient-disjoint split table of the config's protocol (``gaze.data.patient_splits``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        table = build_split_table(
            catalogue.frame[["dicom_id", "patient_id", "label"]], config["split"], n_folds=config["folds"],
            rseed=config["rseed"], val_fraction=config["val_fraction"], val_seed=config["seed"],
            ggcam_fraction=config["ggcam_fraction"], ggcam_seed=config["ggcam_seed"],
            ggcam_patient_disjoint=config["ggcam_patient_disjoint"],
            select_on_test=config["select_on_test"])
    return table  # build_split_table checked it is patient-disjoint (unless the published GG-CAM split)


def saved_split_table(config: dict[str, Any], catalogue: Catalogue, out_dir: Path) -> pd.DataFrame:
    """The run's ``splits.csv``: written on the first start, read (and checked) on resume."""
    table = split_table(config, catalogue)
    path = out_dir / SPLITS_CSV
    if path.is_file():
        saved = read_split_table(path, patient_disjoint(config))
        if not saved[table.columns].astype(str).equals(table.astype(str)):
            raise ValueError(f"{path} differs from the splits of this config (protocol, rseed, data changed?); "
                             "use another model_name or delete the run folder")
        return table
    if is_main_process():
        write_split_table(table, path)
    return table


def run_split_table(config: dict[str, Any], catalogue: Catalogue, checkpoint_dir: Path) -> pd.DataFrame:
    """The splits a run was trained on (its splits.csv; else the config's protocol), one row
    per catalogue image in catalogue order."""
    saved = checkpoint_dir / SPLITS_CSV
    table = read_split_table(saved, patient_disjoint(config)) if saved.is_file() else split_table(config, catalogue)
    return table.set_index("dicom_id").reindex(catalogue.frame["dicom_id"]).reset_index()


def patient_disjoint(config: dict[str, Any]) -> bool:
    """Whether the config's splits keep each patient in one part (see ``gaze.data.patient_splits.keeps_patients_apart``)."""
    return keeps_patients_apart(config["split"], config["ggcam_patient_disjoint"])


def run_names(config: dict[str, Any], table: pd.DataFrame) -> list[tuple[int, str]]:
    """(k, folder name) of each run: ``fold<k>`` for cross-validation, the protocol name otherwise."""
    ks = sorted(int(c.split("_")[1]) for c in table.columns if c.startswith("split_"))
    if config["run_folds"] is not None:
        unknown = sorted(set(config["run_folds"]) - set(ks))
        if unknown:
            raise ConfigError(f"run_folds={config['run_folds']}: no fold {unknown} (folds: {ks})")
        ks = [k for k in ks if k in config["run_folds"]]
    return [(k, run_name(config, k)) for k in ks]


def run_name(config: dict[str, Any], k: int) -> str:
    """Folder of run ``k``: ``fold<k>`` in cross-validation, the protocol's name otherwise."""
    return f"fold{k}" if config["split"] == "cv" else config["split"]


def needs_gaze(config: dict[str, Any], split: str) -> bool:
    """Whether the configured method reads the gaze in ``split`` (its class says)."""
    return model_class(config["model_type"]).needs_gaze(split, config)


def input_hw(config: dict[str, Any]) -> tuple[int, int]:
    """(H, W) of the network input: ``input_hw`` when set, else the square ``input_size``."""
    if config["input_hw"] is not None:
        height, width = config["input_hw"]
        return int(height), int(width)
    return config["input_size"], config["input_size"]


PREPROCESSING = {
    "resize": "squash-resize to the input size, ImageNet normalisation, the cached gaze map resized (HAFC's recipe)",
    "pad_subsample": "GG-CAM's: film zero-padded and every 2nd pixel, max-normalised; gaze blurred as Blur500 (cxr §3.1)",
}


def image_aliases(catalogue: Catalogue) -> dict[str, str]:
    """{image file name: dicom_id}: ratings and assessments may key images either way."""
    return file_name_aliases(catalogue.frame["dicom_id"], catalogue.frame["image_path"])


def human_attention(config: dict[str, Any], catalogue: Catalogue) -> HumanAttention | None:
    """GRADIA's drawn masks (``masks_dir``) and ratings, or None
    (``gaze.data.human_attention.configured_human_attention``)."""
    return configured_human_attention(config, lambda: (list(catalogue.frame["dicom_id"]), image_aliases(catalogue)),
                                      resolve_path)


def assessments(config: dict[str, Any], catalogue: Catalogue) -> dict[str, bool] | None:
    """{dicom_id: judged unreasonable} of the ``assessments`` file (keys: dicom_ids or file names), or None."""
    if config["assessments"] is None:
        return None
    return read_verdicts(resolve_path(config["assessments"]), set(catalogue.frame["dicom_id"]), image_aliases(catalogue))


def build_dataset(config: dict[str, Any], catalogue: Catalogue, rows, split: str, with_gaze: bool,
                  human: HumanAttention | None = None) -> CXREyeDataset:
    """A subset of the catalogue with the configured ``preprocessing`` (augmentation on train for 'resize')."""
    height, width = input_hw(config)
    if config["preprocessing"] == "pad_subsample":
        transform = GGCAMTransform((height, width), sigma=config["gaze_sigma"],
                                   weighted=config["gaze_duration_weighted"])
        return CXREyeDataset(catalogue, rows, transform, with_gaze, human=human)  # full decode: every 2nd stored pixel
    transform = build_resize_transforms(train=split == "train", size=(height, width), augment=config["augment"])
    return CXREyeDataset(catalogue, rows, transform, with_gaze, draft_size=(width, height) if config["jpeg_draft"] else None,
                         human=human)


def split_rows(config: dict[str, Any], table: pd.DataFrame, k: int) -> dict[str, Any]:
    """Catalogue rows of run ``k``'s train, val and test parts; val = test with ``select_on_test``."""
    column = table[f"split_{k}"]
    return {split: column.index[column == ("test" if split == "val" and config["select_on_test"] else split)].to_numpy()
            for split in ("train", "val", "test")}


def build_loaders(config: dict[str, Any], catalogue: Catalogue, table: pd.DataFrame, k: int,
                  human: HumanAttention | None = None, rows: dict[str, Any] | None = None) -> dict[str, DataLoader | None]:
    """train (shuffled), val and test loaders of run ``k`` (of ``rows``, default :func:`split_rows`);
    val is None when ``val_fraction=0`` carves no validation patients (the last epoch is kept)."""
    rows = split_rows(config, table, k) if rows is None else rows
    loaders = {}
    for split, part in rows.items():
        if len(part) == 0 and split == "val" and config["val_fraction"] == 0:
            loaders[split] = None  # no validation patients: the engine keeps the last epoch
            continue
        if len(part) == 0:
            raise ValueError(f"run {k}: the {split} split is empty ({config['split']} protocol)")
        dataset = build_dataset(config, catalogue, part, split, needs_gaze(config, split), human)
        loaders[split] = DataLoader(dataset, batch_size=config["batch_size"], shuffle=split == "train",
                                    num_workers=config["workers"])
    return loaders


def phase_loaders(config: dict[str, Any], catalogue: Catalogue, table: pd.DataFrame, k: int, out_dir: Path
                  ) -> tuple[dict[str, DataLoader | None], dict[str, dict]]:
    """(loaders of every phase of run ``k``, {phase name: loaders} where one differs).

    With ratings, GRADIA's last phase trains on the fold's training images plus its RATED
    validation images (the published ``p2_train``, written to ``<out_dir>/p2_train.csv``:
    dicom_id, label) and selects on the fold's validation images left; rated test images
    are never trained on (``gaze.data.human_attention``).
    """
    human = human_attention(config, catalogue)
    rows = split_rows(config, table, k)
    loaders = build_loaders(config, catalogue, table, k, human, rows)
    phases = model_class(config["model_type"]).phases
    if not phases or human is None or not human.ratings or config["select_on_test"] or len(rows["val"]) == 0:
        return loaders, {}
    ids = catalogue.frame["dicom_id"].to_numpy()
    train, val = phase_two_split(list(rows["train"]), list(rows["val"]), {row for row in rows["val"] if ids[row] in human.ratings})
    if is_main_process():
        write_phase_two_train(catalogue.frame.iloc[train][["dicom_id", "label"]], out_dir)
    return loaders, {phases[-1]: build_loaders(config, catalogue, table, k, human,
                                               {"train": np.asarray(train), "val": np.asarray(val), "test": rows["test"]})}


def fold_checkpoint(checkpoint_dir: Path, k: int, name: str, phases: tuple[str, ...] = ()) -> Path:
    """The checkpoint of run ``k`` named ``name`` (see :func:`run_name`): ours
    (``<name>/ckpt_best.pt``, or ``<name>/<last phase>/ckpt_best.pt`` of a phased method) or
    HAFC's (``<k>_fold/best.pth``; ``best.pth`` outside CV)."""
    candidates = [best_checkpoint(checkpoint_dir / name, phases), checkpoint_dir / f"{k}_fold" / "best.pth"]
    if not name.startswith("fold"):  # one checkpoint for all would be wrong across CV folds
        candidates.append(checkpoint_dir / "best.pth")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{checkpoint_dir}: no checkpoint for {name} (looked for {name}/ckpt_best.pt, {k}_fold/best.pth and "
        "best.pth); train with the same protocol and rseed first")


def build_model(config: dict[str, Any], k: int = 0) -> GazeModel:
    """The configured model for run ``k``: its class maps the config keys (``from_config``),
    then :func:`init_checkpoint` initialises it (``init_from``; KFN: both branches from a GAT).

    Seeded with ``seed + k`` first: a fold starts from the same weights in a fresh run and
    in a resumed one, whichever folds ran before it.
    """
    seed_everything(int(config["seed"]) + k)
    model = model_class(config["model_type"]).from_config(
        config, num_classes=3, input_size=input_hw(config),
        pretrained_path=weights_path(config["pretrain_path"], REPO_ROOT))
    checkpoint = init_checkpoint(config, k)
    if checkpoint is not None:
        model.init_from(checkpoint)
    return model


def init_checkpoint(config: dict[str, Any], k: int) -> Path | None:
    """The checkpoint run ``k`` starts from: ``init_from`` (one for every fold), or fold k's of
    ``pretrained_dir`` (HAFC's name: KFN from each fold's GAT, see :func:`fold_checkpoint`)."""
    if config["init_from"] and config["pretrained_dir"]:
        raise ConfigError(f"init_from={config['init_from']!r} and pretrained_dir={config['pretrained_dir']!r}: set one "
                          "(init_from: one checkpoint for every fold; pretrained_dir: a run with one per fold)")
    if config["init_from"]:
        return resolve_path(config["init_from"])
    if config["pretrained_dir"]:
        return fold_checkpoint(resolve_path(config["pretrained_dir"]), k, run_name(config, k))
    return None


def annotation_source(config: dict[str, Any], split: str, fold: int = 0) -> tuple[CXREyeDataset, GazeModel]:
    """For ``gaze.annotate``: run ``fold``'s ``split`` images (from the run's splits.csv when it
    wrote one) at their own resolution with their gaze maps, and the configured model without
    trained weights."""
    if config["preprocessing"] != "resize":
        raise ValueError(f"preprocessing={config['preprocessing']!r}: the annotation app shows models trained with "
                         "preprocessing='resize'")
    catalogue = build_catalogue(config)
    table = run_split_table(config, catalogue, run_dir(config))
    if f"split_{fold}" not in table:
        raise ValueError(f"fold {fold}: the run's splits have {sorted(c for c in table if c.startswith('split_'))}")
    rows = split_rows(config, table, fold)[split]
    dataset = CXREyeDataset(catalogue, rows, build_full_resolution_transforms(), with_gaze=True)
    return dataset, build_model({**config, "pretrained_dir": None, "init_from": None, "pretrain_path": None}, fold)


def run_dir(config: dict[str, Any]) -> Path:
    """``model_path/model_name``, e.g. runs/cxr/gat_cv_rseed1."""
    return resolve_path(config["model_path"]) / config["model_name"]
