"""PIM heat maps of one image from an ImageFolder checkpoint (FGVC-PIM heat.py; gaze/viz/heat.py).

    python folder/heat.py --checkpoint=runs/folder/pim/ckpt_best.pt --img=x.jpg --save_img=heat/
    python folder/heat.py --checkpoint=... --img=x.jpg --save_img=heat/ --threshold=0.6 --target_class=1

Writes heatmap.jpg, rbg_img.jpg and mix.jpg (the published class-independent stage heat) and
gradcam.jpg, gradcam_mix.jpg (the combiner's Grad-CAM of --target_class, default the
predicted class) to --save_img. The model, its class count and input size come from the
checkpoint (no data is read); other --key=value items are folder/config.py keys.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from folder.experiment import build_model, load_folder_config, resolve_path, run_dir
from gaze.config import evaluated_config
from gaze.engine.checkpoint import best_checkpoint
from gaze.engine.importers import load_model_checkpoint
from gaze.models import model_class
from gaze.viz import heat


def load_model(argv: list[str]) -> tuple[nn.Module, dict[str, Any], Path]:
    """The checkpoint's model (``--checkpoint``, else this config's run) and config, and its path."""
    config = load_folder_config(argv)
    path = resolve_path(config["checkpoint"]) if config["checkpoint"] else best_checkpoint(
        run_dir(config), model_class(config["model_type"]).phases)
    checkpoint = heat.require_pim_checkpoint(path)
    config = evaluated_config(config, checkpoint)
    model = build_model(config, heat.checkpoint_classes(checkpoint, path))
    load_model_checkpoint(model, checkpoint)
    return model, config, path


def main(argv: list[str] | None = None) -> int:
    return heat.main(load_model, argv, prog="folder/heat.py")


if __name__ == "__main__":
    sys.exit(main())
