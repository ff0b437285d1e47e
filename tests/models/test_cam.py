"""Grad-CAM (gaze/models/cam.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gaze.models import create_model
from gaze.models.cam import grad_cam

SIZE = 64


class ToyModel(nn.Module):
    """Feature channel k = colour channel k (pooled 4x4); logit k = mean of feature k."""

    cam_layers = {"Grad-CAM": "backbone"}

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0  # red
            conv.weight[1, 1] = 1.0  # green
        self.backbone = nn.Sequential(conv, nn.AvgPool2d(4))
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(2))
            self.head.bias.zero_()

    def forward(self, images, gaze=None):
        return self.head(self.backbone(images).mean((2, 3)))


def two_squares():
    images = torch.zeros(2, 3, SIZE, SIZE)
    images[:, 0, 8:24, 8:24] = 1.0  # red square, top left
    images[:, 1, 40:56, 36:60] = 0.5  # dimmer green rectangle, bottom right
    return images


def peak(cam):
    index = int(cam.flatten().argmax())
    return divmod(index, cam.shape[-1])


def test_peak_lies_in_the_region_driving_the_target_logit():
    model = ToyModel()
    images = two_squares()
    cams, logits, targets = grad_cam(model, images, targets=torch.tensor([0, 1]))
    assert cams.shape == (2, 1, SIZE, SIZE)
    assert cams.min() >= 0 and cams.max() <= 1 and torch.allclose(cams.amax((2, 3)), torch.ones(2, 1), atol=1e-3)
    row, col = peak(cams[0, 0])
    assert 8 <= row < 24 and 8 <= col < 24
    row, col = peak(cams[1, 0])
    assert 40 <= row < 56 and 36 <= col < 60
    assert cams[0, 0, 48, 48] < 0.05 and cams[1, 0, 16, 16] < 0.05
    # Default target: the predicted class (red is brighter -> class 0 for both).
    default = grad_cam(model, images)
    assert default.targets.tolist() == [0, 0]
    torch.testing.assert_close(default.cams[0], cams[0])


def test_constant_map_gives_zeros_not_nan():
    cams = grad_cam(ToyModel(), torch.zeros(1, 3, SIZE, SIZE)).cams
    assert torch.equal(cams, torch.zeros_like(cams))


@pytest.mark.parametrize("name", ["baseline", "gat", "kfn"])
def test_registered_models(name):
    model = create_model(name, num_classes=4, backbone="resnet18", input_size=SIZE).train()
    images, gaze = torch.randn(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    cams, logits, targets = grad_cam(model, images, gaze=gaze, targets=2)
    assert cams.shape == (2, 1, SIZE, SIZE) and logits.shape == (2, 4) and targets.tolist() == [2, 2]
    assert torch.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    # Batched maps equal per-sample maps.
    single = grad_cam(model, images[1:], gaze=gaze[1:], targets=2).cams
    torch.testing.assert_close(cams[1:], single, atol=1e-4, rtol=1e-4)


def test_named_layer_and_errors():
    model = create_model("baseline", num_classes=4, backbone="resnet18")
    cams = grad_cam(model, torch.randn(1, 3, SIZE, SIZE), layer="backbone.net.layer3").cams
    assert cams.shape == (1, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        grad_cam(model, torch.randn(1, 3, SIZE, SIZE), layer="nope")
