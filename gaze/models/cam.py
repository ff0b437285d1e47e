"""Grad-CAM (Selvaraju et al., ICCV 2017): one batched core for every model and use.

cam = ReLU(Σ_c w_c · A_c) with w_c = spatial mean of ∂score/∂A_c, where A is the output of
a named layer (default the first of ``model.cam_layers``: the backbone's final feature map)
and score is the logit of the target class (predicted, or given). :func:`cam_from_features`
is the core, with or without a graph (differentiable for training losses such as GRADIA's,
detached for panels), ReLU and min-max as options; :func:`grad_cam` wraps it for inference
on any layer (a forward hook), upsampled to the input size.

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


def target_classes(logits: Tensor, targets: Tensor | int | None) -> Tensor:
    """(B,) long: the given class per sample, one int for all, or None = argmax(logits)."""
    if targets is None:
        return logits.argmax(dim=1)
    if isinstance(targets, int):
        return torch.full((logits.shape[0],), targets, device=logits.device, dtype=torch.long)
    return targets.to(logits.device)


def cam_from_features(
    features: Tensor,
    logits: Tensor,
    targets: Tensor,
    differentiable: bool = False,
    relu: bool = True,
    normalize: bool = True,
    size: tuple[int, int] | None = None,
    eps: float = 1e-7,
) -> Tensor:
    """Grad-CAM of ``targets`` from feature maps and the logits computed from them.

    w_c = spatial mean of d logit[target] / d A_c, cam = sum_c w_c A_c, for the whole batch
    with one ``autograd.grad`` of the summed target logits: exact per sample whenever
    nothing after ``features`` mixes samples (pooling and a Linear head; BatchNorm before
    ``features`` is fine, in train mode too).

    Args:
        features: (B,C,h,w) in the graph of ``logits``.
        logits: (B,K).
        targets: (B,) class per sample.
        differentiable: keep the graph: the map is differentiable in ``features`` (for a
            training loss; the gradient weights are detached, GRADIA's published choice,
            gradia_cal A) and ``logits`` can still be back-propagated. False: all detached.
        relu: ReLU the weighted sum (Selvaraju et al.; GRADIA's loss uses none).
        normalize: min-max per sample, ``(cam - min) / (max - min + eps)``: a constant map
            gives zeros, never NaN.
        size: (H, W) to upsample to (bilinear), None = the feature grid.
        eps: of the min-max denominator.

    Returns:
        (B,1,h,w) or (B,1,H,W).
    """
    score = logits.gather(1, targets[:, None]).sum()
    (gradients,) = torch.autograd.grad(score, features, retain_graph=differentiable)
    weights = gradients.detach().mean(dim=(2, 3), keepdim=True)  # (B,C,1,1)
    cams = (weights * (features if differentiable else features.detach())).sum(dim=1, keepdim=True)
    if relu:
        cams = F.relu(cams)
    if size is not None:
        cams = F.interpolate(cams, size=size, mode="bilinear", align_corners=False)
    if normalize:
        low = cams.amin(dim=(2, 3), keepdim=True)
        high = cams.amax(dim=(2, 3), keepdim=True)
        cams = (cams - low) / (high - low + eps)
    return cams


def grad_cam(
    model: nn.Module,
    images: Tensor,
    gaze: Tensor | None = None,
    targets: Tensor | int | None = None,
    layer: str | None = None,
    eps: float = 1e-7,
) -> CamResult:
    """Grad-CAM maps of a batch at inference (eval mode, detached), for panels and reports.

    Args:
        model: any registered model (``forward(images, gaze=None) -> logits``).
        images: (B,3,H,W) ImageNet-normalised.
        gaze: (B,1,H,W) for models that need it (KFN), else None.
        targets: class per sample (B,) or one int for all; None = the predicted class.
        layer: module name as in ``model.named_modules()`` (e.g. 'backbone.net.layer3');
            default the first of ``model.cam_layers`` ('backbone'; KFN 'image_backbone').
        eps: added to the max - min denominator.

    Returns:
        ``CamResult(cams, logits, targets)``, all detached; cams ReLU'd, upsampled to the
        input size and min-max scaled.
    """
    layer = layer or next(iter(model.cam_layers.values()))
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
            targets = target_classes(logits, targets)
            cams = cam_from_features(activations[0], logits, targets, size=images.shape[-2:], eps=eps)
    finally:
        handle.remove()
        model.train(was_training)
    return CamResult(cams, logits.detach(), targets)
