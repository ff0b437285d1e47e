"""KFN, Knowledge Fusion Network (Rong et al., BMVC 2021; cub_pim §1.6, cxr §2.4).

Two backbones of the same architecture: one sees the image, the other the image masked by
the gaze map. Their globally pooled features are concatenated and classified by one Linear
layer, trained with cross-entropy. The gaze map is needed at test time too. Both branches
can start from a GAT checkpoint (the paper's strongest setting).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gaze.models._registry import register_model
from gaze.models.backbones import create_backbone, global_pool, init_head
from gaze.models.base import GazeModel
from gaze.models.gaze_input import check_gaze, hafc_mask
from gaze.state_dicts import load_state_dict


@register_model("kfn")
class KFN(GazeModel):
    """Image branch + gaze-masked-image branch -> concatenated pooled features -> Linear.

    Attributes:
        image_backbone, gaze_backbone: ``Backbone`` modules (published ``pretrained_model1/2``).
        classifier: Linear(2C -> num_classes) (published ``cls_net``).

    Facts (see ``GazeModel``): the gaze in every split, inference included; one Grad-CAM per
    branch, in HAFC's ``TwoBranch_<id>.png`` panels (cxr §2.5); no ColorJitter in the
    published KFN recipe (cub_pim §1.7).
    """

    gaze_splits = frozenset({"train", "val", "test"})
    inference_needs_gaze = True
    cam_layers = {"CAM image branch": "image_backbone", "CAM gaze branch": "gaze_backbone"}
    cam_panel_prefix = "TwoBranch_"
    #: Checkpoints whose ``backbone`` initialises both branches (GAT, and the baseline body).
    gat_bodies = ("gat", "baseline")

    def __init__(
        self,
        num_classes: int = 200,
        backbone: str = "resnet50",
        input_size: int | tuple[int, int] = 448,
        pretrained_path: str | None = None,
        gat_checkpoint: str | None = None,
        encoder_only: bool = False,
        dropout: float = 0.0,
        gaze_threshold: float | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        drop_path_rate: float = 0.0,
        head_init: str = "default",
    ) -> None:
        """Args:
            num_classes, backbone, input_size, pretrained_path, encoder_only: as Baseline;
                ``pretrained_path`` initialises both branches.
            gat_checkpoint: a GAT checkpoint (ours or the released CUB-GHA one) whose
                backbone initialises both branches (applied after ``pretrained_path``).
            dropout: on the concatenated features (0: the papers use none).
            gaze_threshold: None multiplies the image by the raw gaze map, the published
                CUB reading ToTensor(map) = map / 255 with no min-max (cub_pim §1.7); a
                number multiplies by HAFC's binary mask minmax(map) > threshold (cxr §2.1
                step 6: 0.3; see ``gaze_input.hafc_mask``).
            mean, std: the normalisation of the input images, undone before masking and
                redone after (ImageNet).
            drop_path_rate: stochastic depth of both backbones (HAFC's smp encoders: 0.2).
            head_init: of the fusion Linear, see ``backbones.HEAD_INITS`` (HAFC's
                ``Two_Branch`` builds a plain nn.Linear: 'default').
        """
        super().__init__()
        self.num_classes = num_classes
        self.input_size = min(input_size) if isinstance(input_size, (tuple, list)) else input_size
        self.epoch = 1
        self.gaze_threshold = gaze_threshold
        self.image_backbone = create_backbone(backbone, pretrained_path, encoder_only, drop_path_rate)
        self.gaze_backbone = create_backbone(backbone, pretrained_path, encoder_only, drop_path_rate)
        self.dropout = nn.Dropout(dropout)
        self.classifier = init_head(nn.Linear(2 * self.image_backbone.num_features, num_classes), head_init)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if gat_checkpoint is not None:
            self.load_gat_backbone(gat_checkpoint)

    def masked_images(self, images: Tensor, gaze: Tensor) -> Tensor:
        """normalise(denormalise(images) · mask): (B,3,H,W), (B,1,H,W) -> (B,3,H,W).

        Masked-out pixels become black (−mean/std), as the published ToTensor(img)·map.
        """
        check_gaze(images, gaze)
        mask = gaze if self.gaze_threshold is None else hafc_mask(gaze, self.gaze_threshold).to(images.dtype)
        # (x·s + m)·g − m) / s  ==  x·g + (g − 1)·m / s
        return images * mask + (mask - 1) * (self.mean / self.std)

    def forward_features(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """Both branches' ReLU'd feature maps, concatenated: (B,2C,h,w) of images (B,3,H,W)
        and their gaze maps (B,1,H,W) in [0,1]."""
        if gaze is None:
            raise ValueError(
                "KFN needs the gaze map: call model(images, gaze) with gaze (B,1,H,W) in [0, 1]"
            )
        return self.branch_features(images, self.masked_images(images, gaze))

    def branch_features(self, images: Tensor, masked_images: Tensor) -> Tensor:
        """(B,2C,h,w): the image branch on ``images`` beside the gaze branch on ``masked_images``,
        both (B,3,H,W) normalised, each through ReLU."""
        return torch.cat([F.relu(self.image_backbone(images)), F.relu(self.gaze_backbone(masked_images))], dim=1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (B, num_classes): the concatenated maps globally pooled, dropout, Linear."""
        return self.classifier(self.dropout(global_pool(features)))

    def loss(self, batch: dict) -> dict[str, Tensor]:
        """Cross-entropy: {'loss', 'loss_ce', 'logits' (detached)}.

        ``batch['masked_image']`` (B,3,H,W), when present, feeds the gaze branch instead of
        masking ``batch['image']``: the published CUB recipe transforms the masked picture on
        its own, with crop and flip drawn independently of the image's (cub_pim §1.7 bug,
        ``CUBDataset(masked_image=True)``).
        """
        masked = batch.get("masked_image")
        if masked is not None:
            logits = self.forward_head(self.branch_features(batch["image"], masked))
        elif batch.get("gaze") is None:
            raise KeyError("KFN needs batch['gaze'] (B,1,H,W) or batch['masked_image'] (B,3,H,W)")
        else:
            logits = self(batch["image"], batch["gaze"])
        loss_ce = F.cross_entropy(logits, batch["label"])
        return {"loss": loss_ce, "loss_ce": loss_ce, "logits": logits.detach()}

    def load_gat_backbone(self, checkpoint: str | Path | dict) -> None:
        """Copy a GAT checkpoint's backbone into both branches (strict, shapes checked).

        Args:
            checkpoint: a path or loaded dict: ours ({'model': state_dict, 'model_name':
                'gat', ...}) or the released CUB-GHA one ({'model_state_dict'} with
                ``pretrained_model.`` keys); the 'baseline' body fits too.
        """
        from gaze.engine.importers import read_checkpoint  # engine builds on models: import when used

        ckpt, origin = read_checkpoint(checkpoint)
        if ckpt["model_name"] not in self.gat_bodies:
            raise ValueError(
                f"{origin}: expected a GAT checkpoint, it holds a {ckpt['model_name']!r} model"
            )
        for branch in (self.image_backbone, self.gaze_backbone):
            load_state_dict(branch.net, ckpt["model"], origin, prefix="backbone.net.", strict=True)

    def init_from(self, checkpoint: str | Path | dict) -> None:
        """A KFN checkpoint loads as a whole; a GAT (or baseline) one initialises both branches."""
        from gaze.engine.importers import read_checkpoint

        ckpt, _ = read_checkpoint(checkpoint)
        if ckpt["model_name"] in self.gat_bodies:
            self.load_gat_backbone(checkpoint)
        else:
            super().init_from(checkpoint)
