"""What ``protocol='published'`` turns on in the CXR-Eye experiment, per method.

Each entry is a key of cxr/config.py, the value of the published code (HAFC =
yaorong0921/CUB-GHA ``CXR-Eye/``, GG-CAM = hz-zhu/GG-CAM; cxr.md) and what it reproduces.
Our defaults are the corrected protocol; ``python cxr/train.py cxr/configs/hafc_gat.py
--protocol=published`` reproduces the paper's own, with a warning listing these. The
README's table of differences lists them too, beside the differences that have no key.
"""

from __future__ import annotations

_HAFC = {
    "select_on_test": (True, "no validation patients; the best epoch is chosen on the TEST fold "
                             "(main.py validates on the test fold in --crossval; cxr §2.5)"),
    "gaze_source": ("heatmaps", "the maps are EGD's fixation_heatmaps/<dicom_id>/heatmap.png (cxr §2.1)"),
    "heatmap_png_mode": ("luma", "read as PIL 'L' (Rec.601 luma of viridis: ~0.12 background, ~0.85 peak; cxr §1.4)"),
    "jpeg_draft": (False, "every radiograph is decoded at full size before the resize (no DCT-domain downscaling)"),
}

PUBLISHED: dict[str, dict[str, tuple[object, str]]] = {
    "gat": {
        **_HAFC,
        "window_crop": ("published", "windows are cropped one pixel up/left and one pixel larger than the "
                                     "scored window (x0 = max(0, 2r - 1), x1 = 2r - 1 + h inclusive; cxr §2.3)"),
    },
    "kfn": dict(_HAFC),
    "baseline": dict(_HAFC),
    "ggcam": {
        "split": ("ggcam", "GG-CAM's per-class 70/10/20 split in CSV order (cxr §3.1)"),
        "ggcam_patient_disjoint": (False, "the split ignores patients: one patient's images can be in train and "
                                          "test (cxr §3.1)"),
        "cam_target": ("class0", "the Normal-class CAM is matched to the gaze for every label: "
                                 "int(sigmoid(y * e^lg_k)) is 0 for y in {0, 1, 2} (cxr §3.4)"),
        "preprocessing": ("pad_subsample", "padded film, every 2nd pixel / max, Blur500 gaze point-sampled (cxr §3.1)"),
    },
}
