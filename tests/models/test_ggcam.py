"""GG-CAM (gaze/models/ggcam.py): CAM layer, gaze targets, uncertainty-weighted loss (cxr §3)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

import gaze.models.ggcam  # noqa: F401  (registers 'ggcam')
from gaze.models import create_model
from gaze.models.ggcam import GGCAM, CamLayer

SIZE = 64


def make_batch(labels, seed=0):
    torch.manual_seed(seed)
    batch_size = len(labels)
    return {
        "image": torch.randn(batch_size, 3, SIZE, SIZE),
        "label": torch.tensor(labels),
        "gaze": torch.rand(batch_size, 1, SIZE, SIZE),
        "id": [str(i) for i in range(batch_size)],
    }


def small_model(**kwargs):
    torch.manual_seed(0)
    return GGCAM(backbone="resnet18", input_size=SIZE, **kwargs)


def test_cam_layer_is_gap_then_linear_with_weight_over_c():
    torch.manual_seed(0)
    layer = CamLayer(in_channels=64, num_classes=3)
    features = torch.randn(2, 64, 5, 4)
    cams = layer(features)
    assert cams.shape == (2, 3, 5, 4)
    explicit = torch.einsum("kc,bchw->bkhw", layer.weight, features) / 64
    torch.testing.assert_close(cams, explicit, atol=1e-6, rtol=0)
    expected = F.linear(features.mean(dim=(2, 3)), layer.weight / 64, layer.bias)
    torch.testing.assert_close(layer.logits(cams), expected, atol=1e-6, rtol=0)


def test_cam_layer_init_bounds():
    torch.manual_seed(0)
    layer = CamLayer(in_channels=2048, num_classes=3)
    bound = 1 / math.sqrt(2048)
    for tensor in (layer.weight, layer.bias):
        assert tensor.abs().max() <= bound
    assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range
    assert layer.weight.shape == (3, 2048) and layer.bias.shape == (3,)


def test_gaze_targets_area_average_and_max_normalisation():
    model = small_model()
    gaze = torch.zeros(3, 1, SIZE, SIZE)
    gaze[0, 0, 10, 40] = 1.0  # one bright pixel in cell (0, 1)
    gaze[1, 0, 32:, :48] = 0.5  # covers cell (1, 0), half of cell (1, 1)
    targets = model.gaze_targets(gaze, (2, 2))
    assert targets.shape == (3, 1, 2, 2) and targets.dtype == torch.float32
    torch.testing.assert_close(targets[0, 0], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(targets[1, 0], torch.tensor([[0.0, 0.0], [1.0, 0.5]]))
    assert torch.equal(targets[2], torch.zeros(1, 2, 2))  # all zero stays zero, no NaN
    # Non-square grid, against an independent block mean.
    random = torch.rand(2, 1, 96, 80)
    blocks = random.reshape(2, 1, 3, 32, 2, 40).mean(dim=(3, 5))
    expected = blocks / blocks.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(model.gaze_targets(random, (3, 2)), expected)


def test_gaze_targets_point_sampling_is_the_published_one():
    # cxr §3.1: the published target is every 64th pixel of the padded Blur500 map, i.e. every
    # 32nd pixel of the 1536x1280 input: pixels 0, 32, 64, ... then divided by the max.
    model = small_model(gaze_sampling="point")
    random = torch.rand(2, 1, 96, 80)
    expected = random[:, :, 0::32, 0::40] / random[:, :, 0::32, 0::40].amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(model.gaze_targets(random, (3, 2)), expected)
    one_cell = torch.zeros(1, 1, 96, 80)
    one_cell[0, 0, 33, 41] = 1.0  # off the sampled pixels: the published target misses it
    assert model.gaze_targets(one_cell, (3, 2)).sum() == 0 and small_model().gaze_targets(one_cell, (3, 2)).sum() > 0
    with pytest.raises(ValueError, match="gaze_sampling='nearest'"):
        small_model(gaze_sampling="nearest")


def expected_loss(model, batch, target_classes, log_sigma_ce, log_sigma_gaze):
    """The cxr §3.4 formula written out independently."""
    cams, logits = model.cams(batch["image"])
    ce = F.cross_entropy(logits, batch["label"])
    cam = torch.stack([cams[i, t] for i, t in enumerate(target_classes)])  # (B,h,w)
    gaze = F.avg_pool2d(batch["gaze"], SIZE // cams.shape[-1])[:, 0]
    gaze = gaze / gaze.flatten(1).max(dim=1).values[:, None, None]
    mse = ((cam - gaze) ** 2).mean()
    sigma_c, sigma_d = math.exp(log_sigma_ce), math.exp(log_sigma_gaze)
    total = ce / sigma_c**2 + math.log(sigma_c + 1) + mse / (2 * sigma_d**2) + math.log(sigma_d + 1)
    return total, ce, mse


@pytest.mark.parametrize("cam_target", ["true", "class0"])
def test_loss_matches_the_formula(cam_target):
    model = small_model(cam_target=cam_target).eval()
    with torch.no_grad():
        model.log_sigma_ce.fill_(0.3)
        model.log_sigma_gaze.fill_(-0.7)
    batch = make_batch([0, 1, 2, 1])
    with torch.no_grad():
        out = model.loss(batch)
        targets = batch["label"].tolist() if cam_target == "true" else [0, 0, 0, 0]
        total, ce, mse = expected_loss(model, batch, targets, 0.3, -0.7)
    torch.testing.assert_close(out["loss"], total)
    torch.testing.assert_close(out["loss_ce"], ce)
    torch.testing.assert_close(out["loss_gaze"], mse)
    torch.testing.assert_close(out["sigma_ce"], torch.tensor(math.exp(0.3)))
    torch.testing.assert_close(out["sigma_gaze"], torch.tensor(math.exp(-0.7)))
    assert out["logits"].shape == (4, 3) and not out["logits"].requires_grad
    assert not out["sigma_ce"].requires_grad and not out["sigma_gaze"].requires_grad


def test_faithful_and_fixed_targets():
    fixed, faithful = small_model(cam_target="true").eval(), small_model(cam_target="class0").eval()
    assert torch.equal(fixed.cam_head.weight, faithful.cam_head.weight)  # same seed, same net
    with torch.no_grad():
        zeros = make_batch([0, 0, 0])
        torch.testing.assert_close(fixed.loss(zeros)["loss"], faithful.loss(zeros)["loss"])
        mixed = make_batch([1, 2, 1])
        out_fixed, out_faithful = fixed.loss(mixed), faithful.loss(mixed)
        assert not torch.allclose(out_fixed["loss_gaze"], out_faithful["loss_gaze"])
        cams, _ = faithful.cams(mixed["image"])
        target = faithful.gaze_targets(mixed["gaze"], cams.shape[-2:])
        torch.testing.assert_close(out_faithful["loss_gaze"], F.mse_loss(cams[:, :1], target))
    with pytest.raises(ValueError, match="'true'.*'class0'"):
        GGCAM(backbone="resnet18", cam_target="predicted")


def test_gradients_reach_sigmas_cam_layer_and_backbone():
    model = small_model(log_sigma_gaze=-16.0)
    model.loss(make_batch([0, 2]))["loss"].backward()
    for name in ("log_sigma_ce", "log_sigma_gaze", "cam_head.weight", "cam_head.bias"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    backbone_grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in backbone_grads)
    assert model.log_sigma_gaze.grad < 0  # a large MSE weight pushes log σ_d up


def test_gaze_free_baseline_is_plain_ce():
    model = small_model(use_gaze=False).eval()
    batch = make_batch([0, 1, 2])
    del batch["gaze"]
    with torch.no_grad():
        out = model.loss(batch)
        logits = model(batch["image"])
    assert set(out) == {"loss", "loss_ce", "logits"}
    assert torch.equal(out["loss"], out["loss_ce"])
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, batch["label"]))


def test_missing_gaze_is_a_clear_key_error():
    batch = make_batch([0, 1])
    del batch["gaze"]
    with pytest.raises(KeyError, match="batch\\['gaze'\\].*use_gaze=False"):
        small_model().loss(batch)


def test_loss_is_float32_under_autocast_with_published_resnet_weights():
    model = small_model()  # resnet: log σ_d = -23, MSE weight e^46/2 ≈ 4.7e19
    assert model.log_sigma_gaze.item() == -23.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.loss(make_batch([0, 1]))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert out["loss"] > 1e17
    out["loss"].backward()
    assert torch.isfinite(model.log_sigma_gaze.grad)


@pytest.mark.parametrize(
    ("arch", "channels", "log_sigma_gaze"), [("efficientnetv2_s", 1280, -16.0), ("resnet50", 2048, -23.0)]
)
def test_published_backbones_shapes_and_initial_values(arch, channels, log_sigma_gaze):
    model = GGCAM(backbone=arch).eval()
    assert model.backbone.num_features == channels and model.cam_head.weight.shape == (3, channels)
    assert model.log_sigma_ce.item() == 7.0 and model.log_sigma_gaze.item() == log_sigma_gaze
    with torch.no_grad():
        cams, logits = model.cams(torch.randn(1, 3, SIZE, SIZE))
        assert cams.shape == (1, 3, 2, 2) and logits.shape == (1, 3)
        torch.testing.assert_close(model(torch.randn(1, 3, SIZE, SIZE)).shape, logits.shape)


def test_unknown_backbone_family_uses_minus_16(caplog):
    logger = logging.getLogger("gaze.models.ggcam")  # the 'gaze' logger may not propagate after a training run
    logger.addHandler(caplog.handler)
    try:
        model = GGCAM(backbone="mobilenetv3_small_050", num_classes=3)
    finally:
        logger.removeHandler(caplog.handler)
    assert model.log_sigma_gaze.item() == -16.0
    assert "no published log_sigma_gaze" in caplog.text


def test_adam_steps_lower_the_loss():
    model = small_model(log_sigma_ce=7.0, log_sigma_gaze=-16.0).train()
    batch = make_batch([0, 1, 2, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = model.loss(batch)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    assert losses[-1] < losses[0]


def test_registry_builds_ggcam():
    model = create_model("ggcam", num_classes=5, backbone="resnet18", input_size=(SIZE, SIZE))
    assert isinstance(model, GGCAM) and model.name == "ggcam" and model.epoch == 1
    assert model.cam_layers == {"Grad-CAM": "backbone"} and model.get_submodule(model.cam_layers["Grad-CAM"]) is model.backbone
    assert model(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 5)
