"""Patient-disjoint split tables: hold-out, 5-fold CV, GG-CAM's per-class split (CXR-Eye's protocols).

Three published protocols (specs/cxr.md), each a pure function of the image list and a seed:

- ``holdout_split``: EGD's 80/10/10 patient split (cxr §1.5), also HAFC without ``--crossval``.
- ``cv_folds`` (+ ``carve_validation``): HAFC's 5-fold CV by patient (cxr §2.2). The papers
  select the best epoch on the test fold; by default we carve a validation set out of each
  fold's training patients instead and keep the papers' protocol as a loudly labelled option
  (cxr §6.2).
- ``ggcam_split``: GG-CAM's per-class 70/10/20 in CSV order (cxr §3.1), made patient-disjoint.

``build_split_table`` turns one of them into a table with one ``split_<k>`` column per run
(values ``train`` / ``val`` / ``test`` / ``""`` = unused); ``write_split_table`` and
``read_split_table`` store it as CSV. ``python cxr/prepare.py`` writes the table of a config.
"""

from __future__ import annotations

import math
import os
import random
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from gaze.atomic import atomic_path

#: The three parts of a run, in reporting order.
SPLITS = ("train", "val", "test")
#: Split value of an image a run does not use (GG-CAM's ``fraction`` < 1).
UNUSED = ""
SPLIT_PROTOCOLS = ("cv", "holdout", "ggcam")
#: Columns every split table starts with (one row per image).
ID_COLUMNS = ("dicom_id", "patient_id", "label")
#: Default patient-shuffle seeds: HAFC's paper runs used ``--rseed 1`` (cxr §2.2), EGD's
#: ``Experiments/`` default to 42 (cxr §1.5).
DEFAULT_RSEED = {"cv": 1, "holdout": 42}
#: Fractions of GG-CAM's per-class split (cxr §3.1): train up to 70 %, val up to 80 %.
GGCAM_TRAIN_END, GGCAM_VAL_END = 0.7, 0.8
#: EGD hold-out: the first 80 % of the shuffled patients train (cxr §1.5).
HOLDOUT_TRAIN_FRACTION = 0.8

_SPLIT_COLUMN = re.compile(r"split_(\d+)")


# ----------------------------------------------------------------------------- patients
def _patient_codes(patient_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..P-1 per image (in order of first appearance) and the P unique patient ids."""
    ids = np.asarray(patient_ids, dtype=object)
    if ids.ndim != 1:
        raise ValueError(f"patient_ids must be one-dimensional, got shape {ids.shape}")
    codes, uniques = pd.factorize(ids, sort=False)
    if (codes < 0).any():
        raise ValueError(f"patient_ids: image {int(np.flatnonzero(codes < 0)[0])} has no patient id")
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _shuffled_positions(num_patients: int, rseed: int) -> np.ndarray:
    """Position of every patient code in the shuffled patient list.

    ``random.shuffle`` draws depend only on the list length, so shuffling the codes gives the
    same permutation as shuffling the ids themselves (ints or strings alike).
    """
    order = list(range(num_patients))
    random.Random(rseed).shuffle(order)
    positions = np.empty(num_patients, dtype=np.int64)
    positions[order] = np.arange(num_patients)
    return positions


def patient_order(patient_ids: Sequence[str] | np.ndarray, rseed: int) -> list[str]:
    """The unique patient ids (order of first appearance), shuffled as EGD and HAFC do.

    The permutation equals the published ``random.seed(rseed); random.shuffle(patients)``
    (cxr §1.5, §2.2) with ``patients`` the unique ids in order of first appearance in
    ``master_sheet.csv`` (pandas ``unique()``). Our reading: the shuffle is the first draw
    after seeding. The ids are returned as given (no conversion to str).

    Args:
        patient_ids: (N,) patient id of every image; repeats allowed.
        rseed: seed of the shuffle.

    Returns:
        The P unique ids in shuffled order.
    """
    _, uniques = _patient_codes(patient_ids)
    order = list(range(len(uniques)))
    random.Random(rseed).shuffle(order)
    return [uniques[i] for i in order]


# ----------------------------------------------------------------------------- protocols
def holdout_split(patient_ids: Sequence[str] | np.ndarray, rseed: int = 42) -> np.ndarray:
    """EGD's patient hold-out split: 80 % train, the rest halved into val (dev) and test.

    cxr §1.5: shuffle the unique patients (``patient_order``), the first 80 % train; of the
    ``R`` remaining, ``round(R / 2)`` (Python's round, half to even) go to val and the rest to
    test. Our readings: the 80 % is ``int(0.8 * P)`` (the spec gives no rounding; for EGD's
    1,038 patients int and round agree: 830), and val (EGD's "dev") takes the part right after
    train in the shuffled list, test the end. 1,038 patients give 830 / 104 / 104.

    Args:
        patient_ids: (N,) patient id of every image.
        rseed: seed of the patient shuffle (EGD default 42; HAFC hold-out uses ``--rseed``).

    Returns:
        (N,) str array of ``"train"`` / ``"val"`` / ``"test"`` per image.
    """
    codes, uniques = _patient_codes(patient_ids)
    num_patients = len(uniques)
    num_train = int(HOLDOUT_TRAIN_FRACTION * num_patients)
    num_val = round((num_patients - num_train) / 2)
    positions = _shuffled_positions(num_patients, rseed)[codes]
    split = np.full(len(codes), "test", dtype=object)
    split[positions < num_train + num_val] = "val"
    split[positions < num_train] = "train"
    return split.astype(str)


def cv_folds(patient_ids: Sequence[str] | np.ndarray, n_folds: int = 5, rseed: int = 1) -> np.ndarray:
    """HAFC's k-fold CV by patient: the test fold of every image.

    cxr §2.2: shuffle the unique patients (``patient_order``) and cut the list into
    consecutive chunks of ``round(P / n_folds) + 1`` patients; chunk k is fold k's test set,
    the last chunk is smaller. 1,038 patients give 209 × 4 + 202. The chunk size always covers
    all patients in ``n_folds`` chunks, but small P can leave trailing chunks empty (P = 10,
    5 folds: 3, 3, 3, 1, 0): that is an error rather than a silent 4-fold CV.

    Args:
        patient_ids: (N,) patient id of every image.
        n_folds: number of folds (HAFC: 5).
        rseed: seed of the patient shuffle (HAFC paper runs: 1).

    Returns:
        (N,) int64 array, the fold (0..n_folds-1) in which each image is a test image.

    Raises:
        ValueError: fewer than 2 folds, fewer patients than folds, or an empty fold.
    """
    if n_folds < 2:
        raise ValueError(f"cv_folds: n_folds must be >= 2, got {n_folds}")
    codes, uniques = _patient_codes(patient_ids)
    num_patients = len(uniques)
    if num_patients < n_folds:
        raise ValueError(f"cv_folds: {num_patients} patient(s) cannot fill {n_folds} folds")
    chunk = round(num_patients / n_folds) + 1
    num_chunks = math.ceil(num_patients / chunk)
    if num_chunks < n_folds:
        sizes = [min(chunk, max(0, num_patients - k * chunk)) for k in range(n_folds)]
        raise ValueError(
            f"cv_folds: {num_patients} patients in chunks of round({num_patients}/{n_folds})+1 = "
            f"{chunk} give fold sizes {sizes}; fold {num_chunks} would be empty (use fewer folds)"
        )
    return _shuffled_positions(num_patients, rseed)[codes] // chunk


def carve_validation(
    patient_ids: Sequence[str] | np.ndarray,
    labels: Sequence | np.ndarray,
    train_mask: Sequence[bool] | np.ndarray,
    fraction: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Move a patient-level, label-stratified ``fraction`` of the training patients to validation.

    Our addition, not in any paper (cxr §2.2: HAFC's CV has no validation set; §6.2: keep an
    honest train/val/test protocol). The training patients (those with an image in
    ``train_mask``) are labelled by their first training image; sklearn's
    ``train_test_split(test_size=ceil(fraction * P_train), stratify=..., random_state=seed)``
    picks the validation patients. It stratifies when every class has >= 2 training patients
    and both parts can hold one patient per class; otherwise it warns and splits
    unstratified. Images outside ``train_mask`` are never marked.

    Args:
        patient_ids: (N,) patient id of every image.
        labels: (N,) class label of every image.
        train_mask: (N,) bool, True for the training images to carve from.
        fraction: fraction of the training patients for validation, in [0, 1); 0 = none.
        seed: ``random_state`` of the split.

    Returns:
        (N,) bool array, True for the images of the validation patients.
    """
    labels = np.asarray(labels)
    train_mask = np.asarray(train_mask, dtype=bool)
    codes, _ = _patient_codes(patient_ids)
    if not len(codes) == len(labels) == len(train_mask):
        raise ValueError(
            f"carve_validation: {len(codes)} patient ids, {len(labels)} labels and "
            f"{len(train_mask)} mask entries; expected one of each per image"
        )
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"carve_validation: fraction must be in [0, 1), got {fraction}")
    is_val = np.zeros(len(codes), dtype=bool)
    if fraction == 0.0 or not train_mask.any():
        return is_val
    train_codes, train_patients = pd.factorize(codes[train_mask], sort=False)
    first_image = np.unique(train_codes, return_index=True)[1]  # codes are 0..P-1 in order
    patient_labels = labels[train_mask][first_image]
    num_patients = len(train_patients)
    num_val = math.ceil(fraction * num_patients)
    if num_val >= num_patients:
        raise ValueError(
            f"carve_validation: fraction={fraction} of {num_patients} training patient(s) leaves "
            "no training patient (lower the fraction)"
        )
    stratify = _stratify_or_warn(patient_labels, num_val, num_patients - num_val)
    from sklearn.model_selection import train_test_split

    _, val_codes = train_test_split(
        np.arange(num_patients), test_size=num_val, stratify=stratify, random_state=seed
    )
    is_val[train_mask] = np.isin(train_codes, val_codes)
    return is_val


def _stratify_or_warn(patient_labels: np.ndarray, num_val: int, num_train: int) -> np.ndarray | None:
    """The labels to stratify by, or None (with a warning) when sklearn cannot stratify them."""
    classes, counts = np.unique(patient_labels, return_counts=True)
    if counts.min() < 2:
        reason = f"class(es) {classes[counts < 2].tolist()} have a single training patient"
    elif min(num_val, num_train) < len(classes):
        reason = (
            f"{num_val} validation / {num_train} training patients cannot hold all "
            f"{len(classes)} classes"
        )
    else:
        return patient_labels
    warnings.warn(f"carve_validation: {reason}; splitting unstratified", stacklevel=3)
    return None


def ggcam_split(
    labels: Sequence | np.ndarray,
    fraction: float = 1.0,
    seed: int = 0,
    patient_ids: Sequence[str] | np.ndarray | None = None,
) -> np.ndarray:
    """GG-CAM's per-class 70/10/20 split in CSV order, optionally made patient-disjoint.

    cxr §3.1: for each class (no shuffle), the first ``round(0.7 * n)`` images train, the next
    ones up to ``round(0.8 * n)`` val, the rest test, rounded as the published code does
    (Python's round: n = 90 gives 63 train, n = 5 gives 4 train and no val). Each split is then the concatenation of its per-class
    parts, and keeps the rows ``DataFrame.sample(frac=fraction, random_state=seed)`` keeps;
    at fraction 1.0 the seed only reorders, so membership is seed-free.

    Our readings: classes are taken in sorted order (0 Normal, 1 CHF, 2 pneumonia in GG-CAM's
    ``Y`` coding), which fixes the row order ``sample`` sees. The published split is not
    patient-aware; with ``patient_ids`` every image follows the split of its patient's first
    image in CSV order (our fix, so train/val/test are patient-disjoint), before sampling.

    Args:
        labels: (N,) class label of every image, in CSV order.
        fraction: fraction of each split kept, in (0, 1]; the rest is ``""`` (unused). The
            published ``data_processing.py`` ships 0.01 by mistake (cxr §3.1); use 1.0.
        seed: ``random_state`` of the sample (GG-CAM: 0, 1 or 2).
        patient_ids: (N,) patient id of every image, or None for the published behaviour.

    Returns:
        (N,) str array of ``"train"`` / ``"val"`` / ``"test"`` / ``""`` per image.
    """
    labels = np.asarray(labels)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"ggcam_split: fraction must be in (0, 1], got {fraction}")
    if fraction < 1.0:
        warnings.warn(
            f"ggcam_split: fraction={fraction} keeps only part of each split; the published "
            "data_processing.py ships fraction = 0.01 by mistake (1 % of the data, cxr spec "
            "§3.1), use 1.0 to reproduce the paper",
            stacklevel=2,
        )
    classes, class_rank = np.unique(labels, return_inverse=True)
    split = np.full(len(labels), UNUSED, dtype=object)
    for rank in range(len(classes)):
        rows = np.flatnonzero(class_rank == rank)
        train_end, val_end = round(GGCAM_TRAIN_END * len(rows)), round(GGCAM_VAL_END * len(rows))
        split[rows[:train_end]] = "train"
        split[rows[train_end:val_end]] = "val"
        split[rows[val_end:]] = "test"
    if patient_ids is not None:
        codes, _ = _patient_codes(patient_ids)
        if len(codes) != len(labels):
            raise ValueError(f"ggcam_split: {len(codes)} patient ids for {len(labels)} labels")
        first_image = np.unique(codes, return_index=True)[1]
        split = split[first_image][codes]
    kept = np.full(len(labels), UNUSED, dtype=object)
    for name in SPLITS:
        rows = np.flatnonzero(split == name)
        rows = rows[np.argsort(class_rank[rows], kind="stable")]  # per-class parts concatenated
        kept[pd.Series(rows).sample(frac=fraction, random_state=seed).to_numpy()] = name
    return kept.astype(str)


# ----------------------------------------------------------------------------- split table
def keeps_patients_apart(protocol: str, ggcam_patient_disjoint: bool = True) -> bool:
    """Whether a protocol's splits keep each patient in one part: all but GG-CAM's published per-image split."""
    return protocol != "ggcam" or ggcam_patient_disjoint


def build_split_table(
    frame: pd.DataFrame,
    protocol: str,
    *,
    n_folds: int = 5,
    rseed: int | None = None,
    val_fraction: float = 0.1,
    val_seed: int = 0,
    ggcam_fraction: float = 1.0,
    ggcam_seed: int = 0,
    select_on_test: bool = False,
    ggcam_patient_disjoint: bool = True,
) -> pd.DataFrame:
    """One protocol's splits as a table: one ``split_<k>`` column per run.

    - ``cv``: run k = fold k (``cv_folds``) as test, the other folds train, then
      ``carve_validation(fraction=val_fraction, seed=val_seed + k)`` from the training
      patients. A ``fold`` column holds each image's test fold.
      ``select_on_test=True`` is the papers' protocol instead (cxr §2.2, §2.5): no validation,
      the trainer selects the best epoch on the test fold (optimistic; warned about).
    - ``holdout``: ``holdout_split`` (its own val; ``val_fraction`` unused), one run.
    - ``ggcam``: ``ggcam_split`` with the patient ids (patient-disjoint; ``ggcam_patient_disjoint``), one run.

    Args:
        frame: one row per image with columns ``dicom_id``, ``patient_id``, ``label``.
        protocol: ``"cv"``, ``"holdout"`` or ``"ggcam"``.
        n_folds: CV folds.
        rseed: patient-shuffle seed of cv / holdout; None = the published default
            (cv 1, HAFC paper runs; holdout 42, EGD). Unused by ggcam.
        val_fraction, val_seed: validation carving of the CV runs.
        ggcam_fraction, ggcam_seed: ``fraction`` and ``seed`` of ``ggcam_split``.
        ggcam_patient_disjoint: give ``ggcam_split`` the patient ids (our fix); False splits
            the images in CSV order regardless of patients, as published.
        select_on_test: CV only; carve no validation set (the trainer validates on the test
            fold). Recorded in ``table.attrs["select_on_test"]``.

    Returns:
        DataFrame with ``dicom_id``, ``patient_id`` (str), ``label``, [``fold``],
        ``split_0`` .. ``split_<K-1>``; ``attrs`` holds ``protocol`` and ``select_on_test``.
    """
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {', '.join(SPLIT_PROTOCOLS)}")
    if select_on_test and protocol != "cv":
        raise ValueError(
            f"select_on_test applies to the cv protocol only; {protocol!r} has its own validation split"
        )
    table = _id_table(frame)
    patients, labels = table["patient_id"].to_numpy(), table["label"].to_numpy()
    if rseed is None and protocol in DEFAULT_RSEED:
        rseed = DEFAULT_RSEED[protocol]
    if protocol == "cv":
        folds = cv_folds(patients, n_folds, rseed)
        table["fold"] = folds
        if select_on_test:
            warnings.warn(
                "select_on_test=True: no validation set is carved and the best epoch will be chosen "
                "on the TEST fold, which is optimistic (the HAFC/EGD papers' protocol, cxr spec "
                "§2.2/§2.5); report these scores as test-selected",
                UserWarning,
                stacklevel=2,
            )
        for k in range(n_folds):
            split = np.where(folds == k, "test", "train").astype(object)
            if not select_on_test:
                split[carve_validation(patients, labels, folds != k, val_fraction, val_seed + k)] = "val"
            table[f"split_{k}"] = split.astype(str)
    elif protocol == "holdout":
        table["split_0"] = holdout_split(patients, rseed)
    else:
        table["split_0"] = ggcam_split(labels, ggcam_fraction, ggcam_seed,
                                       patient_ids=patients if ggcam_patient_disjoint else None)
    table.attrs.update(protocol=protocol, select_on_test=bool(select_on_test))
    if keeps_patients_apart(protocol, ggcam_patient_disjoint):
        check_patient_disjoint(table)
    return table


def _id_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The id columns of ``frame`` with str ids; checks one row per image."""
    missing = [column for column in ID_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"split frame: missing column(s) {missing}; expected {list(ID_COLUMNS)}")
    table = pd.DataFrame(
        {
            "dicom_id": frame["dicom_id"].astype(str).to_numpy(),
            "patient_id": frame["patient_id"].astype(str).to_numpy(),
            "label": frame["label"].to_numpy(),
        }
    )
    duplicated = table["dicom_id"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"split frame: dicom_id {table['dicom_id'][duplicated].iloc[0]!r} appears more than once; "
            "expected one row per image"
        )
    return table


def split_columns(table: pd.DataFrame) -> list[str]:
    """The ``split_<k>`` columns of a split table, ordered by k."""
    found = [(int(m.group(1)), c) for c in table.columns if (m := _SPLIT_COLUMN.fullmatch(str(c)))]
    return [column for _, column in sorted(found)]


def check_patient_disjoint(table: pd.DataFrame) -> None:
    """Raise ValueError if a patient is in two of train/val/test within any ``split_<k>`` column.

    Unused images (``""``) do not count.
    """
    for column in split_columns(table):
        used = table.loc[table[column].isin(SPLITS), ["patient_id", column]]
        counts = used.groupby("patient_id")[column].nunique()
        mixed = counts.index[counts > 1]
        if len(mixed):
            patient = mixed[0]
            found = set(used.loc[used["patient_id"] == patient, column])
            raise ValueError(
                f"{column}: patient {patient} is in {' and '.join(s for s in SPLITS if s in found)} "
                f"({len(mixed)} patient(s) in more than one split); splits must be patient-disjoint"
            )


def describe_splits(table: pd.DataFrame, class_names: Sequence[str] | None = None) -> str:
    """Per run: images, patients and per-class image counts of train, val and test.

    An ``unused`` row is added for runs that leave images out. Classes are the table's sorted
    labels, one column each, headed by ``class_names[label]`` when given.
    """
    classes = sorted(pd.unique(table["label"]))
    blocks = []
    for column in split_columns(table):
        parts = list(SPLITS) + ([UNUSED] if (table[column] == UNUSED).any() else [])
        rows = {}
        for part in parts:
            chosen = table[table[column] == part]
            per_class = chosen["label"].value_counts()
            rows[part or "unused"] = [len(chosen), chosen["patient_id"].nunique()] + [
                int(per_class.get(c, 0)) for c in classes
            ]
        summary = pd.DataFrame.from_dict(
            rows, orient="index",
            columns=["images", "patients"] + [str(class_names[c] if class_names else c) for c in classes]
        )
        blocks.append(f"{column}\n{summary.to_string()}")
    return "\n\n".join(blocks)


def write_split_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a split table as CSV, atomically (temporary file + rename). Returns the path."""
    path = Path(path)
    _check_table(table, str(path))
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)
    return path


def read_split_table(path: str | os.PathLike, patient_disjoint: bool = True) -> pd.DataFrame:
    """Read a split table written by ``write_split_table``; ids and splits as str.

    Args:
        path: the CSV file.
        patient_disjoint: require every patient in one split per run (False: GG-CAM's
            published per-image split).

    Raises:
        ValueError: naming the file (and line) for missing columns, split columns not numbered
            0..K-1, unknown split values, repeated dicom_ids or a patient in two splits.
    """
    path = Path(path)
    header = pd.read_csv(path, nrows=0).columns
    text_columns = [c for c in header if c in ("dicom_id", "patient_id") or _SPLIT_COLUMN.fullmatch(c)]
    table = pd.read_csv(path, dtype={c: str for c in text_columns}, keep_default_na=False)
    _check_table(table, str(path), patient_disjoint)
    return table


def _check_table(table: pd.DataFrame, source: str, patient_disjoint: bool = True) -> None:
    """Check the columns and values of a split table; errors name ``source`` and the CSV line."""
    missing = [column for column in ID_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; a split table has {list(ID_COLUMNS)}")
    columns = split_columns(table)
    if columns != [f"split_{k}" for k in range(len(columns))] or not columns:
        raise ValueError(f"{source}: expected columns split_0 .. split_<K-1>, found {columns or 'none'}")
    for column in columns:
        bad = ~table[column].isin(SPLITS + (UNUSED,))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{source}:{row + 2}: {column} = {table[column].iloc[row]!r}; expected one of "
                f"{list(SPLITS)} or '' (unused)"
            )
    duplicated = table["dicom_id"].duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise ValueError(f"{source}:{row + 2}: dicom_id {table['dicom_id'].iloc[row]!r} repeated")
    if not patient_disjoint:
        return
    try:
        check_patient_disjoint(table)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
