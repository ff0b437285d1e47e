"""Saliency metrics: a predicted attention map against human fixations or a human map.

The definitions are those of the MIT/Tuebingen saliency benchmark: Bylinskii, Judd, Oliva,
Torralba, Durand, "What do different evaluation metrics tell us about saliency models?",
IEEE TPAMI 41(3), 2019, with its reference MATLAB code (github.com/cvzoya/saliency,
``code_forMetrics/{CC,SIM,KLdiv,NSS,AUC_Judd}.m``), and Kümmerer, Wallis, Bethge,
"Saliency benchmarking made easy", ECCV 2018 (pysaliency).

Conventions shared by every function:

* Maps have shape (..., H, W); leading dimensions are a batch and the result has their
  shape, a 0-d value for one (H, W) map. Two maps must have the same (H, W) (no implicit
  resizing: a mismatch is an error); their leading dimensions broadcast as in torch. A map
  shared by the batch (missing or size-1 leading dimensions, or ``expand``-ed, stride 0)
  is normalised and searched once, so scoring one baseline map against many is cheap.
* The first argument is the prediction, the second the ground truth, as in the MIT code.
* A torch saliency map gives a torch result (same device); anything else (numpy arrays,
  lists) gives numpy. Floating inputs keep their precision; others become float32.
* Fixations are either a binary fixation map with the saliency map's (H, W) (non-zero =
  fixated; leading dimensions broadcast) or an index tuple of 1-D integer arrays such
  that ``saliency_map[fixations]`` selects the fixated pixels: ``(rows, cols)`` for one
  map, ``(batch, rows, cols)`` for (B, H, W) maps; ``np.nonzero(fixation_map)`` is one.
  As in the MIT code (which reads a binary map), a pixel fixated several times counts once.
* Degenerate inputs return a documented number, never NaN (the MIT code returns NaN):
  see each function.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

#: MATLAB's ``eps`` (2^-52), the regulariser of ``KLdiv.m`` in the MIT benchmark code.
KL_EPS = 2.2204e-16

MapLike = Union[torch.Tensor, np.ndarray]
#: A binary fixation map, or an index tuple ``(rows, cols)`` / ``(batch, rows, cols)``.
FixationsLike = Union[torch.Tensor, np.ndarray, Sequence]


def _as_tensor(array: MapLike | Sequence) -> torch.Tensor:
    return array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))


def _as_float_tensor(array: MapLike) -> torch.Tensor:
    tensor = _as_tensor(array)
    return tensor if tensor.is_floating_point() else tensor.float()


def _shape(array: MapLike) -> tuple[int, ...]:
    return tuple(array.shape) if isinstance(array, torch.Tensor) else tuple(np.shape(array))


def _device(array: MapLike) -> torch.device:
    return array.device if isinstance(array, torch.Tensor) else torch.device("cpu")


def _flat_map(name: str, saliency_map: MapLike, lead: tuple[int, ...] | None = None) -> torch.Tensor:
    """(..., H, W) map -> (N, H*W) tensor, or (1, H*W) when one map is shared by all N.

    A map is shared when its leading dimensions are missing, of size 1, or expanded
    (stride 0): it is then processed once and broadcast, which makes scoring many
    fixation sets or maps against one baseline map cheap.

    Args:
        name: metric name for error messages.
        saliency_map: the map(s).
        lead: the leading shape to broadcast to (default: the map's own).
    """
    tensor = _as_float_tensor(saliency_map)
    if tensor.ndim < 2 or tensor.shape[-1] * tensor.shape[-2] == 0:
        raise ValueError(f"{name}: a map needs a non-empty shape (..., H, W), got {tuple(tensor.shape)}")
    pixels = tensor.shape[-2] * tensor.shape[-1]
    own_lead = tuple(tensor.shape[:-2])
    lead = own_lead if lead is None else lead
    if all(size == 1 or stride == 0 for size, stride in zip(own_lead, tensor.stride()[:-2])):
        return tensor.reshape(-1, pixels)[:1]
    return tensor.expand(lead + tuple(tensor.shape[-2:])).reshape(-1, pixels)


def _lead_shape(name: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Broadcast leading shape of maps whose (H, W) must agree exactly."""
    if len({shape[-2:] for shape in shapes}) != 1 or any(len(shape) < 2 for shape in shapes):
        raise ValueError(
            f"{name}: map shapes {' and '.join(map(str, shapes))} differ in (H, W); "
            "resize them to one size first"
        )
    try:
        return tuple(np.broadcast_shapes(*(shape[:-2] for shape in shapes)))
    except ValueError:
        raise ValueError(
            f"{name}: map shapes {' and '.join(map(str, shapes))} do not broadcast over their "
            "leading (batch) dimensions"
        ) from None


def _flat_map_pair(
    name: str, saliency_map: MapLike, reference_map: MapLike
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Two maps as (N or 1, H*W) tensors of one dtype, and their broadcast leading shape."""
    lead = _lead_shape(name, _shape(saliency_map), _shape(reference_map))
    prediction = _flat_map(name, saliency_map, lead)  # (N or 1, H*W)
    reference = _flat_map(name, reference_map, lead)
    dtype = torch.promote_types(prediction.dtype, reference.dtype)
    return prediction.to(dtype), reference.to(prediction.device, dtype), lead


def _result(values: torch.Tensor, lead: tuple[int, ...], like: object) -> MapLike:
    """(N,) or (1,) values shaped as ``lead``; numpy (a scalar for one map) unless ``like`` is torch."""
    values = values.expand(int(np.prod(lead, dtype=np.int64))).reshape(lead).clone()
    if isinstance(like, torch.Tensor):
        return values
    return values.cpu().numpy()[()]


def _to_distribution(maps: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Divide each non-negative (N, P) row by its sum; an all-zero row becomes uniform (1/P)."""
    totals = maps.sum(-1, keepdim=True)
    scale = torch.where(totals > 0, 1.0 / totals, 0.0)
    offset = (totals <= 0).to(maps.dtype) / maps.shape[-1]
    return torch.addcmul(offset, maps, scale, out=maps if inplace else None)


def _centred(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each (N, P) row minus its mean, the (N,) means and (N,) sample sds (N-1, as MATLAB).

    The rows are shifted by their first value before averaging, so a constant row gives
    exactly zero deviations and sd (no rounding residue to divide by).
    """
    first = maps[:, :1]
    centred = maps - first
    shift_mean = centred.mean(-1, keepdim=True)
    centred.sub_(shift_mean)
    sd = torch.sqrt(torch.linalg.vecdot(centred, centred) / max(maps.shape[-1] - 1, 1))
    return centred, (first + shift_mean).squeeze(-1), sd


def _check_non_negative(name: str, role: str, maps: torch.Tensor) -> None:
    if float(maps.amin()) < 0:
        raise ValueError(f"{name}: the {role} map has negative values; it must be a non-negative density")


def cc(saliency_map: MapLike, reference_map: MapLike) -> MapLike:
    """Pearson's linear correlation coefficient (CC) of two maps (MIT ``CC.m``).

    ``CC = cov(S, G) / (std(S) std(G))`` over the H*W pixels; in [-1, 1], 1 for maps that
    are affine copies of each other. Symmetric in its arguments.

    Args:
        saliency_map: (..., H, W) predicted map.
        reference_map: (..., H, W) ground-truth map (e.g. a human attention map).

    Returns:
        (...) CC per map. 0 when either map is constant (the correlation is undefined there;
        the MIT code returns NaN).
    """
    prediction, reference, lead = _flat_map_pair("cc", saliency_map, reference_map)
    centred_p, _, sd_p = _centred(prediction)
    centred_r, _, sd_r = _centred(reference)
    covariance = torch.linalg.vecdot(centred_p, centred_r) / max(prediction.shape[-1] - 1, 1)
    scale = sd_p * sd_r
    values = torch.where(scale > 0, covariance / torch.where(scale > 0, scale, 1), 0.0)
    return _result(values.clamp(-1.0, 1.0), lead, saliency_map)


def sim(saliency_map: MapLike, reference_map: MapLike) -> MapLike:
    """Similarity (SIM, histogram intersection) of two maps (MIT ``SIM.m``).

    Each map is min-max scaled to [0, 1] and divided by its sum (computed as
    ``(S - min S) / sum(S - min S)``: the range cancels); ``SIM = sum_i min(P_i, Q_i)``,
    in [0, 1], 1 for maps equal up to an affine scaling. Symmetric in its arguments.

    Args:
        saliency_map: (..., H, W) predicted map.
        reference_map: (..., H, W) ground-truth map.

    Returns:
        (...) SIM per map. A constant map (including all zeros) is taken as the uniform
        distribution 1/(H*W), so two constant maps give 1 (the MIT code gives NaN for a
        constant non-zero map and 0 for an all-zero one).
    """
    prediction, reference, lead = _flat_map_pair("sim", saliency_map, reference_map)
    p = _to_distribution(prediction - prediction.amin(-1, keepdim=True), inplace=True)
    q = _to_distribution(reference - reference.amin(-1, keepdim=True), inplace=True)
    intersection = torch.minimum(p, q, out=p if p.shape == q.shape else None)
    return _result(intersection.sum(-1), lead, saliency_map)


def kl(saliency_map: MapLike, reference_map: MapLike, eps: float = KL_EPS) -> MapLike:
    """KL divergence of the ground truth from the prediction (MIT ``KLdiv.m``).

    Both maps are divided by their sums (no min-max, as in the MIT code); with P the
    prediction and Q the ground truth, ``KL = sum_i Q_i log(eps + Q_i / (P_i + eps))``,
    i.e. KL(Q || P): >= 0 (up to eps), 0 for equal distributions, not symmetric.

    Args:
        saliency_map: (..., H, W) predicted map, non-negative.
        reference_map: (..., H, W) ground-truth map, non-negative.
        eps: regulariser; the MIT code uses MATLAB's eps, :data:`KL_EPS`.

    Returns:
        (...) KL per map, in nats. A map summing to 0 is taken as uniform (the MIT code
        keeps it at zero, which gives 0 for an empty ground truth and ~log(1/eps) per unit
        mass for an empty prediction).

    Raises:
        ValueError: a map has negative values (not a distribution).
    """
    prediction, reference, lead = _flat_map_pair("kl", saliency_map, reference_map)
    _check_non_negative("kl", "saliency", prediction)
    _check_non_negative("kl", "reference", reference)
    p = _to_distribution(prediction).add_(eps)
    q = _to_distribution(reference)
    ratio = torch.div(q, p, out=p if p.shape == q.shape else None)
    values = torch.linalg.vecdot(q, ratio.add_(eps).log_())
    return _result(values, lead, saliency_map)


def _fixated_pixels(
    name: str, fixations: FixationsLike, shape: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Distinct fixated pixels for saliency maps of ``shape`` (..., H, W).

    Args:
        name: metric name for error messages.
        fixations: an index tuple of ``len(shape)`` arrays, or a binary fixation map whose
            (H, W) equals the saliency map's and whose leading shape broadcasts with it.
        shape: shape of the saliency map(s).
        device: where the indices go.

    Returns:
        ``(item, pixel, counts, lead)``: (M,) map index in 0..N-1 and (M,) flat pixel index
        in 0..H*W-1 of each distinct fixated pixel, sorted by map; (N,) counts per map; the
        leading shape (...) of the N maps.

    Raises:
        ValueError: a shape mismatch, an index out of range, or a map with no fixation.
    """
    if len(shape) < 2:
        raise ValueError(f"{name}: a saliency map needs shape (..., H, W), got {tuple(shape)}")
    pixels = shape[-2] * shape[-1]
    if isinstance(fixations, (tuple, list)):
        lead = tuple(shape[:-2])
        linear = _linear_index(name, fixations, shape, device)
    else:
        fixation_map = _as_tensor(fixations)
        lead = _lead_shape(name, tuple(shape), tuple(fixation_map.shape))
        fixation_map = fixation_map.to(device).expand(lead + tuple(shape[-2:]))
        linear = torch.flatten(fixation_map != 0).nonzero().squeeze(1)
    item, pixel = linear // pixels, linear % pixels
    counts = torch.bincount(item, minlength=int(np.prod(lead, dtype=np.int64)))
    if bool((counts == 0).any()):
        empty = torch.flatten(torch.nonzero(counts == 0)).tolist()
        raise ValueError(f"{name}: no fixated pixel in map(s) {empty[:10]} of the batch; each needs one")
    return item, pixel, counts, lead


def _linear_index(
    name: str, index: Sequence, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Sorted unique linear indices of an index tuple into an array of ``shape``."""
    if len(index) != len(shape):
        raise ValueError(
            f"{name}: an index tuple for maps of shape {tuple(shape)} needs {len(shape)} "
            f"arrays (batch..., rows, cols), got {len(index)}"
        )
    arrays = [_as_tensor(a) for a in index]
    lengths = {tuple(a.shape) for a in arrays}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"{name}: index arrays must be 1-D and of one length, got shapes {sorted(lengths)}")
    linear = torch.zeros(arrays[0].shape[0], dtype=torch.int64, device=device)
    for axis, (values, size) in enumerate(zip(arrays, shape)):
        if values.is_floating_point() or values.dtype == torch.bool:
            raise TypeError(
                f"{name}: fixation indices must be integers, got {values.dtype} on axis {axis}; "
                "convert pixel positions with floor/round first"
            )
        values = values.to(device, torch.int64)
        outside = (values < 0) | (values >= size)
        if bool(outside.any()):
            bad = int(values[outside][0])
            raise ValueError(f"{name}: fixation index {bad} on axis {axis} is outside 0..{size - 1}")
        linear = linear * size + values
    return torch.unique(linear)


def nss(saliency_map: MapLike, fixations: FixationsLike) -> MapLike:
    """Normalized scanpath saliency (NSS, MIT ``NSS.m``; Peters et al., Vision Res. 2005).

    The map is standardised, ``Z = (S - mean(S)) / std(S)`` with MATLAB's sample std (N-1;
    pysaliency uses N, a factor sqrt((HW-1)/HW) that is negligible at image sizes), and
    ``NSS = mean of Z over the fixated pixels``: 0 is chance, higher is better.

    Args:
        saliency_map: (..., H, W) predicted map.
        fixations: a binary fixation map with the map's (H, W), or an index tuple (module doc).

    Returns:
        (...) NSS per map; 0 for a constant map (the MIT code returns NaN).

    Raises:
        ValueError: shape mismatch, indices out of range, or a map without fixations.
    """
    item, pixel, counts, lead = _fixated_pixels(
        "nss", fixations, _shape(saliency_map), _device(saliency_map)
    )
    maps = _flat_map("nss", saliency_map, lead)  # (N or 1, H*W)
    _, mean, sd = _centred(maps)
    values_at = maps[item if len(maps) > 1 else 0, pixel]
    sums = torch.zeros(len(counts), dtype=maps.dtype, device=maps.device).index_add_(0, item, values_at)
    at_fixations = sums / counts
    values = torch.where(sd > 0, (at_fixations - mean) / torch.where(sd > 0, sd, 1), 0.0)
    return _result(values, lead, saliency_map)


def _padded_thresholds(values: torch.Tensor, item: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-map ascending saliency values at fixations, padded with +inf: (N, max count)."""
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(item[order], stable=True)]  # by map, ascending value within
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(len(values), device=values.device) - starts[item[order]]
    thresholds = values.new_full((len(counts), int(counts.max())), torch.inf)
    thresholds[item[order], position] = values[order]
    return thresholds


def _count_at_least(maps: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(N, K) number of pixels with a value >= each threshold, in one pass over the pixels.

    Each pixel is binary-searched among the sorted thresholds (its bucket = how many
    thresholds are <= its value); a histogram of buckets, summed from the top, counts the
    pixels >= each threshold.

    Args:
        maps: (N, P) maps, or (1, P) for one map shared by all N threshold rows.
        thresholds: (N, K), ascending along K (any order when ``maps`` is shared).
    """
    num_maps, num_thresholds = thresholds.shape
    if len(maps) == 1 and num_maps > 1:  # one shared map: search all N*K thresholds at once
        flat, order = thresholds.flatten().sort()
        at_least = _count_at_least(maps, flat[None])[0]
        return torch.empty_like(at_least).scatter_(0, order, at_least).view(num_maps, num_thresholds)
    # bucket = number of thresholds <= value, so value >= thresholds[k] iff bucket > k.
    buckets = torch.searchsorted(thresholds, maps.contiguous(), right=True)
    buckets += (num_thresholds + 1) * torch.arange(num_maps, device=maps.device)[:, None]
    histogram = torch.bincount(buckets.flatten(), minlength=num_maps * (num_thresholds + 1))
    at_least = histogram.view(num_maps, num_thresholds + 1).flip(-1).cumsum(-1).flip(-1)
    return at_least[:, 1:]


def auc_judd(saliency_map: MapLike, fixations: FixationsLike) -> MapLike:
    """Area under the ROC curve, Judd variant (AUC-Judd, MIT ``AUC_Judd.m``).

    Thresholds are the saliency values at the fixated pixels. At threshold t the true
    positive rate is the fraction of fixated pixels with ``S >= t`` and the false positive
    rate is ``(#pixels with S >= t - #fixated pixels with S >= t) / (#pixels - #fixated)``;
    the curve from (0, 0) through the thresholds in descending order to (1, 1) is
    integrated with the trapezoid rule. 0.5 is chance, 1 a perfect predictor.

    Ties: the MIT code adds ``rand/1e7`` noise (``jitter``, on by default) to break ties,
    then counts the i-th highest threshold as TPR ``i / #fixated``. Here no noise is added
    and all pixels tied at a threshold are counted together: deterministic, and equal to
    the MIT formula without jitter whenever the fixated pixels' values are distinct (the
    only case where that formula's TPR is exact).

    Args:
        saliency_map: (..., H, W) predicted map.
        fixations: a binary fixation map with the map's (H, W), or an index tuple (module doc).

    Returns:
        (...) AUC per map in [0, 1]; 0.5 for a constant map and for a map whose every pixel
        is fixated (no negatives; the MIT code returns NaN for both).

    Raises:
        ValueError: shape mismatch, indices out of range, or a map without fixations.
    """
    item, pixel, counts, lead = _fixated_pixels(
        "auc_judd", fixations, _shape(saliency_map), _device(saliency_map)
    )
    maps = _flat_map("auc_judd", saliency_map, lead)  # (N or 1, H*W)
    values_at = maps[item if len(maps) > 1 else 0, pixel]
    thresholds = _padded_thresholds(values_at, item, counts)  # (N, K), +inf padded
    above = _count_at_least(maps, thresholds).to(maps.dtype)  # pixels >= each threshold
    # Fixated pixels >= threshold k: all of the map's fixated values minus those below it.
    hits = (counts[:, None] - torch.searchsorted(thresholds, thresholds, right=False)).to(maps.dtype)
    negatives = (maps.shape[-1] - counts).to(maps.dtype)[:, None]
    true_positive = hits / counts[:, None].to(maps.dtype)
    false_positive = (above - hits) / negatives.clamp(min=1)
    zeros, ones = torch.zeros_like(negatives), torch.ones_like(negatives)
    true_positive = torch.cat([zeros, true_positive.flip(-1), ones], dim=-1)  # descending thresholds
    false_positive = torch.cat([zeros, false_positive.flip(-1), ones], dim=-1)
    values = torch.trapezoid(true_positive, false_positive, dim=-1)
    values = torch.where(negatives.squeeze(-1) > 0, values, 0.5)
    return _result(values, lead, saliency_map)
