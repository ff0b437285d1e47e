"""PIM, the plug-in module (Chou et al. 2022, FGVC-PIM; cub_pim.md §3.3-3.4): FPN, weakly
supervised token selector and GCN combiner on the stages of any backbone.

Every stage map (B,C_l,H_l,W_l) is read as tokens (B, S_l = H_l W_l, C_l): CNN stages, Swin's
(permuted to channels first by the backbone) and ViT's blocks; with ``stage_modules`` a ViT's
class token is kept as a token of every stage before its patches (S_l = 1 + H_l W_l: 785 at
448 px, as published; :data:`gaze.models.backbones.VIT_BLOCKS_8_11`). FPN: per stage Linear(C_l -> C_l) -> ReLU -> Linear(C_l -> F)
(the published "Linear"; its "Conv" = the same as 1x1 convolutions, identical on tokens),
then top-down x_{l-1} += Up(x_l): ``fpn_upsample='conv'`` = Conv1d over the token axis
(S_l -> S_{l-1}), ``'bilinear'`` = the maps resized x2 (published per backbone: Swin/ViT conv,
ResNet/EfficientNet bilinear). Per stage a classifier Conv1d(F,F,1)-BN1d-ReLU-Conv1d(F,K,1)
gives per-token logits z_l. The selector keeps, per sample, the ``num_selects[l]`` tokens of
highest max-softmax confidence; the GCN combiner (J = sum n_l // 32 joints, adjacency
I/100 + 1/100 learnable, alpha init 0) classifies the selected features: ``comb_outs``.

Loss (§3.4): lambda_b sum_l CE(mean_tokens z_l) + lambda_s sum_l CE(selected tokens) +
lambda_n sum_l MSE(tanh(dropped), -1) + lambda_c CE(combiner); published 0.5 / 0 / 5 / 1.

Gaze-guided selector (ours; none of the published code has it): with ``lambda_g`` > 0 the
training batches carry the human gaze map and ``lambda_g * mean_l MSE(conf_l, gaze_l)`` is
added, where conf_l = (max_c softmax(z_l) - 1/K) / (1 - 1/K) in [0, 1] is the selector's
token confidence on stage l's h_l x w_l grid and gaze_l the gaze map area-averaged to that
grid and min-max normalised: the selector is pulled to keep the tokens people looked at.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaze.models._registry import register_model
from gaze.models.backbones import create_backbone
from gaze.models.base import GazeModel

#: Stages read by default: the last four timm ``features_only`` stages (ResNet layer1-4 as
#: published; ViT blocks.8-11 without the class token, Swin layers.0-3, EfficientNet's last four);
#: the published Swin, ViT and EfficientNet stages are ``stage_modules`` (gaze.models.backbones:
#: SWIN_MERGED_STAGES, VIT_BLOCKS_8_11, EFFICIENTNET_FEATURES_4_7).
STAGES = (-4, -3, -2, -1)
#: The published selection of Swin-L at 384 px (2048/2304, 512/576, 128/144, 32/144 tokens):
#: the default fraction of each stage's tokens kept when ``num_selects`` is None.
SELECT_FRACTIONS = (2048 / 2304, 512 / 576, 128 / 144, 32 / 144)
JOINT_DIVISOR = 32
LOSS_WEIGHTS = {"lambda_b": 0.5, "lambda_s": 0.0, "lambda_n": 5.0, "lambda_c": 1.0}


def as_tokens(stage: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """(B, S, C) tokens and (H, W) of a stage map (B, C, H, W)."""
    return stage.flatten(2).transpose(1, 2), tuple(stage.shape[-2:])


class Combiner(nn.Module):
    """PIM's GCNCombiner on the concatenated selections (B, sum n, F) -> logits (B, K)."""

    def __init__(self, tokens: int, features: int, num_classes: int) -> None:
        super().__init__()
        joints = max(tokens // JOINT_DIVISOR, 1)
        self.param_pool0 = nn.Linear(tokens, joints)
        self.conv_q1 = nn.Conv1d(features, features // 4, 1)
        self.conv_k1 = nn.Conv1d(features, features // 4, 1)
        self.adj1 = nn.Parameter(torch.eye(joints) / 100 + 1 / 100)
        self.alpha1 = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv1d(features, features, 1)
        self.batch_norm1 = nn.BatchNorm1d(features)
        self.param_pool1 = nn.Linear(joints, 1)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, selections: Tensor) -> Tensor:
        hs = self.param_pool0(selections.transpose(1, 2))  # (B,F,J)
        q, k = self.conv_q1(hs).mean(1), self.conv_k1(hs).mean(1)  # (B,J)
        adjacency = self.adj1 + self.alpha1 * torch.tanh(q.unsqueeze(-1) - k.unsqueeze(1))  # (B,J,J)
        hs = self.batch_norm1(torch.matmul(self.conv1(hs), adjacency))
        return self.classifier(self.dropout(self.param_pool1(hs)).flatten(1))


@register_model("pim")
class PIM(GazeModel):
    """Backbone stages -> FPN -> per-stage token classifiers -> selector -> GCN combiner."""

    cam_layers = {"Grad-CAM": "last_stage"}  # the last stage map (B,C,h,w) of any backbone, Swin's permuted

    @classmethod
    def needs_gaze(cls, split: str, config: Mapping[str, Any]) -> bool:
        """Training batches carry the gaze map when the gaze-guided selector is on (``lambda_g`` > 0)."""
        return super().needs_gaze(split, config) or (split == "train" and float(config.get("lambda_g") or 0) > 0)

    def __init__(
        self,
        num_classes: int = 200,
        backbone: str = "resnet50",
        input_size: int | tuple[int, int] = 448,
        pretrained_path: str | None = None,
        fpn_size: int = 512,
        num_selects: Sequence[int] | None = None,
        fpn_upsample: str = "bilinear",
        lambda_b: float = LOSS_WEIGHTS["lambda_b"],
        lambda_s: float = LOSS_WEIGHTS["lambda_s"],
        lambda_n: float = LOSS_WEIGHTS["lambda_n"],
        lambda_c: float = LOSS_WEIGHTS["lambda_c"],
        lambda_g: float = 0.0,
        stage_modules: Sequence[str] | None = None,
    ) -> None:
        """Args:
            num_classes: K.
            backbone: a timm name with ``features_only`` stages 1-4 (published: Swin-L, ResNet-50,
                ViT-B/16, EfficientNet-B7; the CPU demo: tf_efficientnet_lite0).
            input_size: the side the token counts (and the combiner's size) are built for.
            pretrained_path: weights (a file or package alias) or None.
            fpn_size: F (published: 1536 for Swin-L, 512 by default).
            num_selects: tokens kept per stage; None: the published Swin-L fractions of each
                stage's tokens (:data:`SELECT_FRACTIONS`).
            fpn_upsample: 'bilinear' (CNNs as published) | 'conv' (token-axis Conv1d: Swin, ViT).
            lambda_b, lambda_s, lambda_n, lambda_c: the loss weights (§3.4).
            lambda_g: weight of the gaze-guided selector loss (0: off, as published).
            stage_modules: module names of the timm network whose outputs are the four stages
                (the published Swin: ``gaze.models.backbones.SWIN_MERGED_STAGES``); None: the last four
                ``features_only`` stages.
        """
        super().__init__()
        if fpn_upsample not in ("bilinear", "conv"):
            raise ValueError(f"fpn_upsample={fpn_upsample!r}: expected 'bilinear' or 'conv'")
        self.num_classes = num_classes
        side = min(input_size) if isinstance(input_size, (tuple, list)) else int(input_size)
        self.input_size = side
        self.fpn_upsample = fpn_upsample
        self.weights = {"lambda_b": lambda_b, "lambda_s": lambda_s, "lambda_n": lambda_n, "lambda_c": lambda_c,
                        "lambda_g": lambda_g}
        self.backbone = create_backbone(backbone, pretrained_path, out_indices=None if stage_modules else STAGES,
                                        img_size=side, stage_modules=stage_modules)
        self.last_stage = nn.Identity()  # what Grad-CAM hooks: the last stage, channels first, inside every forward
        channels = self.backbone.stage_channels
        with torch.no_grad():
            was_training = self.backbone.training
            stages = self.backbone.eval().forward_stages(torch.zeros(1, 3, side, side))
            self.backbone.train(was_training)
        grids = [as_tokens(stage)[1] for stage in stages]
        self.grids = grids
        self.prefix_tokens = self.backbone.prefix_tokens  # ViT's class token, a token of every stage as published
        if self.prefix_tokens and fpn_upsample != "conv":
            raise ValueError(f"{backbone}: stages with a class token need fpn_upsample='conv' (as published for ViT)")
        tokens = [self.prefix_tokens + h * w for h, w in grids]
        if num_selects is None:
            num_selects = [max(1, min(s, round(s * f))) for s, f in zip(tokens, SELECT_FRACTIONS)]
        if len(num_selects) != len(tokens) or any(not 0 < n <= s for n, s in zip(num_selects, tokens)):
            raise ValueError(f"num_selects={list(num_selects)}: one count per stage, each in 1..tokens {tokens}")
        self.num_selects = [int(n) for n in num_selects]
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, fpn_size)) for c in channels)
        if fpn_upsample == "conv":
            self.upsamples = nn.ModuleList(
                nn.Conv1d(tokens[l], tokens[l - 1], 1) if tokens[l] != tokens[l - 1] else nn.Identity()
                for l in range(1, len(tokens)))
        self.classifiers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(fpn_size, fpn_size, 1), nn.BatchNorm1d(fpn_size), nn.ReLU(),
                          nn.Conv1d(fpn_size, num_classes, 1)) for _ in channels)
        self.combiner = Combiner(sum(self.num_selects), fpn_size, num_classes)
        self.epoch = 1

    def forward_features(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """The last stage map (B,C,h,w); the earlier stages of the same call are kept for
        :meth:`forward_head` (so ``forward_head(forward_features(x)) == forward(x)`` and a
        differentiable Grad-CAM of the last stage sees PIM's whole head)."""
        stages, prefixes = self.stages(images)
        self._stages = stages, prefixes
        return stages[-1]

    def forward_head(self, features: Tensor) -> Tensor:
        """The combiner's logits of the stages whose last map is ``features`` (from the
        :meth:`forward_features` call that returned it)."""
        stages, prefixes = getattr(self, "_stages", None) or (None, None)
        if stages is None or features is not stages[-1]:
            raise ValueError("PIM.forward_head needs the map returned by the latest forward_features call")
        self._stages = None
        return self.heads(stages, prefixes)["comb_outs"]

    def fpn(self, stages: Sequence[Tensor], prefixes: Sequence[Tensor | None] | None = None) -> list[Tensor]:
        """FPN tokens (B, S_l, F) of every stage map (after its prefix tokens: ViT's class token), top-down summed."""
        prefixes = prefixes or [None] * len(stages)
        tokens = [projection(as_tokens(stage)[0] if prefix is None else torch.cat([prefix, as_tokens(stage)[0]], 1))
                  for projection, stage, prefix in zip(self.projections, stages, prefixes)]
        for l in range(len(tokens) - 1, 0, -1):
            tokens[l - 1] = tokens[l - 1] + self.upsample(tokens[l], l)
        return tokens

    def upsample(self, tokens: Tensor, l: int) -> Tensor:
        """Stage ``l``'s tokens brought to stage ``l - 1``'s count."""
        if self.fpn_upsample == "conv":
            return self.upsamples[l - 1](tokens)
        (h, w), (h_up, w_up) = self.grids[l], self.grids[l - 1]
        if (h, w) == (h_up, w_up):
            return tokens
        maps = tokens.transpose(1, 2).reshape(len(tokens), -1, h, w)
        resized = F.interpolate(maps, size=(h_up, w_up), mode="bilinear", align_corners=False)
        return resized.flatten(2).transpose(1, 2)

    def forward_all(self, images: Tensor) -> dict[str, Tensor]:
        """The published output dict: ``layer1..4`` (B,S_l,K), ``select_layerX`` (B,n_l,K),
        ``drop_layerX`` (B,S_l-n_l,K) and ``comb_outs`` (B,K)."""
        return self.heads(*self.stages(images))

    def stages(self, images: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """The backbone's stage maps (B,C_l,H_l,W_l), the last through :attr:`last_stage`, and
        each stage's prefix tokens (B,P,C) (ViT's class token) or None."""
        stages, prefixes = self.backbone.forward_stage_tokens(images)
        return [*stages[:-1], self.last_stage(stages[-1])], prefixes

    def heads(self, stages: Sequence[Tensor], prefixes: Sequence[Tensor | None] | None = None) -> dict[str, Tensor]:
        """:meth:`forward_all`'s dict from the stage maps (and their prefix tokens)."""
        outputs, selections = {}, []
        tokens_per_stage = self.fpn(stages, prefixes)
        for l, (tokens, classifier, count) in enumerate(zip(tokens_per_stage, self.classifiers, self.num_selects), 1):
            logits = classifier(tokens.transpose(1, 2)).transpose(1, 2)  # (B,S,K)
            order = logits.softmax(-1).amax(-1).argsort(dim=1, descending=True)  # (B,S) by confidence
            ranked_logits = logits.gather(1, order[..., None].expand_as(logits))
            ranked_tokens = tokens.gather(1, order[..., None].expand_as(tokens))
            outputs[f"layer{l}"] = logits
            outputs[f"select_layer{l}"], outputs[f"drop_layer{l}"] = ranked_logits[:, :count], ranked_logits[:, count:]
            selections.append(ranked_tokens[:, :count])
        outputs["comb_outs"] = self.combiner(torch.cat(selections, dim=1))
        return outputs

    def forward(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """The combiner's logits (B, K)."""
        return self.forward_all(images)["comb_outs"]

    def loss(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """§3.4's weighted sum; parts ``loss_layers``, ``loss_select``, ``loss_drop``, ``loss_ce`` (the combiner)."""
        labels = batch["label"]
        outputs = self.forward_all(batch["image"])
        stages = [k for k in outputs if k.startswith("layer")]
        loss_layers = sum(F.cross_entropy(outputs[k].mean(1), labels) for k in stages)
        loss_select = sum(F.cross_entropy(outputs[f"select_{k}"].flatten(0, 1),
                                          labels.repeat_interleave(outputs[f"select_{k}"].shape[1])) for k in stages)
        loss_drop = sum(F.mse_loss(torch.tanh(outputs[f"drop_{k}"]), -torch.ones_like(outputs[f"drop_{k}"]))
                        for k in stages if outputs[f"drop_{k}"].numel())
        loss_ce = F.cross_entropy(outputs["comb_outs"], labels)
        w = self.weights
        total = w["lambda_b"] * loss_layers + w["lambda_n"] * loss_drop + w["lambda_c"] * loss_ce
        if w["lambda_s"]:
            total = total + w["lambda_s"] * loss_select
        parts = {"loss_ce": loss_ce, "loss_layers": loss_layers, "loss_select": loss_select.detach(),
                 "loss_drop": torch.as_tensor(loss_drop, dtype=total.dtype)}
        if w["lambda_g"]:
            if batch.get("gaze") is None:
                raise ValueError("PIM with lambda_g > 0 needs the gaze map in its training batches")
            parts["loss_gaze"] = self.gaze_loss(outputs, batch["gaze"])
            total = total + w["lambda_g"] * parts["loss_gaze"]
        return {"loss": total, **parts, "logits": outputs["comb_outs"].detach()}

    def gaze_loss(self, outputs: Mapping[str, Tensor], gaze: Tensor) -> Tensor:
        """mean_l MSE(selector confidence of stage l in [0, 1], the gaze map (B,1,H,W) area-averaged
        to stage l's grid and min-max normalised) (the gaze-guided selector, module docstring)."""
        floor = 1.0 / self.num_classes
        losses = []
        for l, (h, w) in enumerate(self.grids, 1):
            patches = outputs[f"layer{l}"][:, self.prefix_tokens:]  # the grid's tokens (ViT's class token has no place)
            confidence = (patches.softmax(-1).amax(-1) - floor) / (1 - floor)  # (B, h w)
            target = F.adaptive_avg_pool2d(gaze.float(), (h, w)).flatten(1)
            low, high = target.amin(1, keepdim=True), target.amax(1, keepdim=True)
            target = (target - low) / (high - low).clamp_min(1e-6)
            losses.append(F.mse_loss(confidence, target))
        return torch.stack(losses).mean()

    def head_probabilities(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Softmax (B, K) of every head of :meth:`forward_all`'s ``outputs``: ``layer1..4`` (the
        token-mean logits), ``combiner``, and ``highest-k`` (k = 1..5): per sample, the sum of
        the k heads of highest max-softmax confidence. Fixed: the published ``highest-k`` adds
        the heads in ASCENDING confidence, so its highest-1 is the least confident head."""
        heads = {f"layer{l}": outputs[f"layer{l}"].mean(1).softmax(-1) for l in range(1, len(self.num_selects) + 1)}
        heads["combiner"] = outputs["comb_outs"].softmax(-1)
        stacked = torch.stack(list(heads.values()), dim=1)  # (B, H, K)
        order = stacked.amax(-1).argsort(dim=1, descending=True)  # (B, H) most confident first
        cumulative = stacked.gather(1, order[..., None].expand_as(stacked)).cumsum(1)
        heads.update({f"highest-{k}": cumulative[:, k - 1] for k in range(1, stacked.shape[1] + 1)})
        return heads

    def predict(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The combiner's logits, and per sample whether each head of :meth:`head_probabilities`
        got it right in its top 1 and top 3 (``top1_<head>``, ``top3_<head>``; in %): the heads
        :mod:`gaze.engine.heads` chooses among on validation."""
        labels = batch["label"]
        outputs = self.forward_all(batch["image"])
        hits = {}
        for head, probabilities in self.head_probabilities(outputs).items():
            ranked = probabilities.topk(min(3, probabilities.shape[1]), dim=1).indices == labels[:, None]
            hits[f"top1_{head}"] = ranked[:, 0].float() * 100
            hits[f"top3_{head}"] = ranked.any(1).float() * 100
        return {"logits": outputs["comb_outs"], **hits}

    @classmethod
    def training_recipe(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Adam 1e-3 with PIM's warm-up + cosine per iteration: the published SGD (Nesterov,
        momentum 0.9) at 5e-4 (§3.5; ``protocol='published'``) stays at chance on the CPU demo
        in 10 epochs (test top-1 ~10 %, 10 classes), Adam 1e-3 learns (train top-1 49 % after 3).
        PIM's own transforms (squash, random crop, flip, blur, sharpness; §3.2)."""
        return {"optimizer": "adam", "nesterov": True, "init_lr": 1e-3, "lr_schedule": "pim", "transforms": "pim"}

    def describe(self) -> dict[str, Any]:
        return {"num_selects": self.num_selects, "grids": [list(g) for g in self.grids]}
