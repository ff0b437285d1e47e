"""WS-DAN and CAL (Rao et al., ICCV'21; gradia_cal.md Part B): attention maps, bilinear attention
pooling, counterfactual attention, attention crop and drop, centre loss.

Features F (B,C,h,w) of a backbone (ResNet layer4 at output stride 16 as published: 28x28
at 448 px) give M attention maps A = ReLU(BN(Conv1x1(F))) (no conv bias, BN eps 1e-3).
Bilinear attention pooling f_{m,c} = mean_hw A_m F_c, flattened (M*C), sign-sqrt and L2 over
the whole vector (B3); logits p = W(100 f), W bias-free. CAL adds the counterfactual
attention (U(0,2) in training, ones in evaluation) through the SAME W: the effect logits
p - W(100 f_bar) (B4). Training (B5-B7): two maps per sample drawn with weights
sqrt(sum A_m) (with replacement), a crop (bounding box of map >= U(0.4,0.6) max, padded by
0.1, resized back) and a drop (image * (map < U(0.2,0.5) max)), forwarded together as one
2B batch; L = 1/3 CE(raw) + CE([eff_raw; eff_aug]) + 2/3 CE(aug) + centre (CAL), or
(CE_raw + CE_crop + CE_drop)/3 + centre (WS-DAN, B12).

Differences from the published code (each says why):
- Crop and drop of the whole batch at once (one ``grid_sample`` for the crops, bilinear, the
  box's exact edges): the published loop crops sample by sample, an integer slice resized
  with ``F.upsample_bilinear``.
- An empty crop mask falls back to the whole image (the HW1 fix, C3).
- Centres are L2-normalised when used (the WS-DAN reproduction fix, B14), updated once
  per class per step by the MEAN of its samples (the published indexed write kept one
  sample per class, B6), all-reduced across DDP ranks (published: never synced) and saved
  in the state dict (resume-exact).
- The backbone's stride-16 last stage is timm's ``output_stride=16`` (layer4 dilated by 2);
  the published ResNet sets layer4's stride to 1 without dilation. Same weights, same map size.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from gaze.models._registry import register_model
from gaze.models.backbones import create_backbone
from gaze.models.base import GazeModel

#: Scale of the pooled vector before the classifier (WS-DAN's trick, B3 / B14 #4).
FEATURE_SCALE = 100.0
SQRT_EPS = 1e-6
#: Where the crop and drop maps come from (the gaze-guided variant; none of the papers has it).
ATTENTION_SOURCES = {
    "model": "the model's own attention maps, two drawn per sample (published)",
    "gaze": "the human gaze map for both the crop and the drop",
    "mixed": "each of the two maps is the gaze map with probability 1/2, else the model's drawn map",
}

#: Training crop and drop thresholds (fractions of the map's max, one uniform draw per sample) and crop padding (B5).
TRAIN_CROP_THETA, TRAIN_DROP_THETA, TRAIN_CROP_PADDING = (0.4, 0.6), (0.2, 0.5), 0.1


def bilinear_attention_pool(features: Tensor, attentions: Tensor) -> Tensor:
    """BAP (B3): (B,C,h,w) features and (B,M,h',w') maps -> (B, M*C), sign-sqrt, L2-normalised.

    Maps of another size are resized to the features' bilinearly (align_corners=True, as published).
    """
    if attentions.shape[-2:] != features.shape[-2:]:
        attentions = F.interpolate(attentions, size=features.shape[-2:], mode="bilinear", align_corners=True)
    pooled = torch.einsum("bmhw,bchw->bmc", attentions, features) / (features.shape[-2] * features.shape[-1])
    pooled = pooled.flatten(1)
    pooled = torch.sign(pooled) * torch.sqrt(pooled.abs() + SQRT_EPS)
    return F.normalize(pooled, dim=-1)


def map_choices(attentions: Tensor, draws: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """(B, draws) map indices drawn with replacement, weights sqrt(sum_hw A_m + eps) (B5)."""
    weights = torch.sqrt(attentions.detach().sum(dim=(2, 3)).clamp_min(0) + SQRT_EPS)
    return torch.multinomial(weights / weights.sum(1, keepdim=True), draws, replacement=True, generator=generator)


def crop_boxes(maps: Tensor, thresholds: Tensor, padding: float) -> Tensor:
    """(B,4) boxes x1, y1, x2, y2 (pixel edges) of ``maps >= thresholds`` per sample, padded by
    ``padding`` x H (rows) and x W (columns), clamped to the image; an empty mask gives the
    whole image.

    Args:
        maps: (B,1,H,W) attention maps at the image size.
        thresholds: (B,) absolute thresholds.
        padding: fraction of the side added on each side of the box.
    """
    mask = maps[:, 0] >= thresholds.view(-1, 1, 1)  # (B,H,W)
    height, width = mask.shape[-2:]
    rows, columns = mask.any(dim=2), mask.any(dim=1)  # (B,H), (B,W)
    empty = ~rows.any(dim=1)

    def extent(hit: Tensor, size: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(size, device=hit.device).expand_as(hit)
        first = torch.where(hit, index, size).amin(dim=1)
        last = torch.where(hit, index, -1).amax(dim=1) + 1  # exclusive
        return first, last

    top, bottom = extent(rows, height)
    left, right = extent(columns, width)
    pad_h, pad_w = padding * height, padding * width
    boxes = torch.stack([(left - pad_w).clamp_min(0), (top - pad_h).clamp_min(0),
                         (right + pad_w).clamp_max(width), (bottom + pad_h).clamp_max(height)], dim=1).float()
    whole = torch.tensor([0.0, 0.0, width, height], device=maps.device)
    return torch.where(empty[:, None], whole, boxes)


def crop_images(images: Tensor, boxes: Tensor) -> Tensor:
    """Each image's box (x1, y1, x2, y2 pixel edges) resized back to the image size, bilinear:
    one ``affine_grid`` + ``grid_sample`` for the batch (the box's edges map to the output's
    edges; the same samples as ``roi_align(aligned=True, sampling_ratio=1)``, faster on CPU)."""
    count, _, height, width = images.shape
    x1, y1, x2, y2 = boxes.to(images.dtype).unbind(1)
    theta = images.new_zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = (x2 - x1) / width, (x1 + x2) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = (y2 - y1) / height, (y1 + y2) / height - 1
    grid = F.affine_grid(theta, [count, images.shape[1], height, width], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def upsampled(maps: Tensor, size: Sequence[int]) -> Tensor:
    """(B,1,h,w) maps at the image size, bilinear with align_corners=True (published ``upsample_bilinear``)."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=True)


def uniform(low_high: tuple[float, float] | float, count: int, device, generator: torch.Generator | None) -> Tensor:
    """(count,) draws from U(low, high), or a constant."""
    if isinstance(low_high, (int, float)):
        return torch.full((count,), float(low_high), device=device)
    low, high = low_high
    return low + (high - low) * torch.rand(count, device=device, generator=generator)


def attention_crop_drop(images: Tensor, attentions: Tensor, crop_theta=TRAIN_CROP_THETA, drop_theta=TRAIN_DROP_THETA,
                        padding: float = TRAIN_CROP_PADDING, generator: torch.Generator | None = None,
                        gaze: Tensor | None = None, source: str = "model") -> tuple[Tensor, Tensor]:
    """The training augmentation of B5 for the whole batch: (crops, drops), each (B,3,H,W).

    Two maps per sample (:func:`map_choices`): the first crops, the second drops; thresholds
    are fractions of each map's max drawn per sample. With ``gaze`` (B,1,H',W') and ``source``
    'gaze' or 'mixed' (:data:`ATTENTION_SOURCES`) the human map takes the place of the drawn ones.
    """
    with torch.no_grad():
        size = images.shape[-2:]
        chosen = map_choices(attentions, 2, generator)  # (B,2)
        picked = attentions.gather(1, chosen[:, :, None, None].expand(-1, -1, *attentions.shape[-2:]))  # (B,2,h,w)
        if source != "model":
            human = F.adaptive_avg_pool2d(gaze.to(picked.dtype), picked.shape[-2:]).expand_as(picked)
            use_gaze = torch.ones(picked.shape[:2], dtype=torch.bool, device=picked.device) if source == "gaze" \
                else torch.rand(picked.shape[:2], device=picked.device, generator=generator) < 0.5
            picked = torch.where(use_gaze[:, :, None, None], human, picked)
        crop_map, drop_map = upsampled(picked[:, :1], size), upsampled(picked[:, 1:], size)
        count = len(images)
        peaks = picked.flatten(2).amax(2)  # (B,2): of the maps themselves, as published (not of their upsampling)
        crop_thresholds = uniform(crop_theta, count, images.device, generator) * peaks[:, 0]
        drop_thresholds = uniform(drop_theta, count, images.device, generator) * peaks[:, 1]
        crops = crop_images(images, crop_boxes(crop_map, crop_thresholds, padding))
        drops = images * (drop_map < drop_thresholds.view(-1, 1, 1, 1)).to(images.dtype)
    return crops, drops


def alignment_loss(attentions: Tensor, gaze: Tensor, eps: float = 1e-6) -> Tensor:
    """mean_b mean_hw |n(mean_m A_b) - n(gaze_b)| with n = / max, the gaze area-pooled to the maps' grid."""
    mean_map = attentions.mean(dim=1, keepdim=True)
    human = F.adaptive_avg_pool2d(gaze.to(mean_map.dtype), mean_map.shape[-2:])
    return (max_normalised(mean_map, eps) - max_normalised(human, eps)).abs().mean()


def max_normalised(maps: Tensor, eps: float = 1e-6) -> Tensor:
    """(B,1,h,w) maps divided by their max (an all-zero map stays zero)."""
    return maps / maps.amax(dim=(2, 3), keepdim=True).clamp_min(eps)


@register_model("cal")
class CAL(GazeModel):
    """WS-DAN's attention model with CAL's counterfactual branch (``counterfactual=False``: WS-DAN).

    Attributes:
        backbone: the feature extractor (output stride ``output_stride``).
        attention: Conv1x1(C -> M, no bias) + BN(eps 1e-3) + ReLU.
        fc: Linear(M*C -> K, no bias).
        feature_center: (K, M*C) buffer of the centre loss (saved in the state dict).
    """

    cam_layers = {"Grad-CAM": "backbone"}
    #: Evaluation protocols a finished run reports besides the configured one.
    report_protocols = ("raw", "raw+crop", "cal_tta")
    counterfactual = True
    train_color_jitter = (0.126, 0.0, 0.5)  # brightness 0.126, saturation 0.5 (B10)
    train_resize_ratio = 0.875  # Resize 512 -> crop 448 (B10)

    def __init__(
        self,
        num_classes: int = 200,
        backbone: str = "resnet101",
        input_size: int | tuple[int, int] = 448,
        pretrained_path: str | None = None,
        num_attentions: int = 32,
        beta: float = 0.05,
        output_stride: int = 16,
        feature_stage: int | None = None,
        attention_source: str = "model",
        gaze_alignment: float = 0.0,
    ) -> None:
        """Args:
            num_classes: K (CUB 200).
            backbone: a timm name (published: resnet101; the CPU demo: tf_efficientnet_lite0).
            input_size: the training side (448 as published).
            pretrained_path: ImageNet weights (a file or package alias) or None.
            num_attentions: M (published 32).
            beta: centre update rate (published 0.05).
            output_stride: of the backbone (16: ResNet layer4 at stride 1, B2; 32: the network's
                own strides, WS-DAN's ResNet).
            feature_stage: the timm ``features_only`` stage pooled instead of the last one
                (Inception-v3: 3 = Mixed_6e, 768 channels, WS-DAN's default; B2).
            attention_source: the maps that crop and drop in training (:data:`ATTENTION_SOURCES`).
            gaze_alignment: weight of the L1 between the max-normalised mean attention map and
                the gaze map area-pooled to its grid (0: none, as published).
        """
        super().__init__()
        if attention_source not in ATTENTION_SOURCES:
            raise ValueError(f"attention_source={attention_source!r}: expected one of {', '.join(ATTENTION_SOURCES)}")
        self.num_classes = num_classes
        self.input_size = min(input_size) if isinstance(input_size, (tuple, list)) else input_size
        self.attention_source = attention_source
        self.gaze_alignment = gaze_alignment
        self.num_attentions = num_attentions
        self.beta = beta
        self.backbone = create_backbone(backbone, pretrained_path, output_stride=None if output_stride == 32 else output_stride,
                                        out_indices=None if feature_stage is None else (feature_stage,))
        channels = self.backbone.num_features
        self.attention = nn.Sequential(nn.Conv2d(channels, num_attentions, 1, bias=False),
                                       nn.BatchNorm2d(num_attentions, eps=1e-3), nn.ReLU(inplace=True))
        self.fc = nn.Linear(num_attentions * channels, num_classes, bias=False)
        self.register_buffer("feature_center", torch.zeros(num_classes, num_attentions * channels))
        self.epoch = 1

    @classmethod
    def needs_gaze(cls, split: str, config: Mapping[str, Any]) -> bool:
        """The training batches carry gaze when the gaze guides the crops or the alignment loss is on."""
        guided = config.get("attention_source", "model") != "model" or (config.get("gaze_alignment") or 0) > 0
        return super().needs_gaze(split, config) or (split == "train" and guided)

    # ----------------------------------------------------------------- forward
    def forward_features(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """The backbone's final map (B,C,h,w)."""
        return self.backbone(images)

    def pool(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled f (B, M*C), attention maps (B,M,h,w)) of a feature map."""
        attentions = self.attention(features)
        return bilinear_attention_pool(features, attentions), attentions

    def forward_head(self, features: Tensor) -> Tensor:
        """Main logits p = W(100 f) of a feature map."""
        return self.fc(FEATURE_SCALE * self.pool(features)[0])

    def forward_all(self, images: Tensor) -> dict[str, Tensor]:
        """{'logits' p, 'effect' (p - W(100 f_bar); CAL only), 'pooled' f, 'attentions' A} (B3-B4)."""
        features = self.backbone(images)
        pooled, attentions = self.pool(features)
        logits = self.fc(FEATURE_SCALE * pooled)
        outputs = {"logits": logits, "pooled": pooled, "attentions": attentions}
        if self.counterfactual:
            fake = torch.rand_like(attentions) * 2 if self.training else torch.ones_like(attentions)
            outputs["effect"] = logits - self.fc(FEATURE_SCALE * bilinear_attention_pool(features, fake))
        return outputs

    # ----------------------------------------------------------------- training
    def centre_loss(self, pooled: Tensor, labels: Tensor) -> Tensor:
        """mean_i ||f_i - normalize(c_{y_i})||^2, then the centre update (B6, fixed as the module says)."""
        centres = F.normalize(self.feature_center[labels], dim=-1)
        loss = (pooled - centres).pow(2).sum(dim=1).mean()
        if self.training:
            self.update_centres(pooled.detach(), labels)
        return loss

    @torch.no_grad()
    def update_centres(self, pooled: Tensor, labels: Tensor) -> None:
        """c_y += beta (mean_{i: y_i = y} f_i - normalize(c_y)) for every class in the batch, the
        sums and counts all-reduced over DDP ranks first (every rank applies the same update)."""
        sums = torch.zeros_like(self.feature_center).index_add_(0, labels, pooled.to(self.feature_center.dtype))
        counts = torch.zeros(len(sums), device=sums.device, dtype=sums.dtype).index_add_(
            0, labels, torch.ones_like(labels, dtype=sums.dtype))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        present = counts > 0
        means = sums[present] / counts[present, None]
        self.feature_center[present] += self.beta * (means - F.normalize(self.feature_center[present], dim=-1))

    def loss(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """CAL's (B7) or WS-DAN's (B12) training loss of one batch, with its parts and accuracies."""
        images, labels = batch["image"], batch["label"]
        raw = self.forward_all(images)
        loss_centre = self.centre_loss(raw["pooled"], labels)
        gaze = batch.get("gaze")
        if gaze is None and (self.attention_source != "model" or self.gaze_alignment > 0):
            raise KeyError(f"attention_source={self.attention_source!r} / gaze_alignment={self.gaze_alignment}: "
                           "the training batches need 'gaze' (B,1,H,W)")
        crops, drops = attention_crop_drop(images, raw["attentions"].detach(), gaze=gaze, source=self.attention_source)
        augmented = self.forward_all(torch.cat([crops, drops]))
        both = torch.cat([labels, labels])
        loss_ce = F.cross_entropy(raw["logits"], labels)
        loss_aug = F.cross_entropy(augmented["logits"], both)
        outputs = {"loss_ce": loss_ce, "loss_aug": loss_aug, "loss_centre": loss_centre,
                   "logits": raw["logits"].detach(),
                   "acc_aug": (augmented["logits"].argmax(1) == both).float().mean() * 100}
        if self.gaze_alignment > 0:
            outputs["loss_alignment"] = self.gaze_alignment * alignment_loss(raw["attentions"], gaze)
        if self.counterfactual:
            loss_effect = F.cross_entropy(torch.cat([raw["effect"], augmented["effect"]]), torch.cat([labels, both]))
            outputs["loss_effect"] = loss_effect
            outputs["acc_aux"] = (raw["effect"].argmax(1) == labels).float().mean() * 100
            outputs["loss"] = loss_ce / 3 + loss_effect + 2 * loss_aug / 3 + loss_centre
        else:
            outputs["loss"] = (loss_ce + 2 * loss_aug) / 3 + loss_centre  # (CE_raw + CE_crop + CE_drop) / 3
        if "loss_alignment" in outputs:
            outputs["loss"] = outputs["loss"] + outputs["loss_alignment"]
        return outputs

    # ----------------------------------------------------------------- evaluation
    def crop_view(self, images: Tensor, attentions: Tensor, theta: float, padding: float) -> Tensor:
        """The evaluation crop (B8): the mean map over M, box of map >= theta max padded, resized back."""
        mean_map = attentions.mean(dim=1, keepdim=True)
        thresholds = theta * mean_map.flatten(1).amax(1)
        return crop_images(images, crop_boxes(upsampled(mean_map, images.shape[-2:]), thresholds, padding))

    def predict_views(self, batch: Mapping[str, Any], crops: Sequence[tuple[float, float]] = (),
                      flip: bool = False) -> dict[str, Tensor]:
        """Mean logits of the image (and its mirror) each with its attention crops ``(theta, padding)``,
        plus ``aux_top1`` (per sample, %): the same average of the effect logits (B8-B9)."""
        images, labels = batch["image"], batch["label"]
        logits, effects = [], []
        for view in ([images, images.flip(-1)] if flip else [images]):
            raw = self.forward_all(view)
            logits.append(raw["logits"])
            effects.append(raw.get("effect"))
            for theta, padding in crops:
                cropped = self.forward_all(self.crop_view(view, raw["attentions"], theta, padding))
                logits.append(cropped["logits"])
                effects.append(cropped.get("effect"))
        outputs = {"logits": torch.stack(logits).mean(0)}
        if self.counterfactual:
            outputs["aux_top1"] = (torch.stack(effects).mean(0).argmax(1) == labels).float() * 100
        return outputs

    @torch.no_grad()
    def attention_visuals(self, images: Tensor) -> dict[str, Tensor]:
        """The published visualisation map (B9: max over M, upsampled, sqrt(a / max)) and one
        training-style crop and drop of each image (B5)."""
        attentions = self.forward_all(images)["attentions"]
        peak = upsampled(attentions.amax(dim=1, keepdim=True), images.shape[-2:])
        heat = torch.sqrt(peak / peak.flatten(1).amax(1).clamp_min(SQRT_EPS).view(-1, 1, 1, 1))
        crops, drops = attention_crop_drop(images, attentions)
        return {"attention": heat, "crop": crops, "drop": drops}

    def predict(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The raw view: main logits and the effect branch's per-sample accuracy."""
        return self.predict_views(batch)

    def describe(self) -> dict[str, Any]:
        """M, beta and the pooled feature size, for the run's reports."""
        return {"num_attentions": self.num_attentions, "beta": self.beta,
                "pooled_features": self.num_attentions * self.backbone.num_features}

    @classmethod
    def training_recipe(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """SGD momentum 0.9, lr 1e-3 decayed 0.9 every 2 epochs per iteration (B7; its weight
        decay 1e-5 is in the paper configs), best epoch on the main accuracy alone (C4)."""
        return {"optimizer": "sgd", "init_lr": 1e-3, "lr_schedule": "cal_exponential", "select_metric": "top1"}


@register_model("wsdan")
class WSDAN(CAL):
    """WS-DAN (Hu et al. 2019): CAL without the counterfactual branch, loss (CE_raw + CE_crop + CE_drop)/3 + centre."""

    counterfactual = False

