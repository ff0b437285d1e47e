"""'baseline': backbone -> global average pool -> dropout -> Linear, cross-entropy; no gaze."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gaze.models._registry import register_model
from gaze.models.backbones import create_backbone, global_pool, init_head
from gaze.models.base import GazeModel


@register_model("baseline")
class Baseline(GazeModel):
    """The no-gaze reference classifier (also the body GAT adds its window loss to).

    Attributes:
        backbone: ``Backbone`` (ImageNet-normalised images -> (B,C,h,w)).
        classifier: Linear(C -> num_classes), the published ``cls_net``.
        epoch: 1-based epoch, set by the engine (unused here; GAT reads it).

    Facts (see ``GazeModel``): no gaze anywhere; Grad-CAM of the final feature map; the GAT
    recipe's ColorJitter(0.2, 0.2) on the image only (cub_pim §1.7), which the baseline shares.
    """

    train_color_jitter = (0.2, 0.2)

    def __init__(
        self,
        num_classes: int = 200,
        backbone: str = "resnet50",
        input_size: int | tuple[int, int] = 448,
        pretrained_path: str | None = None,
        dropout: float = 0.5,
        encoder_only: bool = False,
        drop_path_rate: float = 0.0,
        head_init: str = "default",
    ) -> None:
        """Args:
            num_classes: output classes (CUB: 200; CXR: 3).
            backbone: timm architecture ('resnet50' as in the papers, 'resnet18', ...).
            input_size: training image side in px (448 in the papers), or (H, W): the
                shorter side is kept.
            pretrained_path: local weight file or package alias (see ``backbones``), None =
                random init.
            dropout: on the pooled embedding (0.5 as the CUB-GHA ``embedding``, cub_pim §1.5;
                the CXR scripts use 0.0).
            encoder_only: see ``backbones.Backbone`` (CXR EfficientNet-b0 encoders, 320 ch).
            drop_path_rate: stochastic depth of the backbone (HAFC's smp encoder: 0.2).
            head_init: 'default' or 'xavier' (HAFC's smp head), see ``backbones.HEAD_INITS``.
        """
        super().__init__()
        self.num_classes = num_classes
        self.input_size = min(input_size) if isinstance(input_size, (tuple, list)) else input_size
        self.epoch = 1
        self.backbone = create_backbone(backbone, pretrained_path, encoder_only, drop_path_rate)
        self.dropout = nn.Dropout(dropout)
        self.classifier = init_head(nn.Linear(self.backbone.num_features, num_classes), head_init)

    def forward_features(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """The backbone's final feature map (B,C,h,w) of images (B,3,H,W); gaze is ignored."""
        return self.backbone(images)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (B, num_classes): global average pool, dropout, Linear."""
        return self.classifier(self.dropout(global_pool(features)))

    def classify(self, images: Tensor) -> Tensor:
        """Logits (N, num_classes) of images (N,3,H,W) through backbone, pool, dropout, head."""
        return self.forward_head(self.backbone(images))

    def loss(self, batch: dict) -> dict[str, Tensor]:
        """Cross-entropy on the full image: {'loss', 'loss_ce', 'logits' (detached)}."""
        logits = self(batch["image"])
        loss_ce = F.cross_entropy(logits, batch["label"])
        return {"loss": loss_ce, "loss_ce": loss_ce, "logits": logits.detach()}
