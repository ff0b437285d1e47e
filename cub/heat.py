"""PIM heat maps of one image from a CUB checkpoint (FGVC-PIM heat.py; gaze/viz/heat.py).

    python cub/heat.py --checkpoint=runs/cub/pim_demo/ckpt_best.pt --img=bird.jpg --save_img=heat/
    python cub/heat.py --checkpoint=... --img=bird.jpg --save_img=heat/ --threshold=0.6 --target_class=3

Writes heatmap.jpg, rbg_img.jpg and mix.jpg (the published class-independent stage heat) and
gradcam.jpg, gradcam_mix.jpg (the combiner's Grad-CAM of --target_class, default the
predicted class) to --save_img. The model and its input size come from the checkpoint;
other --key=value items are cub/config.py keys.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from cub.evaluate import load_evaluated_model
from cub.experiment import load_cub_config, resolve_path, run_dir
from gaze.engine.checkpoint import best_checkpoint
from gaze.models import model_class
from gaze.viz import heat


def load_model(argv: list[str]) -> tuple[nn.Module, dict[str, Any], Path]:
    """The checkpoint's model (``--checkpoint``, else this config's run) and config, and its path."""
    config = load_cub_config(argv)
    path = resolve_path(config["checkpoint"]) if config["checkpoint"] else best_checkpoint(
        run_dir(config), model_class(config["model_type"]).phases)
    heat.require_pim_checkpoint(path)
    model, config = load_evaluated_model(config, path)
    return model, config, path


def main(argv: list[str] | None = None) -> int:
    return heat.main(load_model, argv, prog="cub/heat.py")


if __name__ == "__main__":
    sys.exit(main())
