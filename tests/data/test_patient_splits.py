"""gaze/data/patient_splits.py: hold-out, 5-fold CV and GG-CAM splits, all patient-disjoint."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pandas as pd
import pytest

from gaze.data.patient_splits import (
    build_split_table,
    carve_validation,
    check_patient_disjoint,
    cv_folds,
    describe_splits,
    ggcam_split,
    holdout_split,
    patient_order,
    read_split_table,
    write_split_table,
)

NUM_PATIENTS, NUM_DOUBLES = 1038, 45  # EGD-CXR: 1,083 images of 1,038 patients (cxr §1)


def _make_frame(seed: int = 0) -> pd.DataFrame:
    """1,083 images: 45 patients with two images (same label), rows shuffled, 3 labels."""
    rng = np.random.default_rng(seed)
    patients = [f"1{p:07d}" for p in rng.choice(10**7, NUM_PATIENTS, replace=False)]
    labels = rng.choice(3, size=NUM_PATIENTS, p=[0.35, 0.4, 0.25])
    doubles = rng.choice(NUM_PATIENTS, NUM_DOUBLES, replace=False)
    frame = pd.DataFrame(
        {
            "patient_id": patients + [patients[i] for i in doubles],
            "label": np.concatenate([labels, labels[doubles]]),
        }
    )
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame.insert(0, "dicom_id", [f"dcm{i:05d}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _make_frame()


def _published_shuffle(patient_ids, rseed: int) -> list:
    """EGD/HAFC: ``random.seed(rseed); random.shuffle(unique patients)`` (global state restored)."""
    state = random.getstate()
    try:
        patients = list(pd.unique(pd.Series(patient_ids)))
        random.seed(rseed)
        random.shuffle(patients)
    finally:
        random.setstate(state)
    return patients


def _split_patients(table: pd.DataFrame, column: str) -> dict[str, set]:
    return {s: set(table.loc[table[column] == s, "patient_id"]) for s in ("train", "val", "test")}


def _assert_disjoint(table: pd.DataFrame) -> None:
    """Independent check: no patient in two of train/val/test in any split column."""
    columns = [c for c in table.columns if c.startswith("split_")]
    assert columns
    for column in columns:
        parts = _split_patients(table, column)
        assert not parts["train"] & parts["val"]
        assert not parts["train"] & parts["test"]
        assert not parts["val"] & parts["test"]
    check_patient_disjoint(table)


# ----------------------------------------------------------------------------- patient order
@pytest.mark.parametrize("rseed", [1, 42, 7])
def test_patient_order_matches_published_shuffle(frame, rseed):
    expected = _published_shuffle(frame["patient_id"], rseed)
    assert patient_order(frame["patient_id"].tolist(), rseed) == expected


def test_patient_order_keeps_id_type():
    ids = [5, 3, 5, 9, 1]
    assert patient_order(ids, 1) == _published_shuffle(ids, 1)


# ----------------------------------------------------------------------------- hold-out
def test_holdout_membership_matches_published(frame):
    split = holdout_split(frame["patient_id"], rseed=42)
    shuffled = _published_shuffle(frame["patient_id"], 42)
    # 1038 patients: int(0.8 * 1038) = 830 train; 208 left, round(104.0) = 104 val, 104 test
    expected = {"train": set(shuffled[:830]), "val": set(shuffled[830:934]), "test": set(shuffled[934:])}
    table = frame.assign(split_0=split)
    assert _split_patients(table, "split_0") == expected
    assert [len(expected[s]) for s in ("train", "val", "test")] == [830, 104, 104]


def test_holdout_rounding_small():
    # 13 patients: int(10.4) = 10 train, 3 left: round(1.5) = 2 val, 1 test
    split = holdout_split([f"p{i}" for i in range(13)], rseed=0)
    assert [int((split == s).sum()) for s in ("train", "val", "test")] == [10, 2, 1]


# ----------------------------------------------------------------------------- CV
def test_cv_fold_sizes_and_membership(frame):
    folds = cv_folds(frame["patient_id"], n_folds=5, rseed=1)
    per_patient = pd.Series(folds).groupby(frame["patient_id"].to_numpy()).nunique()
    assert (per_patient == 1).all()  # a patient's images share one fold
    shuffled = _published_shuffle(frame["patient_id"], 1)
    chunk = round(NUM_PATIENTS / 5) + 1  # HAFC §2.2
    assert chunk == 209
    expected = {p: i // chunk for i, p in enumerate(shuffled)}
    assert folds.tolist() == [expected[p] for p in frame["patient_id"]]
    sizes = pd.Series(expected).value_counts().sort_index().tolist()
    assert sizes == [209, 209, 209, 209, 202]


def test_cv_every_image_has_one_test_fold(frame):
    table = build_split_table(frame, "cv", rseed=1)
    splits = table[[f"split_{k}" for k in range(5)]].to_numpy()
    assert ((splits == "test").sum(axis=1) == 1).all()
    assert ((splits == "test").argmax(axis=1) == table["fold"].to_numpy()).all()
    assert set(np.unique(splits)) == {"train", "val", "test"}


def test_cv_folds_errors():
    with pytest.raises(ValueError, match="3 patient"):
        cv_folds(["a", "b", "c", "a"], n_folds=5)
    with pytest.raises(ValueError, match="empty"):  # 10 patients, chunks of 3: 3, 3, 3, 1, 0
        cv_folds([str(i) for i in range(10)], n_folds=5)
    with pytest.raises(ValueError, match="n_folds"):
        cv_folds(["a", "b"], n_folds=1)


# ----------------------------------------------------------------------------- validation carving
def test_cv_validation_is_stratified_fraction_of_training_patients(frame):
    table = build_split_table(frame, "cv", rseed=1, val_fraction=0.1, val_seed=0)
    patient_label = frame.groupby("patient_id")["label"].first()
    for k in range(5):
        column = f"split_{k}"
        parts = _split_patients(table, column)
        training = parts["train"] | parts["val"]
        assert training == set(table.loc[table["fold"] != k, "patient_id"])
        assert len(parts["val"]) == math.ceil(0.1 * len(training))
        # never takes test images
        assert (table.loc[table["fold"] == k, column] == "test").all()
        val_labels = patient_label[sorted(parts["val"])]
        train_labels = patient_label[sorted(training)]
        assert set(val_labels) == {0, 1, 2}
        proportions = val_labels.value_counts(normalize=True) - train_labels.value_counts(normalize=True)
        assert proportions.abs().max() < 0.02


def test_carve_validation_direct():
    ids = np.array(["a", "b", "c", "d", "e", "f", "g", "h", "a", "x", "y"])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0])
    train = np.array([True] * 9 + [False, False])
    assert not carve_validation(ids, labels, train, fraction=0.0).any()
    val = carve_validation(ids, labels, train, fraction=0.25, seed=3)
    assert not (val & ~train).any()
    assert val[0] == val[8]  # patient a: both images move together
    val_patients = set(ids[val])
    assert len(val_patients) == 2 and {labels[list(ids).index(p)] for p in val_patients} == {0, 1}
    np.testing.assert_array_equal(val, carve_validation(ids, labels, train, fraction=0.25, seed=3))


def test_carve_validation_unstratified_when_a_class_has_one_patient():
    ids = [f"p{i}" for i in range(10)]
    labels = [0] * 9 + [1]
    with pytest.warns(UserWarning, match="unstratified"):
        val = carve_validation(ids, labels, np.ones(10, bool), fraction=0.2, seed=0)
    assert val.sum() == 2


# ----------------------------------------------------------------------------- GG-CAM
#: 10 images of class 0 and 10 of class 1 interleaved, then 5 of class 2 (CSV order).
GGCAM_LABELS = [0, 1] * 10 + [2] * 5
#: By hand: class 0 rows 0,2,..,18 -> 7 train (0..12), val 14, test 16,18; class 1 likewise
#: shifted by one; class 2 rows 20..24 -> round(3.5) = 4 train, round(4.0) = 4 -> no val, 1 test.
GGCAM_EXPECTED = ["train"] * 14 + ["val"] * 2 + ["test"] * 4 + ["train"] * 4 + ["test"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ggcam_split_by_hand(seed):
    assert ggcam_split(GGCAM_LABELS, fraction=1.0, seed=seed).tolist() == GGCAM_EXPECTED


def _published_ggcam_sample(labels, fraction, seed) -> dict[str, set]:
    """GG-CAM data_processing.py: per-class slices concatenated, then .sample(frac, random_state)."""
    data = pd.DataFrame({"Y": labels})
    parts = {"train": [], "val": [], "test": []}
    for y in sorted(set(labels)):
        rows = data[data["Y"] == y]
        n = len(rows)
        parts["train"].append(rows[: round(n * 0.7)])
        parts["val"].append(rows[round(n * 0.7) : round(n * 0.8)])
        parts["test"].append(rows[round(n * 0.8) :])
    return {s: set(pd.concat(p).sample(frac=fraction, random_state=seed).index) for s, p in parts.items()}


def test_ggcam_split_rounds_like_the_published_code():
    # 90 images of one class: 0.7 * 90 = 62.99999999999999, which the published code rounds to 63.
    split = ggcam_split([1] * 90)
    assert ((split == "train").sum(), (split == "val").sum(), (split == "test").sum()) == (63, 9, 18)


def test_ggcam_fraction_keeps_half_of_each_split_like_pandas(frame):
    labels = frame["label"].to_numpy()
    full = ggcam_split(labels)
    with pytest.warns(UserWarning, match="0.01"):
        half = ggcam_split(labels, fraction=0.5, seed=1)
    for name in ("train", "val", "test"):
        assert (half == name).sum() == round(0.5 * (full == name).sum())
        assert set(np.flatnonzero(half == name)) <= set(np.flatnonzero(full == name))
    expected = _published_ggcam_sample(labels, 0.5, 1)
    assert {s: set(np.flatnonzero(half == s)) for s in expected} == expected
    assert set(half) == {"train", "val", "test", ""}


def test_ggcam_patient_ids_follow_first_image():
    labels = [0] * 10 + [1] * 10
    # by position: class 0 -> train 0..6, val 7, test 8, 9; class 1 -> train 10..16, val 17, test 18, 19
    ids = [f"p{i}" for i in range(20)]
    ids[9] = "p0"  # second image (test by position) of a train patient -> train
    ids[10] = "p8"  # second image (train by position) of a test patient -> test
    published = ggcam_split(labels)
    assert published[9] == "test" and published[10] == "train"
    fixed = ggcam_split(labels, patient_ids=ids)
    assert fixed[9] == "train" and fixed[10] == "test"
    assert (np.delete(fixed, [9, 10]) == np.delete(published, [9, 10])).all()


# ----------------------------------------------------------------------------- split tables
@pytest.mark.parametrize(
    "protocol, kwargs",
    [
        ("cv", {}),
        ("cv", {"select_on_test": True}),
        ("holdout", {}),
        ("ggcam", {}),
        ("ggcam", {"ggcam_fraction": 0.3}),
    ],
)
def test_every_protocol_is_patient_disjoint(frame, protocol, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = build_split_table(frame, protocol, **kwargs)
    assert table["dicom_id"].tolist() == frame["dicom_id"].tolist()
    assert table.attrs["protocol"] == protocol
    _assert_disjoint(table)


def test_check_patient_disjoint_raises_on_bad_table():
    table = pd.DataFrame(
        {
            "dicom_id": ["a", "b", "c", "d"],
            "patient_id": ["p1", "p2", "p2", "p3"],
            "label": [0, 1, 1, 2],
            "split_0": ["train", "train", "test", ""],
            "split_1": ["train", "val", "val", "test"],
        }
    )
    with pytest.raises(ValueError, match=r"split_0: patient p2 is in train and test"):
        check_patient_disjoint(table)
    check_patient_disjoint(table.drop(columns="split_0"))


@pytest.mark.parametrize("protocol", ["cv", "holdout"])
def test_same_seed_same_table_other_seed_differs(frame, protocol):
    first = build_split_table(frame, protocol, rseed=3)
    pd.testing.assert_frame_equal(first, build_split_table(frame, protocol, rseed=3))
    assert not first.equals(build_split_table(frame, protocol, rseed=4))


def test_holdout_default_seed_is_egd_42(frame):
    table = build_split_table(frame, "holdout")
    assert table["split_0"].tolist() == holdout_split(frame["patient_id"], rseed=42).tolist()


def test_val_seed_changes_only_validation(frame):
    first = build_split_table(frame, "cv", val_seed=0)
    second = build_split_table(frame, "cv", val_seed=10)
    assert (first["fold"] == second["fold"]).all()
    assert not first["split_0"].equals(second["split_0"])
    assert ((first["split_0"] == "test") == (second["split_0"] == "test")).all()


def test_select_on_test_has_no_validation_and_warns(frame):
    with pytest.warns(UserWarning, match="TEST fold"):
        table = build_split_table(frame, "cv", select_on_test=True)
    splits = table[[f"split_{k}" for k in range(5)]].to_numpy()
    assert set(np.unique(splits)) == {"train", "test"}
    assert table.attrs["select_on_test"] is True
    assert build_split_table(frame, "cv").attrs["select_on_test"] is False
    with pytest.raises(ValueError, match="cv protocol only"):
        build_split_table(frame, "holdout", select_on_test=True)


def test_unknown_protocol_lists_choices(frame):
    with pytest.raises(ValueError, match="cv, holdout, ggcam"):
        build_split_table(frame, "kfold")


def test_duplicate_dicom_id_rejected(frame):
    with pytest.raises(ValueError, match="dcm00000"):
        build_split_table(pd.concat([frame, frame.iloc[:1]]), "holdout")


def test_describe_splits(frame):
    text = describe_splits(build_split_table(frame, "holdout"))
    lines = text.splitlines()
    assert lines[0] == "split_0"
    assert lines[1].split() == ["images", "patients", "0", "1", "2"]
    train = lines[2].split()
    assert train[0] == "train" and int(train[2]) == 830 and int(train[1]) == sum(map(int, train[3:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = describe_splits(build_split_table(frame, "ggcam", ggcam_fraction=0.5))
    assert text.splitlines()[-1].split()[0] == "unused"


@pytest.mark.parametrize("protocol", ["cv", "ggcam"])
def test_write_read_round_trip(frame, tmp_path, protocol):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = build_split_table(frame, protocol, ggcam_fraction=0.5)
    path = write_split_table(table, tmp_path / "sub" / "splits.csv")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    back = read_split_table(path)
    pd.testing.assert_frame_equal(back, table)


def test_read_split_table_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("dicom_id,patient_id,label,split_0\na,p1,0,train\nb,p2,1,dev\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: split_0 = 'dev'"):
        read_split_table(path)
    path.write_text("dicom_id,label,split_0\na,0,train\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) \['patient_id'\]"):
        read_split_table(path)
    path.write_text("dicom_id,patient_id,label,split_1\na,p1,0,train\n")
    with pytest.raises(ValueError, match=r"bad\.csv: expected columns split_0"):
        read_split_table(path)
    path.write_text("dicom_id,patient_id,label,split_0\na,p1,0,train\nb,p1,0,test\n")
    with pytest.raises(ValueError, match=r"bad\.csv: split_0: patient p1"):
        read_split_table(path)
    path.write_text("dicom_id,patient_id,label,split_0\n007,NA,0,\n")
    table = read_split_table(path)  # ids stay literal strings, '' stays unused
    assert table.iloc[0].tolist() == ["007", "NA", 0, ""]
