"""How the methods read the gaze map a batch carries (raw: the transform only moves it).

Each paper normalises its map differently, and the difference changes which windows GAT
picks and what KFN's second branch sees, so the models do it themselves (cub_pim §1.7,
cxr §2.1):

* GAT on CUB: global min-max of the cropped map (:func:`gaze.data.transforms.normalize_attention`,
  which keeps a constant map instead of the published 0/0 NaN);
* GAT and KFN on CXR-Eye: the mask ``minmax(H) > 0.3`` of the raw map H, min-max with an
  epsilon of 1e-7 (:func:`hafc_mask`); GAT scores windows on ``y_hm = H * mask``;
* KFN on CUB: the map itself, i.e. the published 8-bit map / 255 (no min-max).
"""

from __future__ import annotations

from torch import Tensor

#: HAFC's min-max epsilon (CXR-Eye utils/dataset.py; cxr §2.1 step 4).
HAFC_MINMAX_EPS = 1e-7


def check_gaze(images: Tensor, gaze: Tensor) -> None:
    """Raise a ValueError unless ``gaze`` is (B,1,H,W) for ``images`` (B,3,H,W)."""
    batch, _, height, width = images.shape
    if gaze.dim() != 4 or tuple(gaze.shape) != (batch, 1, height, width):
        raise ValueError(
            f"gaze must be (B,1,H,W) like the images {tuple(images.shape)}, got {tuple(gaze.shape)}"
        )


def hafc_mask(gaze: Tensor, threshold: float) -> Tensor:
    """HAFC's binary gaze mask ``(H - min) / (max - min + 1e-7) > threshold`` per map.

    Args:
        gaze: (B,1,H,W) raw maps (for the published reading, heatmap.png as grey: ~0.12
            background, ~0.85 peak).
        threshold: 0.3 in HAFC (cxr §2.1 step 4).

    Returns:
        (B,1,H,W) bool mask (all False for a constant map, as published).
    """
    low = gaze.amin(dim=(2, 3), keepdim=True)
    high = gaze.amax(dim=(2, 3), keepdim=True)
    return (gaze - low) / (high - low + HAFC_MINMAX_EPS) > threshold
