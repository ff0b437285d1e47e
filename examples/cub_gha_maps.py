"""Draw examples/cub_gha_maps.png: all-fixation and single-fixation CUB-GHA maps of real image ids.

    python generate_heatmap.py --gaze_file_path ../shared/cub_gha/data_5runs --CUB_GHA_save_path /tmp/gha --ids 1,2,3
    python generate_heatmap.py --gaze_file_path ../shared/cub_gha/data_5runs --CUB_GHA_save_path /tmp/gha --ids 1,2,3 --single_fixation
    python examples/cub_gha_maps.py /tmp/gha 1 2 3

One row per image id: the All_Fixation map, then its Single_Fixation maps in order (the
maps alone: CUB photos are not redistributed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from gaze.attention.heatmap import load_heatmap
from gaze.viz.plots import save_figure


def main(gha: Path, ids: list[str], out: Path) -> Path:
    singles = {i: sorted((gha / "Single_Fixation" / i).glob("*.jpg"), key=lambda p: int(p.stem)) for i in ids}
    columns = 1 + max(len(s) for s in singles.values())
    figure, axes = plt.subplots(len(ids), columns, figsize=(1.9 * columns, 1.6 * len(ids)), squeeze=False)
    for row, image_id in enumerate(ids):
        panels = [(f"id {image_id}: all", gha / "All_Fixation" / f"{image_id}.jpg")]
        panels += [(f"fixation {p.stem}", p) for p in singles[image_id]]
        for axis in axes[row]:
            axis.axis("off")
        for axis, (title, path) in zip(axes[row], panels):
            axis.imshow(load_heatmap(path).numpy(), cmap="jet", vmin=0, vmax=1)
            axis.set_title(title, fontsize=8)
    figure.suptitle("CUB-GHA maps rendered by gaze from the real data_5runs fixations", fontsize=9)
    return save_figure(figure, out)


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), sys.argv[2:], Path(__file__).with_name("cub_gha_maps.png")))
