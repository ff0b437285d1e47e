"""GG-CAM, Gaze-Guided Class Activation Mapping (Zhu, Salcudean, Rohling, arXiv 2202.07107; cxr §3).

A backbone's final feature map F (B,C,h,w) goes through a CAM layer: one map per class,
CAM_k = (1/C)·Σ_c W_kc·F_c, and the logit z_k = mean_{h,w}(CAM_k) + b_k (cxr §3.2). During
training the raw CAM of one class is pulled towards the human gaze map by an MSE, and the
CE and MSE are balanced by two trainable uncertainties (cxr §3.4):

    L = CE(z, y)/σ_c² + log(σ_c + 1) + MSE(CAM_t, G)/(2σ_d²) + log(σ_d + 1),

σ_c = e^{log_sigma_ce}, σ_d = e^{log_sigma_gaze}, G the gaze averaged down to the CAM grid
and divided by its max. Inference needs only the image.

Implicit curriculum (cxr §3.4 Dynamics): the published initial values log σ_c = 7 (CE weight
e^{-14} ≈ 8.3e-7) and log σ_d = −16 for EfficientNet (MSE weight e^{32}/2 ≈ 3.9e13) or −23
for ResNet (e^{46}/2 ≈ 4.7e19) make early training pure CAM-to-gaze matching. Adam moves
each log σ by about the lr (6e-3 / 5e-3) per step, so the balance shifts towards the CE only
after ~1,000+ steps; the stationary points satisfy σ_c³/(σ_c+1) = 2·CE and
σ_d³/(σ_d+1) = MSE. These initial values are the defaults here, so the curriculum is
reproduced knowingly; pass other values to change it.

Choices and deviations, each documented where it lives:
- ``cam_target='true'`` (default, a FIX): the CAM of the true class is matched to the gaze.
  ``'class0'`` reproduces the published code, where ŷ = int(sigmoid(y·e^{lg_k})) is 0 for
  every label, so the Normal-class CAM is always matched (cxr §3.4 Bug).
- The published third scalar ``lg_k`` never gets a gradient (its only use goes through
  ``int``), so it is not created; only log σ_c and log σ_d are parameters.
- The CAM layer is a 1×1 convolution with W/C instead of the published B×K×C×h×w broadcast
  (identical values, no K·C·h·w intermediate).
- ``gaze_sampling='area'`` (default) averages each CAM cell's area of the gaze map;
  ``'point'`` takes every stride-th pixel, as the published pipeline sampled every 64th
  pixel of the padded Blur500 map (cxr §3.1; with ``gaze.data.transforms.GGCAMTransform``).
- Backbones are timm's (see ``GGCAM``), not the published from-scratch networks (cxr §3.3).
- The loss terms are combined in float32 even under autocast (the weights reach 4.7e19).
- ``use_gaze=False`` is the gaze-free baseline (published ``dissimilarity_loss=None``):
  plain CE on the CAM logits, no σ terms.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaze.models._registry import register_model
from gaze.models.backbones import create_backbone
from gaze.models.base import GazeModel

log = logging.getLogger(__name__)

#: cam_target -> what it reproduces (cxr §3.4).
CAM_TARGETS = {
    "true": "the CAM of the true class is matched to the gaze (fix)",
    "class0": "the Normal-class CAM (class 0) is matched for every label (published bug)",
}

#: gaze_sampling -> how the gaze map becomes the CAM-grid target.
GAZE_SAMPLINGS = {
    "area": "the mean of each CAM cell's pixels (ours)",
    "point": "every stride-th pixel, as the published 64-px point sampling (cxr §3.1)",
}

#: Published initial log σ_gaze per backbone family (cxr §3.4 / §3.5); log σ_ce = 7 for both.
PUBLISHED_LOG_SIGMA_GAZE = {"efficientnet": -16.0, "resnet": -23.0}
PUBLISHED_LOG_SIGMA_CE = 7.0


def published_log_sigma_gaze(backbone: str) -> float:
    """Published initial log σ_gaze for a backbone name: −16 EfficientNet, −23 ResNet.

    Other families get the EfficientNet value −16 (the paper has no value for them); a
    warning says so.
    """
    name = backbone.lower()
    for family, value in PUBLISHED_LOG_SIGMA_GAZE.items():
        if family in name:
            return value
    log.warning(
        "GG-CAM: no published log_sigma_gaze for backbone %r (EfficientNet -16, ResNet -23, "
        "cxr §3.4); using -16", backbone,
    )
    return PUBLISHED_LOG_SIGMA_GAZE["efficientnet"]


class CamLayer(nn.Module):
    """Class activation maps as a channel mean, and logits as their spatial mean (cxr §3.2).

    ``logits(forward(F))`` equals global average pooling followed by Linear(W/C, b).

    Attributes:
        weight: (K, C), U(−1/√C, 1/√C) as published.
        bias: (K,), U(−1/√C, 1/√C) as published.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        """Args:
            in_channels: C, channels of the feature map.
            num_classes: K, one map per class.
        """
        super().__init__()
        self.in_channels = in_channels
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_classes).uniform_(-bound, bound))

    def forward(self, features: Tensor) -> Tensor:
        """CAMs (B,K,h,w) = (1/C)·Σ_c W_kc·F_c of features (B,C,h,w) (a 1×1 convolution)."""
        kernel = (self.weight / self.in_channels)[:, :, None, None]  # (K,C,1,1)
        return F.conv2d(features, kernel.to(features.dtype))

    def logits(self, cams: Tensor) -> Tensor:
        """Logits (B,K) = spatial mean of the CAMs (B,K,h,w) + bias."""
        return cams.mean(dim=(2, 3)) + self.bias.to(cams.dtype)


@register_model("ggcam")
class GGCAM(GazeModel):
    """Backbone -> CAM layer; training matches one class's raw CAM to the gaze (cxr §3).

    Backbones are timm networks built by ``create_backbone`` (random init by default, as the
    paper trains from scratch). They differ from the published ones (cxr §3.3):
    - 'efficientnetv2_s' (timm): 1280 feature channels. The published EffNetV2-S variant
      (d-li14) has a 272-channel last stage (reference design 256) and a 1792-channel head.
    - 'resnet50' (timm/torchvision): 2048 channels, max-pool after the stem and stride 2 in
      stages 2-4. The published ResNet50-like net has no max-pool, a biased 7×7 stem conv,
      and stride 2 in the first block of every stage.
    Both reach a total stride of 32, so 1536×1280 inputs give the published 48×40 CAM grid.

    Attributes:
        backbone: ``Backbone`` (ImageNet-normalised images -> (B,C,h,w)).
        cam_head: ``CamLayer`` (C -> num_classes maps).
        log_sigma_ce, log_sigma_gaze: trainable scalars (published ``lg_c``, ``lg_d``).
        epoch: 1-based epoch, set by the engine (unused).

    Facts (see ``GazeModel``): the gaze in training and validation (its loss is the
    selection metric, cxr §3.5), none at inference or with ``use_gaze=False``; Grad-CAM of
    the final feature map; no ColorJitter.
    """

    gaze_splits = frozenset({"train", "val"})
    config_keys = {"use_gaze": "ggcam_use_gaze"}

    @classmethod
    def training_recipe(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The published GG-CAM training (cxr §3.5) as config values, for keys left unset.

        From scratch; Adam 6e-3 (EfficientNet) / 5e-3 (ResNet); ReduceLROnPlateau on the
        validation loss (the whole weighted sum) with patience 40 and a reload of the best
        weights on every drop; stop after 83 epochs without improvement or below lr 1e-8.
        """
        use_gaze = config.get(cls.config_keys["use_gaze"], True)
        return {
            "pretrain_path": None,
            "optimizer": "adam",
            "init_lr": 5e-3 if "resnet" in config["backbone"] else 6e-3,
            "lr_schedule": "plateau",
            "early_stop_patience": 83,
            "select_metric": "loss",
            "val_loss": "model" if use_gaze else "ce",
            "reload_best_on_lr_drop": True,
            "stop_lr": 1e-8,
        }

    @classmethod
    def needs_gaze(cls, split: str, config: Mapping[str, Any]) -> bool:
        """The gaze in training and validation, unless ``use_gaze`` is off."""
        return super().needs_gaze(split, config) and bool(config.get(cls.config_keys["use_gaze"], True))

    def __init__(
        self,
        num_classes: int = 3,
        backbone: str = "efficientnetv2_s",
        input_size: int | tuple[int, int] = 224,
        pretrained_path: str | None = None,
        use_gaze: bool = True,
        cam_target: str = "true",
        log_sigma_ce: float = PUBLISHED_LOG_SIGMA_CE,
        log_sigma_gaze: float | None = None,
        gaze_sampling: str = "area",
    ) -> None:
        """Args:
            num_classes: output classes (CXR: 3, Normal/CHF/pneumonia).
            backbone: timm architecture ('efficientnetv2_s', 'resnet50', or any other).
            input_size: training image side in px, or (H, W) (published 1536×1280); kept for
                the common constructor signature.
            pretrained_path: local weight file or package alias (see ``backbones``); None =
                random init, as the paper trains from scratch.
            use_gaze: False trains the gaze-free baseline (plain CE on the CAM logits; the
                published ``dissimilarity_loss=None``, cxr §3.4).
            cam_target: 'true' (default, the fix) matches the true class's CAM to the gaze;
                'class0' matches the Normal-class CAM for every label, as the published code
                does (cxr §3.4 Bug).
            log_sigma_ce: initial log σ_c (published 7 for both networks).
            log_sigma_gaze: initial log σ_d; None = the published value for the backbone
                family (−16 EfficientNet, −23 ResNet; −16 with a warning for others).
            gaze_sampling: how the gaze map becomes the CAM-grid target, see
                :data:`GAZE_SAMPLINGS` ('point' is the published one).
        """
        super().__init__()
        if gaze_sampling not in GAZE_SAMPLINGS:
            raise ValueError(f"gaze_sampling={gaze_sampling!r}: expected one of {', '.join(GAZE_SAMPLINGS)}")
        self.gaze_sampling = gaze_sampling
        if cam_target not in CAM_TARGETS:
            choices = "; ".join(f"{key!r}: {text}" for key, text in CAM_TARGETS.items())
            raise ValueError(f"unknown cam_target {cam_target!r}; choices: {choices}")
        self.num_classes = num_classes
        self.input_size = input_size
        self.use_gaze = use_gaze
        self.cam_target = cam_target
        self.epoch = 1
        self.backbone = create_backbone(backbone, pretrained_path)
        self.cam_head = CamLayer(self.backbone.num_features, num_classes)
        if log_sigma_gaze is None:
            log_sigma_gaze = published_log_sigma_gaze(backbone)
        # Published lg_k is not created: it never receives a gradient (see module docstring).
        self.log_sigma_ce = nn.Parameter(torch.tensor(float(log_sigma_ce)))
        self.log_sigma_gaze = nn.Parameter(torch.tensor(float(log_sigma_gaze)))

    def cams(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Raw CAMs (B,K,h,w) and logits (B,K) of ImageNet-normalised images (B,3,H,W)."""
        cams = self.cam_head(self.backbone(images))
        return cams, self.cam_head.logits(cams)

    def forward_features(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """The backbone's final feature map (B,C,h,w); gaze is ignored (inference is image-only)."""
        return self.backbone(images)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (B, num_classes): the CAM layer's maps, globally pooled."""
        return self.cam_head.logits(self.cam_head(features))

    def describe(self) -> dict[str, Any]:
        """CAM target, gaze use and the learnt uncertainty weights σ_c, σ_d (GG-CAM's params file)."""
        return {"cam_target": self.cam_target, "use_gaze": self.use_gaze,
                "sigma_ce": float(self.log_sigma_ce.detach().exp()),
                "sigma_gaze": float(self.log_sigma_gaze.detach().exp())}

    def gaze_targets(self, gaze: Tensor, size: tuple[int, int], eps: float = 1e-8) -> Tensor:
        """The gaze at CAM resolution (``gaze_sampling``), then divided by the per-sample max.

        'point': pixels 0, s, 2s, ... with s = H // h (W // w): the published pipeline
        sampled every 64th pixel of the padded map, i.e. every 32nd input pixel of the
        1536x1280 input (cxr §3.1). 'area': each cell's mean (the alias-free alternative).

        Args:
            gaze: (B,1,H,W) attention maps in [0, 1].
            size: (h, w) of the CAM grid.
            eps: lower bound of the divisor (an all-zero map stays zero).

        Returns:
            (B,1,h,w) float32 in [0, 1], max 1 unless the map is all zero.
        """
        height, width = size
        if self.gaze_sampling == "point":
            step_h, step_w = gaze.shape[-2] // height, gaze.shape[-1] // width
            pooled = gaze.float()[..., ::step_h, ::step_w][..., :height, :width]
        else:
            pooled = F.adaptive_avg_pool2d(gaze.float(), (height, width))
        return pooled / pooled.amax(dim=(2, 3), keepdim=True).clamp_min(eps)

    def loss(self, batch: dict) -> dict[str, Tensor]:
        """Uncertainty-weighted CE + CAM-to-gaze MSE (cxr §3.4), terms combined in float32.

        Returns:
            {'loss', 'loss_ce' (raw CE), 'loss_gaze' (raw MSE), 'sigma_ce', 'sigma_gaze'
            (detached σ values), 'logits' (detached)}; with ``use_gaze=False``
            {'loss' = CE, 'loss_ce', 'logits'}.
        """
        images, labels = batch["image"], batch["label"]
        cams, logits = self.cams(images)
        loss_ce = F.cross_entropy(logits.float(), labels)
        if not self.use_gaze:
            return {"loss": loss_ce, "loss_ce": loss_ce, "logits": logits.detach()}
        gaze = batch.get("gaze")
        if gaze is None:
            raise KeyError(
                "GG-CAM with use_gaze=True needs batch['gaze'] (B,1,H,W) in [0,1] "
                "(use_gaze=False trains the gaze-free baseline)"
            )
        if gaze.dim() != 4 or gaze.shape[:2] != (images.shape[0], 1):
            raise ValueError(f"gaze must be (B,1,H,W) for {images.shape[0]} images, got {tuple(gaze.shape)}")
        targets = labels if self.cam_target == "true" else torch.zeros_like(labels)
        rows = torch.arange(len(labels), device=cams.device)
        target_cams = cams[rows, targets].unsqueeze(1).float()  # (B,1,h,w), raw: no ReLU/scaling
        loss_gaze = F.mse_loss(target_cams, self.gaze_targets(gaze, cams.shape[-2:]))
        # 1/σ² = e^{-2 log σ} and log(σ + 1) = softplus(log σ), in float32 (weights up to 4.7e19).
        log_sigma_ce, log_sigma_gaze = self.log_sigma_ce.float(), self.log_sigma_gaze.float()
        loss = (
            loss_ce * torch.exp(-2 * log_sigma_ce) + F.softplus(log_sigma_ce)
            + loss_gaze * torch.exp(-2 * log_sigma_gaze) / 2 + F.softplus(log_sigma_gaze)
        )
        return {
            "loss": loss,
            "loss_ce": loss_ce,
            "loss_gaze": loss_gaze,
            "sigma_ce": log_sigma_ce.detach().exp(),
            "sigma_gaze": log_sigma_gaze.detach().exp(),
            "logits": logits.detach(),
        }
