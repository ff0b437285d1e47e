"""GAT (gaze/models/gat.py): window geometry, proposals vs the published algorithm, crops, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from gaze.models import create_model
from gaze.models.gat import (
    WindowGeometry,
    crop_windows,
    propose_windows,
    window_geometry,
    window_scores,
    window_table,
)


def test_geometry_matches_the_published_tables():
    cub = window_geometry(448, "cub")  # cub_pim §1.3-1.4
    table = window_table(448, 448, cub)
    assert cub.stride == 8 and cub.n_list == (2, 3, 4) and cub.iou_threshold == 0.25
    assert cub.ratios[0] == ((246, 269), (269, 246))
    assert len(table.windows) == 12381
    assert torch.bincount(table.groups).tolist() == [1196, 4624, 6561]
    cxr = window_geometry(224, "cxr")  # cxr §2.3
    assert cxr.stride == 2 and cxr.ratios[2][0] == (87, 95)
    assert torch.bincount(window_table(224, 224, cxr).groups).tolist() == [828, 9216, 17956]


def test_scores_equal_avg_pool_per_ratio():
    gaze = torch.rand(2, 1, 64, 64)
    geometry = window_geometry(64)
    expected = torch.cat(
        [
            F.avg_pool2d(gaze.double(), kernel_size=shape, stride=geometry.stride).flatten(1)
            for group in geometry.ratios
            for shape in group
        ],
        dim=1,
    )
    got = window_scores(gaze, window_table(64, 64, geometry).windows)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def published_proposals(gaze: np.ndarray, geometry: WindowGeometry) -> list[int]:
    """Brute force: loop over windows and greedy NMS as in CUB-GHA/MMAL-Net (one image).

    Scores are window means; coordinates are the published inclusive ones (x = row,
    x0 = max(s·r − 1, 0), x1 = s·r − 1 + h); IoU uses +1 extents; a candidate survives
    with IoU <= threshold; ties go to the lower index (a stable sort).
    """
    height, width = gaze.shape
    s = geometry.stride
    result, offset = [], 0
    for shapes, keep in zip(geometry.ratios, geometry.n_list):
        windows = []
        for h, w in shapes:
            for r in range((height - h) // s + 1):
                for c in range((width - w) // s + 1):
                    score = gaze[s * r : s * r + h, s * c : s * c + w].astype(np.float64).mean()
                    coords = (max(s * r - 1, 0), max(s * c - 1, 0), s * r - 1 + h, s * c - 1 + w)
                    windows.append((score, coords))
        order = sorted(range(len(windows)), key=lambda k: (-windows[k][0], k))
        picks = []
        while order:
            best = order.pop(0)
            picks.append(best)
            if len(picks) == keep:
                break
            bx0, by0, bx1, by1 = windows[best][1]
            survivors = []
            for k in order:
                x0, y0, x1, y1 = windows[k][1]
                dx = min(x1, bx1) - max(x0, bx0) + 1
                dy = min(y1, by1) - max(y0, by0) + 1
                inter = 0 if dx < 0 or dy < 0 else dx * dy
                union = (x1 - x0 + 1) * (y1 - y0 + 1) + (bx1 - bx0 + 1) * (by1 - by0 + 1) - inter
                if inter / union <= geometry.iou_threshold:
                    survivors.append(k)
            order = survivors
        picks += [picks[-1]] * (keep - len(picks))
        result += [offset + p for p in picks]
        offset += len(windows)
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposals_equal_the_published_algorithm(seed):
    generator = torch.Generator().manual_seed(seed)
    # Smooth random maps (a few blobs), like real gaze maps, plus pure noise.
    noise = torch.rand(3, 1, 48, 48, generator=generator)
    blobs = F.avg_pool2d(F.pad(noise, (6, 6, 6, 6), mode="reflect"), 13, stride=1)
    gaze = torch.cat([noise[:1], blobs[1:]])
    geometry = window_geometry(48)
    proposals = propose_windows(gaze, geometry)
    for image in range(3):
        assert proposals.indices[image].tolist() == published_proposals(gaze[image, 0].numpy(), geometry)
    table = window_table(48, 48, geometry)
    assert torch.equal(proposals.boxes, table.windows[proposals.indices].float())
    assert proposals.boxes.shape == (3, 9, 4)


def test_proposals_repeat_the_last_window_and_break_ties_by_index():
    # Windows as large as the image: one candidate per shape, so picks run out.
    geometry = WindowGeometry((((16, 16),), ((16, 14), (14, 16))), stride=4, n_list=(3, 4))
    gaze = torch.zeros(2, 1, 16, 16)  # all scores tie
    proposals = propose_windows(gaze, geometry)
    reference = published_proposals(gaze[0, 0].numpy(), geometry)
    assert proposals.indices[0].tolist() == reference == [0, 0, 0, 1, 1, 1, 1]


def test_proposals_agree_with_torchvision_nms():
    gaze = torch.rand(2, 1, 64, 64)
    geometry = window_geometry(64)
    proposals = propose_windows(gaze, geometry)
    table = window_table(64, 64, geometry)
    scores = window_scores(gaze, table.windows)  # float64
    start = 0
    for group, keep in enumerate(geometry.n_list):
        size = int((table.groups == group).sum())
        for image in range(2):
            kept = nms(table.nms_boxes[start : start + size].double(), scores[image, start : start + size], 0.25)[:keep]
            first = sum(geometry.n_list[:group])
            assert (proposals.indices[image, first : first + keep] - start).tolist() == kept.tolist()
        start += size


def test_roi_align_crops_equal_slow_crop_and_resize():
    images = torch.randn(2, 3, 40, 48)
    boxes = torch.tensor([[[0, 0, 20, 17], [13, 5, 48, 40]], [[7, 9, 30, 22], [0, 0, 48, 40]]]).float()
    crops = crop_windows(images, boxes, size=16)
    expected = []
    for image in range(2):
        for c0, r0, c1, r1 in boxes[image].long().tolist():
            window = images[image : image + 1, :, r0:r1, c0:c1]
            expected.append(F.interpolate(window, size=(16, 16), mode="bilinear", align_corners=True))
    torch.testing.assert_close(crops, torch.cat(expected), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def gat():
    torch.manual_seed(0)
    return create_model("gat", num_classes=4, backbone="resnet18", input_size=64)


def make_batch(size=64):
    return {
        "image": torch.randn(2, 3, size, size),
        "label": torch.tensor([1, 3]),
        "gaze": torch.rand(2, 1, size, size),
        "id": ["1", "2"],
    }


def test_window_loss_only_from_epoch_two(gat):
    batch = make_batch()
    gat.epoch = 1
    first = gat.loss(batch)
    assert "loss_window" not in first
    torch.testing.assert_close(first["loss"], first["loss_ce"])
    gat.epoch = 2
    second = gat.loss(batch)
    assert torch.isfinite(second["loss_window"])
    gat.eval()  # no dropout: the total is exactly the sum
    out = gat.loss(batch)
    torch.testing.assert_close(out["loss"], out["loss_ce"] + out["loss_window"])
    gat.train()
    gat.epoch = 1


def test_window_logits_use_the_shared_head_on_the_crops(gat):
    batch = make_batch()
    gat.eval()
    with torch.no_grad():
        logits = gat.window_logits(batch["image"], batch["gaze"])
        boxes = propose_windows(batch["gaze"], gat.geometry).boxes
        expected = gat(crop_windows(batch["image"], boxes, 32))
    gat.train()
    assert logits.shape == (18, 4)
    torch.testing.assert_close(logits, expected)


def test_forward_ignores_gaze(gat):
    images = torch.randn(2, 3, 64, 64)
    gat.eval()
    with torch.no_grad():
        torch.testing.assert_close(gat(images), gat(images, torch.rand(2, 1, 64, 64)))
    gat.train()


def test_gaze_required_for_the_window_loss(gat):
    batch = make_batch()
    del batch["gaze"]
    gat.epoch = 2
    with pytest.raises(KeyError, match="gaze"):
        gat.loss(batch)
    gat.epoch = 1


# ----------------------------------------------------------------------------- gaze_threshold (CXR-Eye y_hm)
@pytest.fixture(scope="module")
def cxr_models():
    """Two GATs on the CXR window preset at 64 px: thresholded at 0.3 and not."""
    torch.manual_seed(0)
    kwargs = dict(num_classes=3, backbone="resnet18", input_size=64, window_preset="cxr", pretrained_path=None)
    thresholded = create_model("gat", gaze_threshold=0.3, **kwargs).eval()
    plain = create_model("gat", **kwargs).eval()
    return thresholded, plain


def _plateau_and_peak(size: int = 64) -> torch.Tensor:
    """(2,1,S,S): a broad 0.25 plateau on the left, a small 1.0 peak bottom right (and a noisy copy)."""
    gaze = torch.zeros(2, 1, size, size)
    gaze[:, :, :, :40] = 0.25
    gaze[:, :, 54:58, 56:60] = 1.0
    gaze[1] += 0.02 * torch.rand(1, size, size, generator=torch.Generator().manual_seed(0))
    return gaze


def _contains(boxes: torch.Tensor, row: float, col: float) -> torch.Tensor:
    """(…,) whether each (col0, row0, col1, row1) box holds the point."""
    return (boxes[..., 0] <= col) & (col < boxes[..., 2]) & (boxes[..., 1] <= row) & (row < boxes[..., 3])


def test_gaze_threshold_scores_the_thresholded_map(cxr_models):
    thresholded, plain = cxr_models
    assert thresholded.gaze_threshold == 0.3 and plain.gaze_threshold is None
    assert thresholded.geometry == plain.geometry == window_geometry(64, "cxr")
    gaze = _plateau_and_peak()
    got = thresholded.propose(gaze)
    expected = propose_windows(gaze * (gaze / (1 + 1e-7) > 0.3), thresholded.geometry)
    assert torch.equal(got.indices, expected.indices) and torch.equal(got.boxes, expected.boxes)
    torch.testing.assert_close(got.scores, expected.scores)
    unthresholded = plain.propose(gaze)
    assert torch.equal(unthresholded.indices, propose_windows(gaze, plain.geometry).indices)
    assert not torch.equal(got.indices, unthresholded.indices)
    # Independent reading: with the threshold the best window of each group (group-major,
    # n_list (2, 3, 4): positions 0, 2, 5) holds the peak; without it the best large window
    # covers the plateau and misses the peak.
    assert _contains(got.boxes[:, [0, 2, 5]], 55.5, 57.5).all()
    assert not _contains(unthresholded.boxes[:, 0], 55.5, 57.5).any()
    assert (unthresholded.boxes[:, 0, 0] == 0).all()  # flush with the plateau's left edge


def test_gaze_threshold_is_used_by_the_window_logits(cxr_models):
    thresholded, plain = cxr_models
    gaze = _plateau_and_peak()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = thresholded.window_logits(images, gaze)
        boxes = propose_windows(gaze * (gaze / (1 + 1e-7) > 0.3), thresholded.geometry).boxes
        expected = thresholded(crop_windows(images, boxes, thresholded.window_size))
    assert logits.shape == (18, 3) and thresholded.window_size == 32
    torch.testing.assert_close(logits, expected)


def test_gaze_threshold_reproduces_hafc_y_hm_on_the_raw_luma_map(cxr_models):
    # HAFC (cxr §2.1 steps 4-5) scores windows on y_hm = H * (minmax(H) > 0.3) with H the
    # raw grey reading of heatmap.png (background ~0.12, peak ~0.85), not on the min-max
    # normalised map: the background offset adds 0.12 x (masked area) to each window mean.
    thresholded, _ = cxr_models
    generator = torch.Generator().manual_seed(5)
    noise = torch.rand(6, 1, 64, 64, generator=generator)
    blobs = F.avg_pool2d(F.pad(noise, (8, 8, 8, 8), mode="reflect"), 17, stride=1)
    low, high = blobs.amin((2, 3), keepdim=True), blobs.amax((2, 3), keepdim=True)
    luma = 0.12 + 0.73 * (blobs - low) / (high - low)
    got = thresholded.propose(luma).indices
    differs = 0
    for image in range(len(luma)):
        h = luma[image, 0].numpy().astype(np.float64)
        mask = (h - h.min()) / (h.max() - h.min() + 1e-7) > 0.3
        assert got[image].tolist() == published_proposals(h * mask, thresholded.geometry)
        normalised = (h - h.min()) / (h.max() - h.min())
        differs += published_proposals(normalised * mask, thresholded.geometry) != got[image].tolist()
    assert differs > 0  # the previous reading, minmax(H) * mask, picks other windows


def test_published_window_crop_is_one_pixel_up_left_and_larger():
    # CUB-GHA crops x[:, :, x0:x1 + 1, y0:y1 + 1] with x0 = max(s·r - 1, 0), x1 = s·r - 1 + h
    # (x the row) and resizes to 224 bilinearly with align_corners=True (cub_pim §1.4-1.5).
    torch.manual_seed(0)
    model = create_model("gat", num_classes=3, backbone="resnet18", input_size=64, window_crop="published").eval()
    images, gaze = torch.randn(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    indices = model.propose(gaze).indices
    geometry, s = model.geometry, model.geometry.stride
    shapes = [shape for group in geometry.ratios for shape in group]
    crops = []
    for image in range(2):
        for index in indices[image].tolist():
            for h, w in shapes:  # window index -> shape, row r, column c (row-major per shape)
                cols = (64 - w) // s + 1
                count = ((64 - h) // s + 1) * cols
                if index < count:
                    break
                index -= count
            r, c = divmod(index, cols)
            x0, y0, x1, y1 = max(s * r - 1, 0), max(s * c - 1, 0), s * r - 1 + h, s * c - 1 + w
            window = images[image : image + 1, :, x0 : x1 + 1, y0 : y1 + 1]
            crops.append(F.interpolate(window, size=(32, 32), mode="bilinear", align_corners=True))
    with torch.no_grad():
        torch.testing.assert_close(model.window_logits(images, gaze), model(torch.cat(crops)), atol=1e-4, rtol=1e-4)
        scored = create_model("gat", num_classes=3, backbone="resnet18", input_size=64).eval()
        scored.load_state_dict(model.state_dict())
        assert not torch.allclose(scored.window_logits(images, gaze), model.window_logits(images, gaze))
    with pytest.raises(ValueError, match="window_crop='shifted'"):
        create_model("gat", num_classes=3, backbone="resnet18", window_crop="shifted")
