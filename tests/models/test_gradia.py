"""GRADIA (gaze/models/gradia.py): targets, the phase-2 loss by hand, batched CAM, scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gaze.models import create_model
from gaze.models.cam import cam_from_features
from gaze.models.gradia import attention_scores, attention_targets

SIZE = 64


def model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("gradia", num_classes=3, backbone="resnet18", input_size=SIZE)


def test_targets_equal_opencv_area_resize_blur_and_max():
    rng = np.random.default_rng(0)
    masks = (rng.random((2, 224, 224)) > 0.7).astype(np.float32)
    masks[1, :, :100] = 0
    ours = attention_targets(torch.from_numpy(masks)[:, None], (7, 7)).numpy()[:, 0]
    for mask, target in zip(masks, ours):
        small = cv2.resize(mask, (7, 7), interpolation=cv2.INTER_AREA)
        blurred = cv2.GaussianBlur(small, (3, 3), 0)
        np.testing.assert_allclose(target, blurred / blurred.max(), atol=1e-6)
    empty = attention_targets(torch.zeros(1, 1, 224, 224), (7, 7))
    assert torch.equal(empty, torch.zeros_like(empty))  # no NaN (published: 0/0, G7)


def test_phase_two_loss_by_hand_on_two_samples():
    net = model().train()
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, SIZE, SIZE, generator=generator)
    masks = torch.zeros(2, 1, SIZE, SIZE)
    masks[0, :, :32, :32] = 1  # sample 1 has an all-zero mask: no attention term
    batch = {"image": images, "label": torch.tensor([2, 0]), "mask": masks,
             "weight_ce": torch.tensor([0.4, 1.0]), "weight_att": torch.tensor([1.6, 1.0])}
    net.phase = 2
    torch.manual_seed(5)
    out = net.loss(batch)
    net.zero_grad()
    # independent computation: hooks-free, sample 0 alone through the same (batch) forward
    torch.manual_seed(5)
    features = net.forward_features(images)
    logits = net.forward_head(features)
    ce = F.cross_entropy(logits, batch["label"], reduction="none")
    (grads,) = torch.autograd.grad(logits[0, 2], features, retain_graph=True)
    cam = (grads[0].mean((1, 2))[:, None, None] * features[0]).sum(0)  # no ReLU
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    pooled = F.adaptive_avg_pool2d(masks[:1], features.shape[-2:])
    blurred = torch.from_numpy(cv2.GaussianBlur(pooled[0, 0].numpy(), (3, 3), 0))
    target = blurred / blurred.max()
    expected_ce = (0.4 * ce[0] + 1.0 * ce[1]) / 2
    expected_att = 1.6 * (cam - target).abs().mean()
    torch.testing.assert_close(out["loss_ce"], expected_ce)
    torch.testing.assert_close(out["loss_attention"], expected_att, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"], expected_ce + expected_att, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert net.backbone.net.conv1.weight.grad.abs().sum() > 0


def test_no_mask_and_zero_weights_give_no_attention_term_and_phase_one_is_ce():
    net = model().train()
    batch = {"image": torch.randn(2, 3, SIZE, SIZE), "label": torch.tensor([0, 1]),
             "mask": torch.zeros(2, 1, SIZE, SIZE)}
    net.phase = 2
    out = net.loss(batch)
    assert float(out["loss_attention"]) == 0.0 and torch.isfinite(out["loss"])
    ones = torch.ones(2, 1, SIZE, SIZE)
    zero_weight = net.loss({**batch, "mask": ones, "weight_att": torch.zeros(2)})
    assert float(zero_weight["loss_attention"]) == 0.0
    net.phase = 1
    assert set(net.loss(batch)) == {"loss", "loss_ce", "logits"}


def test_batched_cam_equals_the_per_sample_cam_in_eval_mode():
    net = model().eval()
    images = torch.randn(3, 3, SIZE, SIZE)
    labels = torch.tensor([0, 1, 2])
    features = net.forward_features(images)
    batched = cam_from_features(features, net.forward_head(features), labels, relu=False)
    for k in range(3):  # the published loop: one forward and backward per sample
        single_features = net.forward_features(images[k:k + 1])
        single = cam_from_features(single_features, net.forward_head(single_features), labels[k:k + 1], relu=False)
        torch.testing.assert_close(batched[k:k + 1], single, rtol=1e-4, atol=1e-5)


def test_attention_scores_against_hand_masks():
    predicted = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    human = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    predicted[0, 0, :2, :2] = True  # 4 pixels
    human[0, 0, :2, :3] = True  # 6 pixels, 4 shared
    human[1, 0, 0, 0] = True  # nothing predicted
    scores = attention_scores(predicted, human)  # sample 2: no human mask -> NaN
    assert scores["attention_iou"][0] == pytest.approx(4 / 6)
    assert scores["attention_precision"][0] == 1.0 and scores["attention_recall"][0] == pytest.approx(4 / 6)
    assert scores["attention_f1"][0] == pytest.approx(2 * (4 / 6) / (1 + 4 / 6))
    assert scores["attention_iou"][1] == 0.0 and scores["attention_precision"][1] == 0.0
    assert all(torch.isnan(value[2]) for value in scores.values())


def test_predict_reports_the_scores_of_the_predicted_class_cam():
    net = model().eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    masks = torch.zeros(2, 1, SIZE, SIZE)
    masks[:, :, 10:40, 10:40] = 1
    with torch.no_grad():  # as the engine evaluates
        out = net.predict({"image": images, "mask": masks})
        logits = net(images)
    torch.testing.assert_close(out["logits"], logits)
    features = net.forward_features(images)
    cams = cam_from_features(features, net.forward_head(features), logits.argmax(1), size=(SIZE, SIZE))
    expected = attention_scores(cams > 0.75, masks)
    torch.testing.assert_close(out["attention_iou"], expected["attention_iou"])
    gaze = torch.rand(2, 1, SIZE, SIZE)
    assert set(net.predict({"image": images, "gaze": gaze})) > {"logits", "attention_iou"}  # masks from gaze
    assert torch.is_tensor(net.predict({"image": images}))
