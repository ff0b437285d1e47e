"""Grad-CAM (Selvaraju et al., ICCV 2017) for any registered model, batched.

cam = ReLU(Σ_c w_c · A_c) with w_c = spatial mean of ∂score/∂A_c, where A is the output of
a named layer (default ``model.cam_layer``: the backbone's final feature map) and score is
the logit of the target class (predicted, or given). The map is upsampled bilinearly to the
input size and min-max scaled per sample.

Fixes against the published ``utils/gradcam.py`` (cub_pim §1.9): no missing ``F`` import or
dim-0 sort; the whole batch at once (not sample 0 only) with one ``autograd.grad`` (samples
are independent in eval mode, so the gradient of the summed target logits is per-sample);
no deprecated backward hooks, no ``retain_graph``, hooks always removed; the model's
train/eval mode restored; the target is argmax(logits) (argmax(sigmoid) is the same);
gradients are not RMS-normalised (a per-map positive scale that min-max removes); min-max
with an epsilon, so a constant map gives zeros instead of NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CamResult(NamedTuple):
    """cams (B,1,H,W) in [0, 1]; logits (B,C); targets (B,) the explained classes."""

    cams: Tensor
    logits: Tensor
    targets: Tensor


def grad_cam(
    model: nn.Module,
    images: Tensor,
    gaze: Tensor | None = None,
    targets: Tensor | int | None = None,
    layer: str | None = None,
    eps: float = 1e-7,
) -> CamResult:
    """Grad-CAM maps of a batch.

    Args:
        model: any registered model (``forward(images, gaze=None) -> logits``).
        images: (B,3,H,W) ImageNet-normalised.
        gaze: (B,1,H,W) for models that need it (KFN), else None.
        targets: class per sample (B,) or one int for all; None = the predicted class.
        layer: module name as in ``model.named_modules()`` (e.g. 'backbone.net.layer3');
            default ``model.cam_layer`` ('backbone', KFN 'image_backbone').
        eps: added to the max − min denominator.

    Returns:
        ``CamResult(cams, logits, targets)``, all detached.
    """
    layer = layer or getattr(model, "cam_layer", "backbone")
    try:
        module = model.get_submodule(layer)
    except AttributeError as error:
        raise ValueError(f"{type(model).__name__} has no layer {layer!r} for Grad-CAM") from error
    activations: list[Tensor] = []

    def keep_output(_module, _inputs, output):
        if not output.requires_grad:  # frozen weights: still track from here on
            output.requires_grad_(True)
        activations.append(output)

    handle = module.register_forward_hook(keep_output)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(images, gaze=gaze)
            if len(activations) != 1:
                raise RuntimeError(
                    f"layer {layer!r} ran {len(activations)} times in one forward; "
                    "pick a layer that runs once"
                )
            features = activations[0]  # (B,C,h,w)
            if targets is None:
                targets = logits.argmax(dim=1)
            elif isinstance(targets, int):
                targets = torch.full((logits.shape[0],), targets, device=logits.device, dtype=torch.long)
            targets = targets.to(logits.device)
            score = logits.gather(1, targets[:, None]).sum()
            (gradients,) = torch.autograd.grad(score, features)
    finally:
        handle.remove()
        model.train(was_training)
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # (B,C,1,1)
    cams = F.relu((weights * features.detach()).sum(dim=1, keepdim=True))  # (B,1,h,w)
    cams = F.interpolate(cams, size=images.shape[-2:], mode="bilinear", align_corners=False)
    low = cams.amin(dim=(2, 3), keepdim=True)
    high = cams.amax(dim=(2, 3), keepdim=True)
    cams = (cams - low) / (high - low + eps)
    return CamResult(cams, logits.detach(), targets)
