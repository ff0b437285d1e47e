"""Tests for gaze/attention/agreement.py: leave-one-run-out pairing on synthetic run files, checked
against an independent numpy computation, and the CLI on a few real CUB-GHA images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gaze import __main__ as gaze_cli
from gaze.attention.agreement import (
    PREDICTORS,
    fit_centre_bias,
    fixated_pixels,
    leave_one_run_out,
    load_images,
    main,
    evaluate_agreement,
)
from gaze.attention.fixations import FixationRecord

SIGMA = 3.0
#: run -> image id -> (width, height, lines of (x, y, ms) triples). Image 1 is seen by three
#: runs (run 1 twice: a repeat viewing), image 2 by runs 1 and 3, image 3 by run 2 only
#: (no pair), image 4 by runs 2 and 3 where run 3's only fixation is under 100 ms.
RUNS: dict[int, dict[str, tuple[int, int, list[list[tuple[int, int, int]]]]]] = {
    1: {
        "1": (30, 20, [[(5, 5, 300), (20, 10, 200)], [(6, 4, 150)]]),
        "2": (25, 18, [[(12, 9, 400), (3, 15, 120), (22, 2, 500)]]),
    },
    2: {
        "1": (30, 20, [[(25, 15, 250), (5, 6, 90), (14, 9, 600)]]),  # the 90 ms one is dropped
        "3": (30, 20, [[(1, 1, 100)]]),
        "4": (16, 12, [[(4, 4, 200), (10, 8, 300)]]),
    },
    3: {
        "1": (30, 20, [[(10, 18, 350), (29, 0, 180)]]),
        "2": (25, 18, [[(12, 8, 220)]]),
        "4": (16, 12, [[(8, 6, 80)]]),
    },
}


def write_runs(folder: Path) -> Path:
    """Write RUNS as Fixation_run<N>.txt files in the image layout (CRLF)."""
    folder.mkdir(parents=True, exist_ok=True)
    for run, images in RUNS.items():
        lines = []
        for image_id, (width, height, scanpaths) in images.items():
            for scanpath in scanpaths:
                numbers = ",".join(f"{x},{y},{ms}" for x, y, ms in scanpath)
                lines.append(f"{image_id},{width},{height},{numbers}")
        (folder / f"Fixation_run{run}.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return folder


def kept_fixations(min_ms: float = 100) -> dict[str, dict[int, np.ndarray]]:
    """image id -> run -> (N, 3) array of (x, y, ms) kept by the duration filter, from RUNS."""
    result: dict[str, dict[int, np.ndarray]] = {}
    for run, images in RUNS.items():
        for image_id, (_, _, scanpaths) in images.items():
            triples = np.array([t for scanpath in scanpaths for t in scanpath if t[2] >= min_ms], dtype=float)
            if len(triples):
                result.setdefault(image_id, {})[run] = triples
    return result


def numpy_map(triples: np.ndarray, width: int, height: int, sigma: float = SIGMA) -> np.ndarray:
    """Duration-weighted Gaussians at integer pixels, min-max normalised (the heatmap recipe)."""
    rows, cols = np.mgrid[0:height, 0:width]
    total = sum(
        ms * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2)) for x, y, ms in triples
    )
    return (total - total.min()) / (total.max() - total.min())


def numpy_scores(prediction: np.ndarray, observed: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The five metrics with plain numpy: NSS and AUC at target's pixels, CC/SIM/KL vs its map."""
    fixated = np.zeros(prediction.shape, dtype=bool)
    fixated[target[:, 1].astype(int), target[:, 0].astype(int)] = True
    z = (prediction - prediction.mean()) / prediction.std(ddof=1)
    values = prediction.ravel()
    thresholds = np.sort(prediction[fixated])[::-1]
    negatives = values.size - fixated.sum()
    tp = [0.0] + [np.mean(prediction[fixated] >= t) for t in thresholds] + [1.0]
    fp = [0.0] + [(np.sum(values >= t) - np.sum(prediction[fixated] >= t)) / negatives for t in thresholds]
    fp += [1.0]
    p, q = prediction / prediction.sum(), observed / observed.sum()
    return {
        "nss": float(z[fixated].mean()),
        "auc_judd": float(np.trapezoid(tp, fp)),
        "cc": float(np.corrcoef(prediction.ravel(), observed.ravel())[0, 1]),
        "sim": float(np.minimum(p, q).sum()),
        "kl": float(np.sum(q * np.log(2.2204e-16 + q / (p + 2.2204e-16)))),
    }


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return write_runs(tmp_path / "runs")


def test_leave_one_run_out_pairs(runs_dir: Path) -> None:
    images = load_images(runs_dir, min_duration=100, limit=None)
    pairs = leave_one_run_out(images)
    kept = kept_fixations()
    expected = {(i, r) for i, runs in kept.items() for r in runs if len(runs) > 1}
    assert {(p.image_id, p.run) for p in pairs} == expected == {
        ("1", 1), ("1", 2), ("1", 3), ("2", 1), ("2", 3)
    }
    for pair in pairs:
        runs = kept[pair.image_id]
        others = np.concatenate([runs[r] for r in sorted(runs) if r != pair.run])
        for record, expected_triples in ((pair.target, runs[pair.run]), (pair.others, others)):
            np.testing.assert_array_equal(np.c_[record.x, record.y, record.duration], expected_triples)
        assert set(pair.others.run) == set(runs) - {pair.run}


def test_scores_match_independent_computation(runs_dir: Path) -> None:
    images = load_images(runs_dir, min_duration=100, limit=None)
    frame = evaluate_agreement(images, sigma=SIGMA)
    kept = kept_fixations()
    assert list(zip(frame["image_id"], frame["run"])) == [("1", 1), ("1", 2), ("1", 3), ("2", 1), ("2", 3)]
    centre = fit_centre_bias(list(images.values()))
    for row in frame.itertuples():
        width, height, _ = RUNS[row.run][row.image_id]
        runs = kept[row.image_id]
        target = runs[row.run]
        others = np.concatenate([runs[r] for r in runs if r != row.run])
        observed = numpy_map(target, width, height)
        assert (row.fixations, row.other_fixations) == (len(target), len(others))
        human = numpy_scores(numpy_map(others, width, height), observed, target)
        rows, cols = np.mgrid[0:height, 0:width]
        sd_x, sd_y = np.hypot(centre.sd_x * width, SIGMA), np.hypot(centre.sd_y * height, SIGMA)
        centre_map = np.exp(
            -((cols - (centre.mean_x * width - 0.5)) ** 2) / (2 * sd_x**2)
            - (rows - (centre.mean_y * height - 0.5)) ** 2 / (2 * sd_y**2)
        )
        centre_map = (centre_map - centre_map.min()) / (centre_map.max() - centre_map.min())
        baseline = numpy_scores(centre_map, observed, target)
        for metric in human:
            for predictor, expected in (("human", human), ("centre", baseline)):
                value = getattr(row, f"{predictor}_{metric}")
                assert value == pytest.approx(expected[metric], rel=1e-4, abs=1e-5), (predictor, metric)


def test_workers_give_the_same_frame(runs_dir: Path) -> None:
    images = load_images(runs_dir, min_duration=100, limit=None)
    single = evaluate_agreement(images, sigma=SIGMA, batch_size=2)
    parallel = evaluate_agreement(images, sigma=SIGMA, batch_size=2, workers=2)
    pd.testing.assert_frame_equal(single, parallel)


def test_fit_centre_bias_is_duration_weighted() -> None:
    record = FixationRecord(
        "a", 10, 4, x=np.array([0.0, 9.0]), y=np.array([1.0, 1.0]), duration=np.array([100.0, 300.0]),
        run=np.array([1, 2]),
    )
    centre = fit_centre_bias([record])
    # relative positions (x + 0.5) / 10 = 0.05 and 0.95 with weights 1:3
    assert centre.mean_x == pytest.approx(0.05 * 0.25 + 0.95 * 0.75)
    assert centre.sd_x == pytest.approx(np.sqrt(0.25 * 0.75) * 0.9)
    assert (centre.mean_y, centre.sd_y) == pytest.approx((1.5 / 4, 0.0))


def test_fixated_pixels_scale_and_clip() -> None:
    record = FixationRecord(
        "a", 30, 20, x=np.array([0.0, 29.0, 14.6]), y=np.array([19.0, 0.0, 9.4]), duration=np.ones(3),
        run=np.ones(3, dtype=np.int64),
    )
    rows, cols = fixated_pixels(record, (20, 30))
    np.testing.assert_array_equal(cols, [0, 29, 15])  # floor(x + 0.5)
    np.testing.assert_array_equal(rows, [19, 0, 9])
    rows, cols = fixated_pixels(record, (10, 15))  # half size
    np.testing.assert_array_equal(cols, [0, 14, 7])
    np.testing.assert_array_equal(rows, [9, 0, 4])


def test_cli_with_classes_on_synthetic_runs(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    labels = tmp_path / "CUB_200_2011" / "image_class_labels.txt"
    labels.parent.mkdir()
    labels.write_text("1 1\n2 2\n3 1\n4 2\n")
    (labels.parent / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    out_dir = tmp_path / "out"
    argv = ["--gaze_file_path", str(runs_dir), "--out_dir", str(out_dir), "--sigma", "3", "--workers", "0"]
    assert main(argv + ["--classes", str(labels)]) == 0
    frame = pd.read_csv(out_dir / "agreement.csv", dtype={"image_id": str})
    assert frame["class_name"].tolist() == ["Black_footed_Albatross"] * 3 + ["Laysan_Albatross"] * 2
    assert frame["class_id"].tolist() == [1, 1, 1, 2, 2]
    assert (out_dir / "agreement.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "| all | 5 |" in printed and "NSS human" in printed
    labels.write_text("1 1\n")
    with pytest.raises(ValueError, match=r"image_class_labels.txt: no class label for image id\(s\) \['2'\]"):
        main(argv + ["--classes", str(labels)])
    labels.write_text("1 1\n2\n")
    with pytest.raises(ValueError, match=r"image_class_labels.txt:2: expected"):
        main(argv + ["--classes", str(labels)])


def test_cli_on_real_images(real_runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "agreement"
    argv = ["agreement", "--gaze_file_path", str(real_runs_dir), "--out_dir", str(out_dir), "--limit", "4"]
    assert gaze_cli.main(argv + ["--workers", "0"]) == 0
    frame = pd.read_csv(out_dir / "agreement.csv", dtype={"image_id": str})
    assert sorted(frame["image_id"].unique(), key=int) == ["1", "2", "3", "4"]
    assert frame["run"].between(1, 5).all() and len(frame) >= 4 * 3  # every image has >= 3 runs
    for predictor in PREDICTORS:
        assert frame[f"{predictor}_auc_judd"].between(0, 1).all()
        assert frame[f"{predictor}_sim"].between(0, 1).all()
    assert frame["human_nss"].mean() > frame["centre_nss"].mean() > 0  # people agree beyond centre bias
    assert (out_dir / "agreement.png").stat().st_size > 10_000
    assert "| all |" in capsys.readouterr().out


def test_cli_without_two_runs_is_an_error(tmp_path: Path) -> None:
    run_file = tmp_path / "Fixation_run1.txt"
    run_file.write_text("1,30,20,5,5,300\r\n2,30,20,6,6,200\r\n")
    with pytest.raises(ValueError, match="no image has fixations from two runs"):
        main(["--gaze_file_path", str(run_file), "--out_dir", str(tmp_path / "out"), "--workers", "0"])
