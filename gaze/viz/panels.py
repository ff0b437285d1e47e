"""Grad-CAM panels beside the human attention, written by every experiment tree."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from gaze.models.cam import grad_cam
from gaze.viz.plots import plot_attention_panels


def write_cam_panels(
    model: nn.Module,
    batch: Mapping,
    class_names: Sequence[str],
    out_dir: Path,
    pass_gaze: bool,
    layers: Mapping[str, str | None],
    prefix: str = "",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[Path]:
    """One PNG per sample: image, human attention, then Grad-CAM of the predicted class per layer.

    Args:
        model: a registered model on its device.
        batch: ``image`` (B,3,H,W) normalised, ``gaze`` (B,1,H,W), ``label`` (B,), ``id``.
        class_names: C names for the titles.
        out_dir: folder of ``<prefix><id>.png``.
        pass_gaze: give the gaze to the model (KFN needs it; GAT, GG-CAM and baselines do not).
        layers: panel title -> module name for Grad-CAM (None: the model's ``cam_layer``),
            e.g. KFN's two branches.
        prefix: file-name prefix (e.g. the model name).
        mean, std: the image normalisation to undo for display (the transform's).
    """
    device = next(model.parameters()).device
    images, gaze = batch["image"].to(device), batch["gaze"].to(device)
    results = {title: grad_cam(model, images, gaze if pass_gaze else None, layer=layer)
               for title, layer in layers.items()}
    targets = next(iter(results.values())).targets
    pictures = (denormalize(images, mean, std).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype("uint8")
    paths = []
    for k, sample_id in enumerate(batch["id"]):
        label, predicted = int(batch["label"][k]), int(targets[k])
        title = f"{sample_id}: true {class_names[label]}, predicted {class_names[predicted]}"
        maps = {"human attention": gaze[k, 0].cpu().numpy()}
        maps.update({name: result.cams[k, 0].cpu().numpy() for name, result in results.items()})
        paths.append(plot_attention_panels(pictures[k], maps, title, out_dir / f"{prefix}{sample_id}.png"))
    return paths


def first_batch(dataset: torch.utils.data.Dataset, count: int) -> dict:
    """The first ``count`` items of a dataset collated into one batch."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, min(count, len(dataset))))
    return next(iter(loader))
