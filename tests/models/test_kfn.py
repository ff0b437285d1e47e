"""KFN (gaze/models/kfn.py): gaze required, masked image, GAT initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gaze.models import create_model

SIZE = 64
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def kfn():
    torch.manual_seed(0)
    return create_model("kfn", num_classes=3, backbone="resnet18", input_size=SIZE)


def test_gaze_is_required(kfn):
    images = torch.randn(2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="KFN needs the gaze map"):
        kfn(images)
    with pytest.raises(KeyError, match="gaze"):
        kfn.loss({"image": images, "label": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match=r"\(B,1,H,W\)"):
        kfn(images, torch.rand(2, 1, SIZE // 2, SIZE // 2))


def test_masked_image_is_the_renormalised_product(kfn):
    # CUB (cub_pim §1.7): ToTensor(img) * ToTensor(map), i.e. the raw map / 255, no min-max:
    # a map whose values stay in [0.2, 0.6] dims the picture, it is not stretched to [0, 1].
    raw = torch.rand(2, 3, SIZE, SIZE)
    gaze = torch.rand(2, 1, SIZE, SIZE) * 0.4 + 0.2
    masked = kfn.masked_images((raw - MEAN) / STD, gaze)
    torch.testing.assert_close(masked, (raw * gaze - MEAN) / STD)


def test_cxr_mask_is_hafc_minmax_of_the_raw_map():
    # cxr §2.1: M = (H - min) / (max - min + 1e-7) > 0.3 on the raw luma map (background ~0.12),
    # not H > 0.3: with background 0.12 and peak 0.85 the cut lies at H = 0.339.
    rng = np.random.default_rng(4)
    luma = 0.12 + 0.73 * rng.random((2, 1, SIZE, SIZE))
    luma[:, :, 0, 0], luma[:, :, 0, 1] = 0.12, 0.85
    raw = torch.rand(2, 3, SIZE, SIZE)
    low, high = luma.min(axis=(2, 3), keepdims=True), luma.max(axis=(2, 3), keepdims=True)
    mask = torch.from_numpy(((luma - low) / (high - low + 1e-7) > 0.3).astype(np.float32))
    binary = create_model("kfn", num_classes=3, backbone="resnet18", gaze_threshold=0.3)
    gaze = torch.from_numpy(luma.astype(np.float32))
    torch.testing.assert_close(binary.masked_images((raw - MEAN) / STD, gaze), (raw * mask - MEAN) / STD)
    assert ((gaze > 0.3) != mask.bool()).any()  # the old reading differed


def test_branches_see_image_and_masked_image(kfn):
    images, gaze = torch.randn(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    kfn.eval()
    with torch.no_grad():
        expected = kfn.classifier(
            torch.cat(
                [
                    kfn.image_backbone(images).relu().mean((2, 3)),
                    kfn.gaze_backbone(kfn.masked_images(images, gaze)).relu().mean((2, 3)),
                ],
                dim=1,
            )
        )
        torch.testing.assert_close(kfn(images, gaze), expected)
    kfn.train()


def gat_state(seed=3):
    torch.manual_seed(seed)
    gat = create_model("gat", num_classes=3, backbone="resnet18", input_size=SIZE)
    with torch.no_grad():
        for parameter in gat.parameters():
            parameter.add_(1.0)  # unlike any fresh init
    return gat


def assert_branches_equal_gat(kfn, gat):
    expected = gat.backbone.net.state_dict()
    for branch in (kfn.image_backbone, kfn.gaze_backbone):
        for key, tensor in branch.net.state_dict().items():
            assert torch.equal(tensor, expected[key]), key


def test_gat_checkpoint_initialises_both_branches(tmp_path):
    gat = gat_state()
    path = tmp_path / "gat.pt"
    torch.save({"model": gat.state_dict(), "model_name": "gat", "epoch": 3, "config": {}}, path)
    kfn = create_model("kfn", num_classes=3, backbone="resnet18", gat_checkpoint=str(path))
    assert_branches_equal_gat(kfn, gat)


def test_released_gat_checkpoint_initialises_both_branches(tmp_path):
    gat = gat_state(seed=4)
    released = {"pretrained_model." + k[len("backbone.net."):]: v for k, v in gat.state_dict().items() if k.startswith("backbone.net.")}
    released["pretrained_model.fc.weight"] = torch.zeros(1000, 512)
    released["cls_net.weight"] = gat.classifier.weight.detach()
    released["cls_net.bias"] = gat.classifier.bias.detach()
    path = tmp_path / "best.pth"
    torch.save({"epoch": 7, "model_state_dict": {"module." + k: v for k, v in released.items()}, "learning_rate": 1e-3}, path)
    kfn = create_model("kfn", num_classes=3, backbone="resnet18")
    kfn.load_gat_backbone(path)
    assert_branches_equal_gat(kfn, gat)


def test_wrong_gat_checkpoints_fail_clearly(tmp_path):
    kfn = create_model("kfn", num_classes=3, backbone="resnet18")
    other = create_model("kfn", num_classes=3, backbone="resnet18")
    with pytest.raises(ValueError, match="expected a GAT checkpoint"):
        kfn.load_gat_backbone({"model": other.state_dict(), "model_name": "kfn"})
    efficient = create_model("gat", num_classes=3, backbone="efficientnet_b0", input_size=SIZE)
    with pytest.raises(ValueError, match="lacks|shape mismatch"):
        kfn.load_gat_backbone({"model": efficient.state_dict(), "model_name": "gat"})
