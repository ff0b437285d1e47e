"""GRADIA (Gao et al., CSCW'22; gradia_cal.md Part A): align a classifier's Grad-CAM with human attention.

Phase 1 trains the classifier with cross-entropy. Phase 2 fine-tunes it with

    L = mean_i(w_ce_i CE_i) + mean_{j: w_att_j > 0}(w_att_j * mean_hw |cam_j - M_j|)

where cam is the differentiable Grad-CAM of the ground-truth class at the last stage
(gradient weights detached, no ReLU, min-max with an epsilon: A6), M the human mask
area-downsampled to the feature grid, blurred 3x3 and divided by its max (A3), and the
weights come from the reasonability ratings (``gaze.attention.annotations``).

Differences from the published code, each a named defect:
- G6: the CAM of the whole batch comes from the SAME train-mode forward as the CE (one
  ``autograd.grad``); the original ran one extra batch-of-one forward and backward per rated
  sample, with BatchNorm on that single image (its statistics, and running statistics
  updated B more times per step). Here BatchNorm sees the batch once, as for the CE; the CAM
  is exactly the per-sample one of that forward (nothing after the last stage mixes samples).
- G7: an all-zero mask (or a constant CAM) gives no NaN: such a sample has no attention term.
- The target is computed in float, not through the published uint8 image (mask x 255 ->
  INTER_AREA -> 3x3 blur, each rounded to integers): a difference below 1/255.
- G2, G4 are the trees' (the mask is flipped and cropped with the image; selection on
  validation). Evaluation (A7): Grad-CAM of the predicted class with ReLU, upsampled and
  min-max scaled, thresholded at 0.75 against the mask: IoU (published), precision, recall, F1.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from gaze.attention.annotations import GAZE_MASK_THRESHOLD, mask_from_gaze
from gaze.models._registry import register_model
from gaze.models.baseline import Baseline
from gaze.models.cam import cam_from_features

#: OpenCV's 3-tap Gaussian for ksize 3 and sigma <= 0 (its fixed small-kernel table), per axis.
BLUR_KERNEL = (0.25, 0.5, 0.25)
#: Published evaluation threshold of the min-max scaled Grad-CAM (A7).
IOU_THRESHOLD = 0.75


def attention_targets(masks: Tensor, size: tuple[int, int], eps: float = 1e-8) -> Tensor:
    """GRADIA's training target: masks area-downsampled to ``size``, blurred 3x3, / max (A3).

    Args:
        masks: (B,1,H,W) human masks in [0, 1].
        size: (h, w) of the feature grid (7x7 at 224 px).
        eps: lower bound of the divisor (an all-zero mask stays zero).

    Returns:
        (B,1,h,w) float32 in [0, 1]: ``cv2.GaussianBlur(cv2.resize(mask, size, INTER_AREA),
        (3, 3), 0) / max`` (OpenCV's kernel [0.25, 0.5, 0.25], border reflect-101).
    """
    pooled = F.adaptive_avg_pool2d(masks.float(), size)  # INTER_AREA for integer ratios (224 -> 7)
    kernel = torch.tensor(BLUR_KERNEL, dtype=pooled.dtype, device=pooled.device)
    if min(size) > 1:
        padded = F.pad(pooled, (1, 1, 1, 1), mode="reflect")  # reflect = OpenCV's BORDER_REFLECT_101
        blurred = F.conv2d(padded, kernel.view(1, 1, 1, 3))
        pooled = F.conv2d(blurred, kernel.view(1, 1, 3, 1))
    return pooled / pooled.amax(dim=(2, 3), keepdim=True).clamp_min(eps)


def attention_scores(predicted: Tensor, human: Tensor) -> dict[str, Tensor]:
    """Per-sample IoU, precision, recall and F1 of binary maps (B,1,H,W); NaN where the human
    mask is empty (those images are left out of the means, as published)."""
    predicted, human = predicted.flatten(1).bool(), human.flatten(1).bool()
    both = (predicted & human).sum(1).float()
    union = (predicted | human).sum(1).float()
    positive, relevant = predicted.sum(1).float(), human.sum(1).float()
    precision = torch.where(positive > 0, both / positive.clamp_min(1), torch.zeros_like(both))
    recall = both / relevant.clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(both))
    missing = relevant == 0
    scores = {"attention_iou": both / union.clamp_min(1), "attention_precision": precision,
              "attention_recall": recall, "attention_f1": f1}
    return {name: value.masked_fill(missing, float("nan")) for name, value in scores.items()}


@register_model("gradia")
class GRADIA(Baseline):
    """Backbone -> global pool -> Linear (published: torchvision ResNet-50, fc 2048 -> K),
    trained in two phases (``phase`` is set by the engine's ``fit_phases``).

    The human mask of a sample is ``batch['mask']`` (GRADIA's files, drawn PNGs) or, without
    one, its eye-tracking map thresholded (:func:`gaze.attention.annotations.mask_from_gaze`).
    Per-sample weights are ``batch['weight_ce']`` / ``batch['weight_att']``; without them every
    sample with a non-empty mask gets weight 1 in both terms.
    """

    gaze_splits = frozenset({"train", "val", "test"})  # masks from gaze: phase 2 and the IoU
    phases = ("phase1", "phase2")
    config_keys = {"mask_threshold": "gaze_threshold"}  # HAFC's mask rule, the trees' key

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "resnet50",
        input_size: int | tuple[int, int] = 224,
        pretrained_path: str | None = None,
        dropout: float = 0.0,
        encoder_only: bool = False,
        drop_path_rate: float = 0.0,
        head_init: str = "default",
        mask_threshold: float = GAZE_MASK_THRESHOLD,
        iou_threshold: float = IOU_THRESHOLD,
    ) -> None:
        """Args (besides the Baseline ones; ``dropout`` 0: the published head has none):
            mask_threshold: of :func:`mask_from_gaze` when masks come from gaze maps.
            iou_threshold: of the evaluation Grad-CAM (0.75 as published, A7).
        """
        super().__init__(num_classes, backbone, input_size, pretrained_path, dropout, encoder_only, drop_path_rate,
                         head_init)
        self.mask_threshold = mask_threshold
        self.iou_threshold = iou_threshold
        self.phase = 1

    @classmethod
    def training_recipe(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Adam in both phases (A5, A6), lr 1e-3: the published 1e-4 (``protocol='published'``,
        for ResNet-50 on COCO photos) barely moves the CPU demo's Lite0 in 5 epochs a phase
        (test top-1 17 % against 50 % with 1e-3 on the synthetic CUB, chance 10 %). Phase 1
        keeps the best validation accuracy, phase 2 the best attention IoU (as published,
        A5-A6, but on validation: the published phase 2 chose on test, G4)."""
        return {"optimizer": "adam", "init_lr": 1e-3, "phase_select_metrics": ["top1", "attention_iou"]}

    def human_masks(self, batch: Mapping[str, Any]) -> Tensor | None:
        """(B,1,H,W) float {0, 1}: ``batch['mask']`` (>= 0.5 after the resize that softened its
        edges), else the gaze map thresholded, else None."""
        if batch.get("mask") is not None:
            return (batch["mask"] >= 0.5).float()
        if batch.get("gaze") is not None:
            return mask_from_gaze(batch["gaze"], self.mask_threshold).float()
        return None

    def loss(self, batch: dict) -> dict[str, Tensor]:
        """Phase 1: cross-entropy. Phase 2: the weighted CE + weighted CAM-to-mask L1 (A6).

        Returns:
            {'loss', 'loss_ce' (weighted), 'loss_attention' (phase 2; 0 when no sample has
            an attention term), 'logits' (detached)}.
        """
        if self.phase == 1:
            return super().loss(batch)
        images, labels = batch["image"], batch["label"]
        masks = self.human_masks(batch)
        if masks is None:
            raise KeyError("GRADIA phase 2 needs batch['mask'] or batch['gaze'] (B,1,H,W)")
        features = self.forward_features(images)  # (B,C,h,w)
        logits = self.forward_head(features)
        targets = attention_targets(masks, features.shape[-2:])
        has_mask = targets.flatten(1).amax(1) > 0
        ones = torch.ones_like(labels, dtype=logits.dtype)
        weight_ce = batch.get("weight_ce", ones).to(logits.dtype)
        weight_att = batch.get("weight_att", has_mask.to(logits.dtype)).to(logits.dtype)
        loss_ce = (weight_ce * F.cross_entropy(logits, labels, reduction="none")).mean()
        active = (weight_att > 0) & has_mask
        if active.any():
            cams = cam_from_features(features, logits, labels, differentiable=True, relu=False)  # (B,1,h,w)
            distances = (cams - targets).abs().mean(dim=(1, 2, 3))
            loss_attention = (weight_att[active] * distances[active]).mean()
        else:
            loss_attention = logits.new_zeros(())
        return {"loss": loss_ce + loss_attention, "loss_ce": loss_ce, "loss_attention": loss_attention,
                "logits": logits.detach()}

    def predict(self, batch: Mapping[str, Any]) -> Tensor | dict[str, Tensor]:
        """Logits, and with a human mask the attention scores of the predicted class's Grad-CAM
        (ReLU, upsampled, min-max, > ``iou_threshold``) per sample (A7)."""
        masks = self.human_masks(batch)
        if masks is None:
            return self(batch["image"])
        images = batch["image"]
        with torch.enable_grad():
            features = self.forward_features(images)
            logits = self.forward_head(features)
            cams = cam_from_features(features, logits, logits.argmax(1), size=images.shape[-2:])
        return {"logits": logits.detach(), **attention_scores(cams > self.iou_threshold, masks)}
