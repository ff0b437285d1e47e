"""Tests for gaze/attention/saliency.py: hand-computed tiny maps, and straightforward numpy versions
of the MIT benchmark code (github.com/cvzoya/saliency, code_forMetrics/*.m) on random maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gaze.attention.saliency import KL_EPS, auc_judd, cc, kl, nss, sim

# ---------------------------------------------------------------- independent numpy references


def reference_cc(s: np.ndarray, g: np.ndarray) -> float:
    """CC.m: corr2 of the two maps."""
    return float(np.corrcoef(s.ravel(), g.ravel())[0, 1])


def reference_sim(s: np.ndarray, g: np.ndarray) -> float:
    """SIM.m: min-max, divide by the sum, sum of the element-wise minimum."""
    p = (s - s.min()) / (s.max() - s.min())
    q = (g - g.min()) / (g.max() - g.min())
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def reference_kl(s: np.ndarray, g: np.ndarray) -> float:
    """KLdiv.m: sum(map2 .* log(eps + map2 ./ (map1 + eps))) with map1 = prediction."""
    p, q = s / s.sum(), g / g.sum()
    return float(np.sum(q * np.log(KL_EPS + q / (p + KL_EPS))))


def reference_nss(s: np.ndarray, fixation_map: np.ndarray) -> float:
    """NSS.m: standardise with MATLAB's std (N-1), mean at the fixated pixels."""
    z = (s - s.mean()) / s.std(ddof=1)
    return float(z[fixation_map > 0].mean())


def reference_auc_judd(s: np.ndarray, fixation_map: np.ndarray) -> float:
    """AUC_Judd.m with jitter off, written as the MATLAB loop."""
    values, fixated = s.ravel(), fixation_map.ravel() > 0
    thresholds = np.sort(values[fixated])[::-1]
    n_fix, n_pix = len(thresholds), len(values)
    tp, fp = np.zeros(n_fix + 2), np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    for i, threshold in enumerate(thresholds, start=1):
        above = np.sum(values >= threshold)
        tp[i] = i / n_fix
        fp[i] = (above - i) / (n_pix - n_fix)
    return float(np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---------------------------------------------------------------- hand-computed values

S_2X2 = np.array([[1.0, 2.0], [3.0, 4.0]])


def test_cc_by_hand() -> None:
    # S - mean = [-1.5, -0.5, 0.5, 1.5]; G = [0, 0, 1, 1] - 0.5 = [-.5, -.5, .5, .5]
    # sum of products = 0.75 + 0.25 + 0.25 + 0.75 = 2; |S|^2 = 5, |G|^2 = 1 -> 2 / sqrt(5)
    assert cc(S_2X2, np.array([[0.0, 0.0], [1.0, 1.0]])) == pytest.approx(2 / math.sqrt(5))
    # G = [1, 0, 0, 1]: products -0.75 + 0.25 - 0.25 + 0.75 = 0
    assert cc(S_2X2, np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0, abs=1e-12)
    assert cc(S_2X2, -S_2X2) == pytest.approx(-1.0)


def test_sim_by_hand() -> None:
    s = np.array([[0.0, 1.0], [2.0, 3.0]])  # min-max [0, 1/3, 2/3, 1], sum 2 -> [0, 1/6, 2/6, 3/6]
    g = np.array([[3.0, 2.0], [1.0, 0.0]])  # -> [3/6, 2/6, 1/6, 0]
    assert sim(s, g) == pytest.approx(0 + 1 / 6 + 1 / 6 + 0)
    # min-max first (MIT SIM.m): an offset does not change SIM
    assert sim(s + 10.0, g) == pytest.approx(1 / 3)
    # a constant map is uniform (1/4 each): min(0,.25)+min(1/6,.25)+min(2/6,.25)+min(3/6,.25)
    assert sim(s, np.full((2, 2), 7.0)) == pytest.approx(1 / 6 + 1 / 4 + 1 / 4)


def test_kl_by_hand() -> None:
    uniform = np.ones((2, 2))  # P = 1/4 each
    diagonal = np.array([[2.0, 0.0], [0.0, 2.0]])  # Q = [1/2, 0, 0, 1/2]
    # KL(Q || P) = 2 * 1/2 * log(eps + (1/2) / (1/4 + eps)) = log 2 (the zero terms vanish)
    assert kl(uniform, diagonal) == pytest.approx(math.log(2))
    # KL(P || Q): 2 * 1/4 * log(1/2) + 2 * 1/4 * log(eps + (1/4) / eps): eps caps the infinity
    expected = 0.5 * math.log(0.5) + 0.5 * math.log(KL_EPS + 0.25 / KL_EPS)
    assert kl(diagonal, uniform) == pytest.approx(expected)
    assert kl(diagonal, uniform) > 16  # not symmetric


def test_nss_by_hand() -> None:
    # mean 2.5; sample sd sqrt((2.25 + .25 + .25 + 2.25) / 3) = sqrt(5/3)
    sd = math.sqrt(5 / 3)
    assert nss(S_2X2, (np.array([1]), np.array([1]))) == pytest.approx(1.5 / sd)
    # (0, 0) and (1, 1): z = -1.5/sd and +1.5/sd -> 0; a repeated pixel counts once (MIT map)
    both = (np.array([0, 1, 1]), np.array([0, 1, 1]))
    assert nss(S_2X2, both) == pytest.approx(0.0, abs=1e-12)
    assert nss(S_2X2, np.eye(2, dtype=bool)) == pytest.approx(0.0, abs=1e-12)


def test_auc_judd_by_hand() -> None:
    s = np.arange(1.0, 10.0).reshape(3, 3)  # values 1..9
    fixations = (np.array([2, 2]), np.array([2, 0]))  # values 9 and 7
    # t=9: 1 pixel >= 9 -> TPR 1/2, FPR 0;  t=7: 3 pixels -> TPR 1, FPR (3-2)/7
    # (0,0) (0,.5) (1/7,1) (1,1): area 0 + (.5+1)/2 * 1/7 + 6/7 = 27/28
    assert auc_judd(s, fixations) == pytest.approx(27 / 28)
    # inverted map: fixated values 1 and 3. t=3: 7 pixels -> TPR 1/2, FPR 6/7; t=1: TPR 1, FPR 1
    # area .5 * 6/7 * .5 + (.5 + 1)/2 * 1/7 = 9/28
    assert auc_judd(10.0 - s, fixations) == pytest.approx(9 / 28)


def test_auc_judd_ties_by_hand() -> None:
    s = np.array([[1.0, 1.0], [0.0, 0.0]])
    # the fixated pixel ties a non-fixated one: t=1 has 2 pixels >= 1 -> FPR (2-1)/3 = 1/3
    # (0,0) (1/3,1) (1,1): area 1/6 + 2/3 = 5/6 (MIT formula without jitter)
    assert auc_judd(s, (np.array([0]), np.array([0]))) == pytest.approx(5 / 6)
    assert auc_judd(s, (np.array([0, 0]), np.array([0, 1]))) == pytest.approx(1.0)


# ---------------------------------------------------------------- properties


def test_identical_maps(rng: np.random.Generator) -> None:
    maps = rng.random((4, 9, 11))
    np.testing.assert_allclose(cc(maps, maps), 1.0)
    np.testing.assert_allclose(sim(maps, maps), 1.0)
    np.testing.assert_allclose(kl(maps, maps), 0.0, atol=1e-12)


def test_auc_judd_perfect_and_inverted(rng: np.random.Generator) -> None:
    fixation_map = rng.random((3, 20, 30)) > 0.9
    perfect = fixation_map.astype(np.float64) + 0.01 * rng.random((3, 20, 30)) * fixation_map
    np.testing.assert_allclose(auc_judd(perfect, fixation_map), 1.0)
    assert np.all(auc_judd(-perfect, fixation_map) < 0.1)


def test_constant_maps_give_documented_values() -> None:
    constant = np.full((3, 5, 7), 0.1, dtype=np.float32)  # 0.1 is inexact: no rounding residue
    other = np.random.default_rng(1).random((3, 5, 7)).astype(np.float32)
    fixations = (np.arange(3), np.array([0, 1, 2]), np.array([3, 4, 5]))
    np.testing.assert_array_equal(cc(constant, other), 0.0)
    np.testing.assert_array_equal(nss(constant, fixations), 0.0)
    np.testing.assert_allclose(auc_judd(constant, fixations), 0.5)
    np.testing.assert_allclose(sim(constant, constant), 1.0, rtol=1e-6)
    np.testing.assert_allclose(kl(np.zeros((5, 7)), constant[0]), 0.0, atol=1e-6)
    everything = np.ones((2, 2), dtype=bool)
    assert auc_judd(other[0, :2, :2], everything) == 0.5  # no negatives
    for value in (cc(constant, other), sim(constant, other), kl(constant, other)):
        assert np.isfinite(value).all()


# ---------------------------------------------------------------- against the numpy references


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_map_metrics_match_references(rng: np.random.Generator, dtype: type) -> None:
    predictions = rng.random((5, 12, 17)).astype(dtype) ** 3  # skewed, like attention maps
    truths = rng.random((5, 12, 17)).astype(dtype)
    rtol = 1e-9 if dtype == np.float64 else 2e-5
    for metric, reference in ((cc, reference_cc), (sim, reference_sim), (kl, reference_kl)):
        expected = [reference(p.astype(float), t.astype(float)) for p, t in zip(predictions, truths)]
        np.testing.assert_allclose(metric(predictions, truths), expected, rtol=rtol, err_msg=metric.__name__)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fixation_metrics_match_references(rng: np.random.Generator, dtype: type) -> None:
    predictions = rng.random((6, 15, 13)).astype(dtype)
    fixation_maps = rng.random((6, 15, 13)) > 0.85
    fixation_maps[:, 0, 0] = True  # every map has one
    rtol = 1e-9 if dtype == np.float64 else 2e-5
    for metric, reference in ((nss, reference_nss), (auc_judd, reference_auc_judd)):
        expected = [reference(p.astype(np.float64), f) for p, f in zip(predictions, fixation_maps)]
        values = metric(predictions, fixation_maps)
        np.testing.assert_allclose(values, expected, rtol=rtol, err_msg=metric.__name__)
        np.testing.assert_allclose(metric(predictions, np.nonzero(fixation_maps)), expected, rtol=rtol)


def test_auc_judd_on_smooth_maps_with_plateaus(rng: np.random.Generator) -> None:
    """Quantised maps (ties among non-fixated pixels) still match the MIT loop."""
    predictions = np.round(rng.random((4, 30, 40)) * 200) / 200  # 201 levels for 1200 pixels
    fixation_maps = np.zeros((4, 30, 40), dtype=bool)
    rows, cols = rng.integers(0, 30, (4, 12)), rng.integers(0, 40, (4, 12))
    fixation_maps[np.arange(4)[:, None], rows, cols] = True
    checked = 0
    for k in range(4):
        values = predictions[k][fixation_maps[k]]
        if len(np.unique(values)) == len(values):  # the MIT loop is exact without fixated ties
            assert auc_judd(predictions[k], fixation_maps[k]) == pytest.approx(
                reference_auc_judd(predictions[k], fixation_maps[k])
            )
            checked += 1
    assert checked >= 1


# ---------------------------------------------------------------- batching, types, errors


def test_batch_equals_per_map_and_shared_map_broadcasts(rng: np.random.Generator) -> None:
    shared = rng.random((8, 9))
    truths = rng.random((4, 8, 9))
    fixation_maps = rng.random((4, 8, 9)) > 0.7
    fixation_maps[:, 2, 3] = True
    for metric in (cc, sim, kl):
        one_by_one = [metric(shared, t) for t in truths]
        np.testing.assert_allclose(metric(shared, truths), one_by_one)  # (H, W) vs (B, H, W)
        expanded = torch.from_numpy(shared).expand(4, 8, 9)  # stride 0: normalised once
        np.testing.assert_allclose(metric(expanded, torch.from_numpy(truths)), one_by_one)
    for metric in (nss, auc_judd):
        one_by_one = [metric(shared, f) for f in fixation_maps]
        np.testing.assert_allclose(metric(shared, fixation_maps), one_by_one)
        expanded = torch.from_numpy(shared).expand(4, 8, 9)  # stride 0: scored once
        np.testing.assert_allclose(metric(expanded, np.nonzero(fixation_maps)), one_by_one)
    grid = rng.random((2, 3, 8, 9))
    assert cc(grid, grid).shape == (2, 3)


def test_numpy_in_numpy_out_torch_in_torch_out(rng: np.random.Generator) -> None:
    a, b = rng.random((5, 6)), rng.random((5, 6))
    assert isinstance(cc(a, b), np.floating)
    value = cc(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert isinstance(value, torch.Tensor) and value.shape == () and value.dtype == torch.float32
    assert sim(a.tolist(), b) == pytest.approx(sim(a, b))
    assert nss(np.arange(4, dtype=np.uint8).reshape(2, 2), np.eye(2)).dtype == np.float32


def test_shape_mismatches_are_errors(rng: np.random.Generator) -> None:
    a = rng.random((3, 4))
    with pytest.raises(ValueError, match=r"cc: map shapes \(3, 4\) and \(4, 3\) differ in \(H, W\)"):
        cc(a, a.T)
    with pytest.raises(ValueError, match="do not broadcast"):
        sim(rng.random((2, 3, 4)), rng.random((3, 3, 4)))
    with pytest.raises(ValueError, match="differ in"):
        nss(a, np.ones((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="needs 2 arrays"):
        auc_judd(a, (np.array([0]), np.array([0]), np.array([0])))
    with pytest.raises(ValueError, match="shape"):
        kl(np.ones(4), np.ones(4))


def test_bad_fixations_are_errors(rng: np.random.Generator) -> None:
    a = rng.random((3, 4))
    with pytest.raises(ValueError, match="index 4 on axis 1 is outside 0..3"):
        nss(a, (np.array([0]), np.array([4])))
    with pytest.raises(TypeError, match="must be integers"):
        nss(a, (np.array([0.0]), np.array([1.0])))
    with pytest.raises(ValueError, match=r"no fixated pixel in map\(s\) \[1\]"):
        auc_judd(rng.random((2, 3, 4)), np.array([np.eye(3, 4), np.zeros((3, 4))]))
    with pytest.raises(ValueError, match="negative values"):
        kl(a - 0.5, a)
