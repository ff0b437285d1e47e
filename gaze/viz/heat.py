"""PIM heat maps (FGVC-PIM ``heat.py``, cub_pim.md §3.6) for any backbone, and the class's Grad-CAM.

As published: backbone forward only; per stage a "grad-CAM" against a uniform classifier
(ones / C), which reduces to sum_c ReLU(F_c) whatever the target class; each stage map
min-max normalised, resized (bilinear, half-pixel centres as cv2.resize) to the input size,
weighted 8/4/2/1 (stage 1 .. 4), summed, / 15, min-max again; heat below ``threshold``
(0.75) zeroed, x 255 (truncated) into the red channel; a 50/50 overlay on the image
squashed to 510 x 510 (at 384 px) and centre-cropped to the input size. Files:
``heatmap.jpg`` (the red heat), ``rbg_img.jpg`` (the crop; the published name, typo kept),
``mix.jpg`` (the overlay).

Fixed or added: any backbone (the stages arrive as NCHW maps of any h x w: CNN stages,
Swin's permuted tokens, ViT's grids; the published one reshapes tokens to sqrt(S) x sqrt(S)
and works for square-token Swin only); an epsilon in every min-max (a constant map gives
zeros, not NaN); the resize side follows the input size (``round(input_size * 510 / 384)``
unless the config's ``resize_size`` says otherwise) and is antialiased; and, since the
published map ignores ``--target_class``, the TRUE class-specific Grad-CAM of the combiner
(:mod:`gaze.models.cam` on the last stage map through PIM's whole head, target
``--target_class`` or the predicted class), drawn the same way: ``gradcam.jpg`` and
``gradcam_mix.jpg``.

The trees' thin CLIs (``cub/heat.py``, ``folder/heat.py``) call :func:`main` with a loader
of their checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional import InterpolationMode

from gaze.data.images import load_rgb_image
from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PIM_RESIZE_RATIO
from gaze.engine.dist import resolve_device
from gaze.engine.importers import import_checkpoint
from gaze.engine.logging import report_logger
from gaze.models import list_models, model_class
from gaze.models.cam import CamResult, cam_from_features, target_classes
from gaze.viz.plots import save_image

#: Weights of stages 1..4 in the published heat map (cub_pim.md §3.6): the finest counts most.
STAGE_WEIGHTS = (8, 4, 2, 1)
#: Heat below this (after the final min-max) is zeroed: the published ``--threshold`` default.
HEAT_THRESHOLD = 0.75
#: Added to every min-max denominator (the published one has none: NaN on a constant map).
EPS = 1e-7
#: Image key -> file name: the published three, then the class-specific Grad-CAM and its overlay.
HEAT_FILES = {"heatmap": "heatmap.jpg", "rbg_img": "rbg_img.jpg", "mix": "mix.jpg",
              "gradcam": "gradcam.jpg", "gradcam_mix": "gradcam_mix.jpg"}

#: ``tree_loader(argv) -> (model, config, checkpoint path)``: a tree's checkpoint loader for :func:`main`.
TreeLoader = Callable[[list[str]], tuple[nn.Module, Mapping, Path]]


class HeatMaps(NamedTuple):
    """images: :data:`HEAT_FILES` key -> uint8 (S,S,3) RGB; heat, cam: (S,S) in [0, 1] (the
    published stage heat, the Grad-CAM); predicted, target: the predicted and the explained class."""

    images: dict[str, np.ndarray]
    heat: Tensor
    cam: Tensor
    predicted: int
    target: int


def min_max(maps: Tensor, eps: float = EPS) -> Tensor:
    """Per-map ``(m - min) / (max - min + eps)`` over the last two dims: (..., H, W) -> same, in [0, 1)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low + eps)


def stage_heat(stages: Sequence[Tensor], size: tuple[int, int], weights: Sequence[float] = STAGE_WEIGHTS,
               eps: float = EPS) -> Tensor:
    """The published stage heat: sum_l w_l resize(minmax(sum_c ReLU(F_l,c))) / sum w, min-max.

    Args:
        stages: the stage maps [(B,C_l,h_l,w_l)], finest first (any grids).
        size: (H, W) every stage map is resized to (bilinear, half-pixel centres).
        weights: one per stage (published 8/4/2/1).
        eps: of every min-max denominator.

    Returns:
        (B,H,W) in [0, 1].
    """
    if len(stages) != len(weights):
        raise ValueError(f"{len(stages)} stage maps but {len(weights)} weights {tuple(weights)}")
    total = 0.0
    for stage, weight in zip(stages, weights):
        activation = min_max(F.relu(stage.float()).sum(dim=1, keepdim=True), eps)  # (B,1,h,w)
        total = total + weight * F.interpolate(activation, size=tuple(size), mode="bilinear", align_corners=False)
    return min_max(total[:, 0] / float(sum(weights)), eps)


def published_heat(model: nn.Module, images: Tensor, eps: float = EPS) -> Tensor:
    """:func:`stage_heat` of PIM's backbone stages (forward only, no gradient) at the input size.

    Args:
        model: a PIM (``model.backbone.forward_stages``).
        images: (B,3,S,S) ImageNet-normalised.

    Returns:
        (B,S,S) in [0, 1].
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            stages = model.backbone.forward_stages(images)
    finally:
        model.train(was_training)
    return stage_heat(stages, tuple(images.shape[-2:]), eps=eps)


def class_grad_cam(model: nn.Module, images: Tensor, targets: Tensor | int | None = None,
                   eps: float = EPS) -> CamResult:
    """Grad-CAM of the combiner's logit of ``targets`` on the last stage map (through the FPN,
    selector and combiner: ``forward_features`` / ``forward_head``), in eval mode.

    Args:
        model: a PIM.
        images: (B,3,S,S) ImageNet-normalised.
        targets: (B,) classes, one int for all, or None = the predicted class.

    Returns:
        ``CamResult``: cams (B,1,S,S) ReLU'd, upsampled and min-max scaled; logits; targets.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            features = model.forward_features(images)
            if not features.requires_grad:  # frozen weights: still track from the map on
                features.requires_grad_(True)
            logits = model.forward_head(features)
            targets = target_classes(logits, targets)
            cams = cam_from_features(features, logits, targets, size=tuple(images.shape[-2:]), eps=eps)
    finally:
        model.train(was_training)
    return CamResult(cams, logits.detach(), targets)


def red_heat_image(heat: Tensor, threshold: float = HEAT_THRESHOLD) -> np.ndarray:
    """The published red heat image: heat below ``threshold`` zeroed, x 255 truncated, in red.

    Args:
        heat: (H,W) in [0, 1].
        threshold: heat below it becomes 0.

    Returns:
        uint8 (H,W,3) RGB, green and blue 0.
    """
    red = torch.where(heat < threshold, torch.zeros_like(heat), heat) * 255
    image = torch.zeros(*heat.shape, 3, dtype=torch.uint8)
    image[..., 0] = red.clamp(0, 255).to(torch.uint8).cpu()  # truncation, as numpy's astype(uint8)
    return image.numpy()


def overlay(image: np.ndarray, heat_image: np.ndarray) -> np.ndarray:
    """The published 50/50 mix, ``uint8(0.5 image + 0.5 heat)``: (H,W,3) uint8 twice -> (H,W,3) uint8."""
    if image.shape != heat_image.shape:
        raise ValueError(f"overlay: image {image.shape} and heat image {heat_image.shape} differ in shape")
    return ((image.astype(np.uint16) + heat_image.astype(np.uint16)) // 2).astype(np.uint8)


def resize_side(input_size: int, resize_size: int | None = None) -> int:
    """The square side the image is squashed to before the centre crop: ``resize_size``, else
    ``round(input_size * 510 / 384)`` (the published 510 at 384 px)."""
    side = int(resize_size) if resize_size else round(input_size * PIM_RESIZE_RATIO)
    if side < input_size:
        raise ValueError(f"resize side {side} is smaller than input_size={input_size}: nothing to crop")
    return side


def heat_input(image: Image.Image, input_size: int, resize_size: int | None = None) -> Tensor:
    """The published view: squash to ``resize_side`` x ``resize_side`` (bilinear, antialiased),
    centre crop ``input_size``: a PIL RGB image -> uint8 (3,S,S)."""
    pixels = TF.pil_to_tensor(image)
    side = resize_side(input_size, resize_size)
    pixels = TF.resize(pixels, [side, side], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(pixels, [input_size, input_size])


def normalize_image(image: Tensor) -> Tensor:
    """uint8 (3,H,W) -> (1,3,H,W) float, ImageNet-normalised (the batch contract)."""
    pixels = image.float()[None] / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def pim_heat_maps(model: nn.Module, image: Tensor, threshold: float = HEAT_THRESHOLD,
                  target_class: int | None = None) -> HeatMaps:
    """The published heat images and the class-specific Grad-CAM of one image.

    Args:
        model: a PIM, on its device.
        image: uint8 (3,S,S) RGB, the view of :func:`heat_input`.
        threshold: heat below it is not drawn (published 0.75), for both maps.
        target_class: the class Grad-CAM explains; None = the predicted class.

    Returns:
        :class:`HeatMaps` (images keyed as :data:`HEAT_FILES`).
    """
    num_classes = int(getattr(model, "num_classes", 0)) or None
    if target_class is not None and num_classes is not None and not 0 <= target_class < num_classes:
        raise ValueError(f"target_class={target_class}: the model has {num_classes} classes (0..{num_classes - 1})")
    device = next(model.parameters()).device
    images = normalize_image(image).to(device)
    heat = published_heat(model, images)[0].cpu()
    result = class_grad_cam(model, images, target_class)
    cam = result.cams[0, 0].cpu()
    crop = image.permute(1, 2, 0).contiguous().cpu().numpy()
    heat_image, cam_image = red_heat_image(heat, threshold), red_heat_image(cam, threshold)
    images_out = {"heatmap": heat_image, "rbg_img": crop, "mix": overlay(crop, heat_image),
                  "gradcam": cam_image, "gradcam_mix": overlay(crop, cam_image)}
    return HeatMaps(images_out, heat, cam, int(result.logits[0].argmax()), int(result.targets[0]))


def write_heat_images(images: Mapping[str, np.ndarray], save_dir: str | Path) -> list[Path]:
    """Write each image as its :data:`HEAT_FILES` name (JPEG, atomically) in ``save_dir``.

    Returns:
        The written paths, in :data:`HEAT_FILES` order.
    """
    save_dir = Path(save_dir)
    return [save_image(save_dir / name, images[key]) for key, name in HEAT_FILES.items() if key in images]


def is_pim(model: nn.Module) -> bool:
    """Whether ``model`` has PIM's stage maps and head (``backbone.forward_stages``, ``heads``)."""
    return hasattr(model, "heads") and hasattr(getattr(model, "backbone", None), "forward_stages")


def require_pim_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint (ours or imported) and check it holds a PIM (a model with ``heads``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, an unknown model, or not a PIM (each names the file).
    """
    checkpoint = import_checkpoint(path)
    name = checkpoint.get("model_name")
    if name not in list_models():
        raise ValueError(f"{path}: holds an unknown model {name!r}; heat.py needs a PIM checkpoint (model_type='pim')")
    if not hasattr(model_class(name), "heads"):
        raise ValueError(f"{path}: holds a {name!r} model; heat.py draws PIM's stage maps and needs a PIM "
                         "checkpoint (model_type='pim')")
    return checkpoint


def checkpoint_classes(checkpoint: Mapping, path: str | Path) -> int:
    """K of a PIM checkpoint: its saved config's ``num_classes``, else the rows of the combiner's
    classifier (an ImageFolder run takes K from its data and saves ``num_classes=None``)."""
    saved = (checkpoint.get("config") or {}).get("num_classes")
    if isinstance(saved, int) and saved > 0:
        return saved
    weight = checkpoint["model"].get("combiner.classifier.weight")
    if weight is None:
        raise ValueError(f"{path}: no 'num_classes' in its config and no 'combiner.classifier.weight' in its weights")
    return int(weight.shape[0])


def heat_parser(prog: str) -> argparse.ArgumentParser:
    """The heat-only flags; every other ``--key=value`` goes to the tree's config."""
    parser = argparse.ArgumentParser(
        prog=prog, add_help=False, allow_abbrev=False,
        description="PIM heat maps of one image (FGVC-PIM heat.py) and the combiner's Grad-CAM of a class.",
        epilog="Other --key=value items are the tree's config keys (--checkpoint=..., --device=...); "
               f"files written: {', '.join(HEAT_FILES.values())}.")
    parser.add_argument("--img", required=True, help="the image file")
    parser.add_argument("--save_img", required=True, help="folder the images are written to")
    parser.add_argument("--threshold", type=float, default=HEAT_THRESHOLD,
                        help=f"heat below it is not drawn (published {HEAT_THRESHOLD})")
    parser.add_argument("--target_class", type=int, default=None,
                        help="the class the Grad-CAM explains (default: the predicted class)")
    return parser


def main(tree_loader: TreeLoader, argv: list[str] | None = None, prog: str = "heat.py") -> int:
    """The heat CLI of a tree: parse the heat flags, load the tree's PIM checkpoint, write the images.

    Args:
        tree_loader: ``argv -> (model, config, checkpoint path)`` with the remaining items
            (the tree's ``--key=value``); raises ``ValueError``/``OSError`` naming the file.
        argv: the command line (``sys.argv[1:]`` when None).
        prog: the script's name in the usage line.

    Returns:
        0, or 2 after reporting a bad flag, checkpoint, model or image (no traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = heat_parser(prog)
    if "--help" in argv or "-h" in argv:
        print(parser.format_help())
        tree_loader(["--help"])  # the tree's config keys; exits
        return 0
    args, rest = parser.parse_known_args(argv)  # a missing --img/--save_img: usage and exit status 2
    log = report_logger()
    try:
        if not 0.0 <= args.threshold <= 1.0:
            raise ValueError(f"--threshold={args.threshold}: expected a value in [0, 1] (published {HEAT_THRESHOLD})")
        model, config, checkpoint = tree_loader(rest)
        if not is_pim(model):
            raise ValueError(f"{checkpoint}: holds a {getattr(model, 'name', type(model).__name__)!r} model; "
                             "heat.py draws PIM's stage maps and needs a PIM checkpoint (model_type='pim')")
        input_size = int(config["input_size"])
        image = heat_input(load_rgb_image(args.img), input_size, config.get("resize_size"))
        model.to(resolve_device(config["device"])).eval()
        maps = pim_heat_maps(model, image, args.threshold, args.target_class)
        written = write_heat_images(maps.images, args.save_img)
    except (ValueError, OSError) as error:
        log.error("error: %s", error)
        return 2
    log.info(f"{args.img}: predicted class {maps.predicted}, Grad-CAM of class {maps.target}, heat threshold "
             f"{args.threshold} ({checkpoint}, {input_size} px) -> {', '.join(str(path) for path in written)}")
    return 0
