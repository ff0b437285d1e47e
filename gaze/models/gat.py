"""GAT, Gaze Augmentation Training (Rong et al., BMVC 2021; cub_pim §1.4-1.5, cxr §2.3).

Training adds a second cross-entropy on image windows picked by the human gaze map:

1. APPM scores: the mean gaze inside every window of 10 shapes in 3 size groups (an average
   pooling with kernel = window, stride = ``stride``), concatenated in ratio order.
2. Per group, greedy NMS (IoU threshold 0.25) keeps the best ``n_list[g]`` windows (2+3+4).
3. The windows are cut from the augmented, normalised image, resized to ``window_size``
   (half the input: 224 at 448) and classified by the SAME backbone and classifier.
4. loss = CE(logits, y) + CE(window_logits, y repeated per window), the second term from
   epoch 2 (1-based). Inference uses the full image only; the gaze is not needed.

Deliberate differences from the published code, all documented at the functions:
- scores by a float64 summed-area table (equal to ``F.avg_pool2d`` with kernel = window,
  stride = stride, but O(H·W) and exact enough that equal windows tie exactly);
- NMS vectorised over the batch (the first n picks of greedy NMS, equal to
  ``torchvision.ops.nms`` truncated), IoU with the published "+1 inclusive pixel" boxes
  (reproduced exactly), ties broken by the lower window index (the original depends on
  numpy's unstable argsort);
- crops by ``torchvision.ops.roi_align`` over exactly the scored window (the original crops
  one pixel up/left and one pixel larger, cub_pim §1.4 quirk: ``window_crop='published'``),
  bilinear align_corners=True sampling as published;
- no window forward in epochs without the window loss, and no APPM at test time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from gaze.data.transforms import normalize_attention
from gaze.models._registry import register_model
from gaze.models.baseline import Baseline
from gaze.models.gaze_input import check_gaze, hafc_mask

#: Window presets: the published (h, w) window shapes in px per size group (large, medium,
#: small), the stride in px and windows kept per group, at their reference input size.
WINDOW_PRESETS = {
    # CUB-GHA config.py (cub_pim §1.3): 448 input, stride 8, N_list [2, 3, 4].
    "cub": {
        "reference_size": 448,
        "ratios": (
            ((246, 269), (269, 246)),
            ((174, 190), (190, 174), (174, 174), (190, 190)),
            ((123, 134), (134, 123), (123, 123), (134, 134)),
        ),
        "stride": 8,
        "n_list": (2, 3, 4),
    },
    # CUB-GHA CXR-Eye (cxr §2.3): 224 input, stride 2, N [2, 3, 4].
    "cxr": {
        "reference_size": 224,
        "ratios": (
            ((180, 190), (190, 180)),
            ((123, 135), (135, 123), (123, 123), (135, 135)),
            ((87, 95), (95, 87), (87, 87), (95, 95)),
        ),
        "stride": 2,
        "n_list": (2, 3, 4),
    },
}


#: window_crop -> which pixels of a picked window are cut out for the window CE.
WINDOW_CROPS = {
    "scored": "exactly the window whose gaze was scored (ours)",
    "published": "rows max(s·r - 1, 0) .. s·r + h - 1 inclusive (and likewise columns): one pixel up/left "
                 "and larger than scored, as CUB-GHA and HAFC crop (cub_pim §1.4, cxr §2.3)",
}


@dataclass(frozen=True)
class WindowGeometry:
    """Window shapes (h, w) px per group, stride px, windows kept per group, NMS IoU."""

    ratios: tuple[tuple[tuple[int, int], ...], ...]
    stride: int
    n_list: tuple[int, ...]
    iou_threshold: float = 0.25


def window_geometry(
    input_size: int = 448,
    preset: str = "cub",
    n_list: tuple[int, ...] | None = None,
    iou_threshold: float = 0.25,
    ratios: Sequence[Sequence[Sequence[int]]] | None = None,
    stride: int | None = None,
) -> WindowGeometry:
    """The preset's windows scaled to ``input_size``.

    Shapes and stride scale by input_size / reference_size and are rounded (at least 1 px),
    so ``window_geometry(448, 'cub')`` and ``window_geometry(224, 'cxr')`` are exactly the
    published values. ``ratios`` (groups of (h, w)) and ``stride`` replace the preset's,
    given in pixels at the preset's reference size (the published config's values).
    """
    if preset not in WINDOW_PRESETS:
        raise ValueError(f"unknown window preset {preset!r}; known: {', '.join(WINDOW_PRESETS)}")
    spec = WINDOW_PRESETS[preset]
    scale = input_size / spec["reference_size"]
    ratios = tuple(
        tuple((max(1, round(h * scale)), max(1, round(w * scale))) for h, w in group)
        for group in (spec["ratios"] if ratios is None else ratios)
    )
    n_list = tuple(n_list) if n_list is not None else spec["n_list"]
    if len(n_list) != len(ratios):
        raise ValueError(f"n_list {n_list} needs one entry per window group ({len(ratios)})")
    stride = spec["stride"] if stride is None else stride
    return WindowGeometry(ratios, max(1, round(stride * scale)), n_list, iou_threshold)


class WindowTable(NamedTuple):
    """Every window of a geometry on an H×W image, in ratio order (CPU tensors).

    windows: (N,4) long, the scored window as (col0, row0, col1, row1), half-open px.
    nms_boxes: (N,4) float, the published inclusive box (x0, y0, x1, y1 with x the row:
        x0 = max(s·r − 1, 0), x1 = s·r − 1 + h, cub_pim §1.4), turned into the half-open
        (col0, row0, col1 + 1, row1 + 1) that ``torchvision.ops.nms`` measures, so its IoU
        equals the published "+1" IoU exactly.
    groups: (N,) long, the size group of each window.
    """

    windows: Tensor
    nms_boxes: Tensor
    groups: Tensor


@lru_cache(maxsize=16)
def window_table(height: int, width: int, geometry: WindowGeometry) -> WindowTable:
    """Enumerate the windows (row-major per shape: index k -> row k // cols, col k % cols)."""
    windows, nms_boxes, groups = [], [], []
    s = geometry.stride
    for group, shapes in enumerate(geometry.ratios):
        for h, w in shapes:
            if h > height or w > width:
                raise ValueError(f"window {h}x{w} does not fit a {height}x{width} image")
            rows = torch.arange((height - h) // s + 1)
            cols = torch.arange((width - w) // s + 1)
            r = rows.repeat_interleave(len(cols))
            c = cols.repeat(len(rows))
            windows.append(torch.stack([s * c, s * r, s * c + w, s * r + h], dim=1))
            x0, y0 = (s * c - 1).clamp(min=0), (s * r - 1).clamp(min=0)
            nms_boxes.append(torch.stack([x0, y0, s * c + w, s * r + h], dim=1))
            groups.append(torch.full((len(r),), group))
    return WindowTable(torch.cat(windows), torch.cat(nms_boxes).float(), torch.cat(groups))


def window_scores(gaze: Tensor, windows: Tensor) -> Tensor:
    """Mean gaze inside each window: (B,1,H,W), (N,4) -> (B,N).

    Equals ``F.avg_pool2d(gaze, kernel=(h, w), stride)`` per shape, flattened and
    concatenated in ratio order; computed from a float64 summed-area table (float32 on MPS,
    which has no float64), so identical windows score identically.
    """
    dtype = torch.float32 if gaze.device.type == "mps" else torch.float64
    table = F.pad(gaze[:, 0].to(dtype).cumsum(1).cumsum(2), (1, 0, 1, 0))  # (B,H+1,W+1)
    c0, r0, c1, r1 = windows.to(gaze.device).unbind(1)
    sums = table[:, r1, c1] - table[:, r0, c1] - table[:, r1, c0] + table[:, r0, c0]
    return sums / ((r1 - r0) * (c1 - c0)).to(dtype)


class Proposals(NamedTuple):
    """Windows picked by ``propose_windows``; K = sum(n_list), group-major order.

    boxes: (B,K,4) float, (col0, row0, col1, row1) half-open px of the scored window.
    indices: (B,K) long, positions in the concatenated window list (published ``indices``).
    scores: (B,K) mean gaze in each window.
    published_boxes: (B,K,4) float, the same windows as the published code crops them: one
        pixel up and left and one larger, clamped at 0 (cub_pim §1.4 quirk; cxr §2.3).
    """

    boxes: Tensor
    indices: Tensor
    scores: Tensor
    published_boxes: Tensor


@torch.no_grad()
def propose_windows(gaze: Tensor, geometry: WindowGeometry) -> Proposals:
    """APPM on the gaze map and per-group greedy NMS, vectorised over the batch.

    Reproduces the published selection (cub_pim §1.5 step 3): per image and group, take
    windows by descending score, drop those whose inclusive-pixel ("+1") IoU with a kept
    one exceeds the threshold, stop at ``n_list[g]``; if candidates run out, repeat the
    last kept window. Ties in score go to the lower window index (deterministic; the
    original depends on numpy's unstable argsort).

    The greedy loop runs ``n_list[g]`` steps over all images at once (argmax, then one
    IoU row per image), which is the truncated form of ``torchvision.ops.nms`` (equal
    picks, tested) without suppressing thousands of windows nobody keeps.

    Args:
        gaze: (B,1,H,W) attention maps in [0, 1].
        geometry: from ``window_geometry``.

    Returns:
        ``Proposals`` (boxes, indices, scores).
    """
    _, _, height, width = gaze.shape
    table = window_table(height, width, geometry)
    scores = window_scores(gaze, table.windows)  # (B,N)
    nms_boxes = table.nms_boxes.to(gaze.device)
    sizes = torch.bincount(table.groups, minlength=len(geometry.ratios)).tolist()
    picks, start = [], 0
    for size, keep in zip(sizes, geometry.n_list):
        group = slice(start, start + size)
        threshold = geometry.iou_threshold
        picks.append(start + greedy_nms(scores[:, group], nms_boxes[group], keep, threshold))
        start += size
    indices = torch.cat(picks, dim=1)  # (B,K)
    boxes = table.windows.to(gaze.device)[indices].float()
    return Proposals(boxes, indices, scores.gather(1, indices).to(gaze.dtype), nms_boxes[indices])


def greedy_nms(scores: Tensor, boxes: Tensor, keep: int, iou_threshold: float) -> Tensor:
    """First ``keep`` picks of greedy NMS per row, repeating the last pick when none remain.

    Args:
        scores: (B,N) per image.
        boxes: (N,4) half-open (x0, y0, x1, y1), shared by all images.
        keep: picks per image.
        iou_threshold: a candidate survives a pick when IoU <= threshold.

    Returns:
        (B, keep) long window indices.
    """
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    alive = torch.ones_like(scores, dtype=torch.bool)
    rows = torch.arange(scores.shape[0], device=scores.device)
    picks: list[Tensor] = []
    for _ in range(keep):
        best = scores.masked_fill(~alive, float("-inf")).argmax(dim=1)  # first maximum: lowest index
        pick = best if not picks else torch.where(alive.any(dim=1), best, picks[-1])
        chosen = boxes[pick]  # (B,4)
        low = torch.maximum(chosen[:, None, :2], boxes[None, :, :2])  # (B,N,2)
        high = torch.minimum(chosen[:, None, 2:], boxes[None, :, 2:])
        inter = (high - low).clamp(min=0).prod(dim=2)  # (B,N)
        iou = inter / (areas[pick][:, None] + areas[None] - inter)
        alive &= iou <= iou_threshold
        alive[rows, pick] = False
        picks.append(pick)
    return torch.stack(picks, dim=1)


def crop_windows(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Cut windows and resize them to size×size with one ``roi_align``.

    Samples like ``F.interpolate(images[..., r0:r1, c0:c1], (size, size), mode='bilinear',
    align_corners=True)`` (the published resize) over exactly the window
    [r0, r1) × [c0, c1); the original cut [r0−1, r1) × [c0−1, c1) (cub_pim §1.4 quirk).

    Args:
        images: (B,C,H,W).
        boxes: (B,K,4) (col0, row0, col1, row1) half-open px.
        size: output side (>= 2).

    Returns:
        (B·K, C, size, size), image-major.
    """
    if size < 2:
        raise ValueError(f"window size must be >= 2, got {size}")
    batch, per_image = boxes.shape[:2]
    boxes = boxes.reshape(-1, 4).to(images.dtype)
    # align_corners=True puts output pixel i at c0 + i·(w−1)/(size−1); roi_align (aligned=False,
    # one sample per bin) samples bin centres, so shift the box half a bin back.
    step_x = (boxes[:, 2] - boxes[:, 0] - 1) / (size - 1)
    step_y = (boxes[:, 3] - boxes[:, 1] - 1) / (size - 1)
    x0 = boxes[:, 0] - 0.5 * step_x
    y0 = boxes[:, 1] - 0.5 * step_y
    image_index = torch.arange(batch, device=images.device, dtype=images.dtype)
    image_index = image_index.repeat_interleave(per_image)
    rois = torch.stack([image_index, x0, y0, x0 + size * step_x, y0 + size * step_y], dim=1)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=1, aligned=False)


@register_model("gat")
class GAT(Baseline):
    """Gaze Augmentation Training: the baseline plus a CE on gaze-selected windows.

    ``forward(images)`` is the plain classifier (gaze ignored). ``loss(batch)`` needs
    ``batch['gaze']`` (B,1,H,W) from epoch ``window_loss_from_epoch`` on: gaze only in training.
    """

    gaze_splits = frozenset({"train"})
    config_keys = {"window_size": "window_side", "n_list": "N_list"}

    def __init__(
        self,
        num_classes: int = 200,
        backbone: str = "resnet50",
        input_size: int | tuple[int, int] = 448,
        pretrained_path: str | None = None,
        dropout: float = 0.5,
        encoder_only: bool = False,
        window_preset: str = "cub",
        window_size: int | None = None,
        n_list: tuple[int, ...] | None = None,
        iou_threshold: float = 0.25,
        window_loss_weight: float = 1.0,
        window_loss_from_epoch: int = 2,
        ratios: Sequence[Sequence[Sequence[int]]] | None = None,
        stride: int | None = None,
        gaze_threshold: float | None = None,
        drop_path_rate: float = 0.0,
        head_init: str = "default",
        window_crop: str = "scored",
    ) -> None:
        """Args (besides the Baseline ones, ``drop_path_rate`` and ``head_init`` among them):
            window_preset: 'cub' (448 px reference, stride 8) or 'cxr' (224 px, stride 2),
                scaled to ``input_size`` (see ``window_geometry``).
            window_size: side of the resized window crops; default input_size // 2 (224 at
                448, 112 at 224 as published).
            n_list: windows kept per group, default the preset's (2, 3, 4).
            iou_threshold: NMS threshold (0.25, cub_pim §1.3).
            window_loss_weight: weight of the window CE (1 as published).
            window_loss_from_epoch: first 1-based epoch with the window CE (2 as published).
            ratios, stride: window shapes per group and stride at the preset's reference size,
                replacing the preset's (the published config's ``ratios`` and ``stride``).
            gaze_threshold: None scores windows on the min-max normalised map (CUB, cub_pim
                §1.7); a number scores them on the CXR-Eye ``y_hm = H * (minmax(H) > threshold)``
                of the raw map H (cxr §2.1 steps 4-5; see ``gaze_input.hafc_mask``).
            window_crop: 'scored' crops exactly the scored window; 'published' crops it one
                pixel up/left and one pixel larger, as the published code does (:data:`WINDOW_CROPS`).
        """
        if window_crop not in WINDOW_CROPS:
            raise ValueError(f"window_crop={window_crop!r}: expected one of {', '.join(WINDOW_CROPS)}")
        super().__init__(num_classes, backbone, input_size, pretrained_path, dropout, encoder_only,
                         drop_path_rate, head_init)
        self.geometry = window_geometry(self.input_size, window_preset, n_list, iou_threshold, ratios, stride)
        self.window_size = window_size or self.input_size // 2
        self.window_loss_weight = window_loss_weight
        self.window_loss_from_epoch = window_loss_from_epoch
        self.gaze_threshold = gaze_threshold
        self.window_crop = window_crop

    @classmethod
    def constructor_arguments(cls, config: Mapping[str, Any], **resolved: Any) -> dict[str, Any]:
        """As ``GazeModel``, with the published config's list values: ``N_list`` as a tuple and
        the one NMS threshold of ``iou_threshs`` (one per scale in the published file)."""
        arguments = super().constructor_arguments(config, **resolved)
        if arguments.get("n_list") is not None:
            arguments["n_list"] = tuple(arguments["n_list"])
        if "iou_threshold" not in resolved and config.get("iou_threshs"):
            arguments["iou_threshold"] = config["iou_threshs"][0]
        return arguments

    @classmethod
    def config_keys_read(cls) -> list[str]:
        """As ``GazeModel``, plus ``iou_threshs`` (read by :meth:`constructor_arguments`)."""
        return [*super().config_keys_read(), "iou_threshs"]

    def window_map(self, gaze: Tensor) -> Tensor:
        """The map windows are scored on: min-max of the raw map, or HAFC's ``y_hm`` (B,1,H,W)."""
        if self.gaze_threshold is None:
            return normalize_attention(gaze)
        return gaze * hafc_mask(gaze, self.gaze_threshold)

    def propose(self, gaze: Tensor) -> Proposals:
        """The windows the raw gaze map (B,1,H,W) picks (see ``propose_windows``, ``window_map``)."""
        return propose_windows(self.window_map(gaze), self.geometry)

    def window_logits(self, images: Tensor, gaze: Tensor) -> Tensor:
        """Logits (B·K, num_classes) of the gaze-picked windows (crops carry no gradient)."""
        check_gaze(images, gaze)
        proposals = self.propose(gaze)
        boxes = proposals.published_boxes if self.window_crop == "published" else proposals.boxes
        with torch.no_grad():
            crops = crop_windows(images, boxes, self.window_size)
        return self.classify(crops)

    def loss(self, batch: dict) -> dict[str, Tensor]:
        """{'loss', 'loss_ce', 'loss_window' (from epoch ``window_loss_from_epoch``), 'logits'}."""
        images, labels = batch["image"], batch["label"]
        logits = self(images)
        loss_ce = F.cross_entropy(logits, labels)
        out = {"loss": loss_ce, "loss_ce": loss_ce}
        if self.epoch >= self.window_loss_from_epoch:
            if batch.get("gaze") is None:
                raise KeyError("GAT needs batch['gaze'] (B,1,H,W) for the window loss")
            window_logits = self.window_logits(images, batch["gaze"])
            per_image = window_logits.shape[0] // images.shape[0]
            loss_window = F.cross_entropy(window_logits, labels.repeat_interleave(per_image))
            out["loss_window"] = loss_window
            out["loss"] = loss_ce + self.window_loss_weight * loss_window
        out["logits"] = logits.detach()
        return out
