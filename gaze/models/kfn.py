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

from gaze.models._registry import register_model
from gaze.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_backbone,
    global_pool,
    init_head,
)
from gaze.models.gaze_input import check_gaze, hafc_mask


@register_model("kfn")
class KFN(nn.Module):
    """Image branch + gaze-masked-image branch -> concatenated pooled features -> Linear.

    Attributes:
        image_backbone, gaze_backbone: ``Backbone`` modules (published ``pretrained_model1/2``).
        classifier: Linear(2C -> num_classes) (published ``cls_net``).
        cam_layer: default Grad-CAM layer ('image_backbone'; 'gaze_backbone' also works).
        train_color_jitter: None: the published KFN recipe has no ColorJitter (cub_pim §1.7).
    """

    cam_layer = "image_backbone"
    train_color_jitter: tuple[float, float] | None = None

    def __init__(
        self,
        num_classes: int = 200,
        backbone: str = "resnet50",
        input_size: int = 448,
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
        self.input_size = input_size
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

    def forward(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """Logits (B, num_classes) of images (B,3,H,W) and their gaze maps (B,1,H,W) in [0,1]."""
        if gaze is None:
            raise ValueError(
                "KFN needs the gaze map: call model(images, gaze) with gaze (B,1,H,W) in [0, 1]"
            )
        return self.fuse(images, self.masked_images(images, gaze))

    def fuse(self, images: Tensor, masked_images: Tensor) -> Tensor:
        """Logits (B, num_classes) of the image branch on ``images`` and the gaze branch on
        ``masked_images``, both (B,3,H,W) normalised."""
        image_features = global_pool(F.relu(self.image_backbone(images)))
        gaze_features = global_pool(F.relu(self.gaze_backbone(masked_images)))
        return self.classifier(self.dropout(torch.cat([image_features, gaze_features], dim=1)))

    def loss(self, batch: dict) -> dict[str, Tensor]:
        """Cross-entropy: {'loss', 'loss_ce', 'logits' (detached)}.

        ``batch['masked_image']`` (B,3,H,W), when present, feeds the gaze branch instead of
        masking ``batch['image']``: the published CUB recipe transforms the masked picture on
        its own, with crop and flip drawn independently of the image's (cub_pim §1.7 bug,
        ``CUBDataset(masked_image=True)``).
        """
        masked = batch.get("masked_image")
        if masked is not None:
            logits = self.fuse(batch["image"], masked)
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
        from gaze.engine.importers import (
            checkpoint_origin,
            convert_checkpoint,
            import_checkpoint,
        )

        origin = checkpoint_origin(checkpoint)
        if isinstance(checkpoint, dict):
            ckpt = convert_checkpoint(checkpoint, origin)
        else:
            ckpt = import_checkpoint(checkpoint)
        if ckpt["model_name"] not in ("gat", "baseline"):
            raise ValueError(
                f"{origin}: expected a GAT checkpoint, it holds a {ckpt['model_name']!r} model"
            )
        prefix = "backbone.net."
        state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
        for branch in (self.image_backbone, self.gaze_backbone):
            own = branch.net.state_dict()
            for key, tensor in own.items():
                if key not in state and not key.endswith("num_batches_tracked"):
                    raise ValueError(
                        f"{origin}: the GAT backbone lacks {key!r} (wrong backbone architecture?)"
                    )
                if key in state and state[key].shape != tensor.shape:
                    raise ValueError(
                        f"{origin}: shape mismatch for {key!r}: checkpoint {tuple(state[key].shape)}, "
                        f"model {tuple(tensor.shape)}"
                    )
            branch.net.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
