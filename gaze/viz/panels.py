"""Grad-CAM panels beside the human attention, written by every experiment tree."""

from __future__ import annotations

from pathlib import Path

import torch

from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from gaze.models.base import GazeModel
from gaze.models.cam import grad_cam
from gaze.viz.plots import plot_attention_panels


def write_cam_panels(model: GazeModel, dataset: torch.utils.data.Dataset, count: int, out_dir: Path) -> list[Path]:
    """One PNG per sample of the first ``count`` items: image, human attention, then Grad-CAM
    of the predicted class at each of the model's ``cam_layers`` (KFN: one per branch).

    Args:
        model: a registered model on its device (the gaze goes in when its inference needs it).
        dataset: items with ``image`` (3,H,W) normalised, ``gaze`` (1,H,W) or a human ``mask``, ``label``, ``id``,
            and ``class_names``; its ``transform.mean/std`` (default ImageNet) are undone for display.
        count: panels to write (0: none).
        out_dir: folder of ``<model.panel_prefix><id>.png`` (HAFC: ``TwoBranch_<id>.png`` for KFN).

    Returns:
        The written paths, in dataset order.
    """
    if count <= 0 or len(dataset) == 0:
        return []
    batch = first_batch(dataset, count)
    human = batch.get("gaze", batch.get("mask"))
    if human is None:
        raise ValueError(f"{type(dataset).__name__}: the Grad-CAM panels need items with 'gaze' or 'mask' "
                         "(the human attention)")
    transform = getattr(dataset, "transform", None)
    mean, std = getattr(transform, "mean", IMAGENET_MEAN), getattr(transform, "std", IMAGENET_STD)
    device = next(model.parameters()).device
    images, gaze = batch["image"].to(device), human.to(device)
    model_gaze = gaze if model.inference_needs_gaze else None
    results = {f"{title} ({model.name})": grad_cam(model, images, model_gaze, layer=layer)
               for title, layer in model.cam_layers.items()}
    targets = next(iter(results.values())).targets
    pictures = (denormalize(images, mean, std).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype("uint8")
    class_names = dataset.class_names
    paths = []
    for k, sample_id in enumerate(batch["id"]):
        label, predicted = int(batch["label"][k]), int(targets[k])
        title = f"{sample_id}: true {class_names[label]}, predicted {class_names[predicted]}"
        maps = {"human attention": gaze[k, 0].cpu().numpy()}
        maps.update({name: result.cams[k, 0].cpu().numpy() for name, result in results.items()})
        paths.append(plot_attention_panels(pictures[k], maps, title, out_dir / f"{model.panel_prefix}{sample_id}.png"))
    return paths


def first_batch(dataset: torch.utils.data.Dataset, count: int) -> dict:
    """The first ``count`` items of a dataset collated into one batch."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, min(count, len(dataset))))
    return next(iter(loader))
