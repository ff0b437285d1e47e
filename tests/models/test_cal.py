"""gaze.models.cal (CAL / WS-DAN) against independent computations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gaze.engine.evaluate import EVAL_PROTOCOLS, TTA_CROPS, VALIDATION_CROP
from gaze.engine.optim import ScheduleSpan, lr_factor
from gaze.models import create_model
from gaze.models.cal import (
    FEATURE_SCALE,
    attention_crop_drop,
    bilinear_attention_pool,
    crop_boxes,
    crop_images,
    map_choices,
)
from tests.engine.test_dist import free_port

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cal(name: str = "cal", classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=classes, backbone="resnet18", input_size=64, num_attentions=4)


def test_bap_is_the_formula_with_sign_sqrt_and_one_l2_norm():
    generator = np.random.default_rng(0)
    features = generator.normal(size=(2, 3, 4, 5)).astype(np.float32)
    attentions = generator.random((2, 2, 4, 5)).astype(np.float32)
    pooled = np.einsum("bmhw,bchw->bmc", attentions, features).reshape(2, -1) / 20
    signed = np.sign(pooled) * np.sqrt(np.abs(pooled) + 1e-6)
    expected = signed / np.linalg.norm(signed, axis=1, keepdims=True)
    actual = bilinear_attention_pool(torch.from_numpy(features), torch.from_numpy(attentions))
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-5, atol=1e-6)
    small = torch.rand(2, 2, 2, 3)
    resized = F.interpolate(small, size=(4, 5), mode="bilinear", align_corners=True)
    torch.testing.assert_close(bilinear_attention_pool(torch.from_numpy(features), small),
                               bilinear_attention_pool(torch.from_numpy(features), resized))


def test_the_effect_is_p_minus_the_counterfactual_logits_with_ones_in_evaluation():
    model = tiny_cal().eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = model.forward_all(images)
        features = model.backbone(images)
        counterfactual = model.fc(FEATURE_SCALE * bilinear_attention_pool(features, torch.ones_like(outputs["attentions"])))
        torch.testing.assert_close(outputs["effect"], outputs["logits"] - counterfactual)
        torch.testing.assert_close(outputs["logits"], model(images))
    model.train()
    torch.manual_seed(1)
    first = model.forward_all(images)["effect"]
    second = model.forward_all(images)["effect"]
    assert not torch.allclose(first, second)  # U(0, 2) drawn afresh in training
    assert "effect" not in tiny_cal("wsdan").eval().forward_all(images)


def test_crop_boxes_follow_a_hand_mask_with_padding_clamping_and_the_empty_fallback():
    maps = torch.zeros(3, 1, 20, 10)
    maps[0, 0, 5:9, 2:6] = 1.0     # rows 5..8, columns 2..5
    maps[1, 0, 0:3, 8:10] = 1.0    # at the corner: padding clamps
    boxes = crop_boxes(maps, torch.tensor([0.5, 0.5, 0.5]), padding=0.1)
    torch.testing.assert_close(boxes[0], torch.tensor([2 - 1.0, 5 - 2.0, 6 + 1.0, 9 + 2.0]))  # pad 0.1 x (20 rows, 10 cols)
    torch.testing.assert_close(boxes[1], torch.tensor([7.0, 0.0, 10.0, 5.0]))
    torch.testing.assert_close(boxes[2], torch.tensor([0.0, 0.0, 10.0, 20.0]))  # an empty mask: the whole image


def test_crop_images_resize_the_box_and_the_whole_box_is_the_image():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    whole = crop_images(images, torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2))
    torch.testing.assert_close(whole, images)
    half = crop_images(images[:1], torch.tensor([[0.0, 0.0, 4.0, 8.0]]))  # the left half, stretched x2
    expected = F.interpolate(images[:1, :, :, :4], size=(8, 8), mode="bilinear", align_corners=False)
    # the same bilinear samples, except the last column, which is sampled from the image beyond the box
    torch.testing.assert_close(half[..., :7], expected[..., :7], atol=1e-4, rtol=0)
    assert half[0, 0, 0, 7] == pytest.approx(float(images[0, 0, 0, 3] * 0.75 + images[0, 0, 0, 4] * 0.25))


def test_drop_zeroes_the_map_above_its_threshold_and_the_draws_follow_the_weights():
    images = torch.ones(1, 3, 4, 4)
    attentions = torch.zeros(1, 2, 4, 4)
    attentions[0, :, :2, :2] = 1.0  # both maps peak in the top-left quarter
    _, drops = attention_crop_drop(images, attentions, crop_theta=0.5, drop_theta=0.5, padding=0.0)
    assert drops[0, :, :1, :1].sum() == 0 and drops[0, :, 3:, 3:].sum() == 3
    weights = torch.zeros(1, 3, 2, 2)
    weights[0, 0], weights[0, 1] = 1.0, 9.0  # sums 4 and 36: sqrt -> 2 : 6 : ~0.001
    generator = torch.Generator().manual_seed(0)
    draws = map_choices(weights.expand(4000, -1, -1, -1), 2, generator).flatten()
    shares = torch.bincount(draws, minlength=3).float() / len(draws)
    torch.testing.assert_close(shares, torch.tensor([0.25, 0.75, 0.0]), atol=0.02, rtol=0)


def test_centre_update_is_the_class_mean_of_the_batch_and_uses_normalised_centres():
    model = tiny_cal()
    model.feature_center.normal_()
    before = model.feature_center.clone()
    pooled = F.normalize(torch.randn(4, model.feature_center.shape[1]), dim=1)
    labels = torch.tensor([0, 2, 0, 0])
    loss = model.centre_loss(pooled, labels)
    normalised = F.normalize(before, dim=1)
    assert loss.item() == pytest.approx(float((pooled - normalised[labels]).pow(2).sum(1).mean()), rel=1e-5)
    expected = before.clone()
    expected[0] += 0.05 * (pooled[[0, 2, 3]].mean(0) - normalised[0])
    expected[2] += 0.05 * (pooled[1] - normalised[2])
    torch.testing.assert_close(model.feature_center, expected)  # class 1 is absent: unchanged


def centre_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    model = tiny_cal()
    torch.manual_seed(5)
    pooled = F.normalize(torch.randn(4, model.feature_center.shape[1]), dim=1)
    labels = torch.tensor([0, 1, 0, 2])
    model.update_centres(pooled[2 * rank: 2 * rank + 2], labels[2 * rank: 2 * rank + 2])  # each rank half the batch
    torch.save(model.feature_center, Path(out_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_centres_are_all_reduced_across_ranks(tmp_path):
    torch.multiprocessing.start_processes(centre_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True,
                                          start_method="fork")
    model = tiny_cal()
    torch.manual_seed(5)
    pooled = F.normalize(torch.randn(4, model.feature_center.shape[1]), dim=1)
    model.update_centres(pooled, torch.tensor([0, 1, 0, 2]))  # one process, the whole batch
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True), model.feature_center)


def test_the_cal_lr_law():
    span = ScheduleSpan(steps_per_epoch=10, total_epochs=160)
    assert lr_factor(0, "cal_exponential", span) == 1.0
    assert lr_factor(20, "cal_exponential", span) == pytest.approx(0.9)
    assert lr_factor(5, "cal_exponential", span) == pytest.approx(0.9 ** 0.25)
    assert lr_factor(1600, "cal_exponential", span) * 1e-3 == pytest.approx(2.18e-7, rel=0.01)  # B7: ~2e-7 at 160


def test_protocols_average_the_views_as_published():
    model = tiny_cal().eval()
    batch = {"image": torch.randn(2, 3, 64, 64), "label": torch.tensor([0, 1])}
    with torch.no_grad():
        def views(images, crops):
            raw = model.forward_all(images)
            return [raw["logits"]] + [model.forward_all(model.crop_view(images, raw["attentions"], *c))["logits"]
                                      for c in crops]

        torch.testing.assert_close(EVAL_PROTOCOLS["raw"](model, batch)["logits"], model(batch["image"]))
        torch.testing.assert_close(EVAL_PROTOCOLS["raw+crop"](model, batch)["logits"],
                                   torch.stack(views(batch["image"], [VALIDATION_CROP])).mean(0))
        both = views(batch["image"], TTA_CROPS) + views(batch["image"].flip(-1), TTA_CROPS)
        torch.testing.assert_close(EVAL_PROTOCOLS["cal_tta"](model, batch)["logits"], torch.stack(both).mean(0))
        aux = EVAL_PROTOCOLS["raw"](model, batch)["aux_top1"]
        assert aux.shape == (2,) and set(aux.tolist()) <= {0.0, 100.0}
    baseline = create_model("baseline", num_classes=3, backbone="resnet18", input_size=64).eval()
    with pytest.raises(ValueError, match="no attention maps to crop by"):
        EVAL_PROTOCOLS["raw+crop"](baseline, batch)


def test_one_training_step_reaches_every_part():
    model = tiny_cal().train()
    batch = {"image": torch.randn(4, 3, 64, 64), "label": torch.tensor([0, 1, 2, 0])}
    outputs = model.loss(batch)
    expected = outputs["loss_ce"] / 3 + outputs["loss_effect"] + 2 * outputs["loss_aug"] / 3 + outputs["loss_centre"]
    torch.testing.assert_close(outputs["loss"], expected)
    outputs["loss"].backward()
    assert model.attention[0].weight.grad.abs().sum() > 0 and model.backbone.net.conv1.weight.grad.abs().sum() > 0
    assert model.feature_center.abs().sum() > 0  # updated
    wsdan = tiny_cal("wsdan").train()
    parts = wsdan.loss(batch)
    torch.testing.assert_close(parts["loss"], (parts["loss_ce"] + 2 * parts["loss_aug"]) / 3 + parts["loss_centre"])
    assert "loss_effect" not in parts


def test_gaze_guided_crops_follow_the_gaze_and_mixed_draws_it_half_the_time():
    images = torch.ones(64, 3, 20, 20)
    attentions = torch.zeros(64, 2, 5, 5)
    attentions[:, :, 0, 0] = 1.0  # the model looks at the top-left corner
    gaze = torch.zeros(64, 1, 20, 20)
    gaze[:, :, 12:16, 12:16] = 1.0  # people look at the bottom-right
    _, drops = attention_crop_drop(images, attentions, crop_theta=0.5, drop_theta=0.5, padding=0.0, gaze=gaze,
                                   source="gaze")
    assert (drops[:, :, 13:15, 13:15] == 0).all() and (drops[:, :, :8, :8] == 1).all()  # the gaze region, not the model's
    generator = torch.Generator().manual_seed(0)
    _, mixed = attention_crop_drop(images, attentions, crop_theta=0.5, drop_theta=0.5, padding=0.0, gaze=gaze,
                                   source="mixed", generator=generator)
    by_gaze = (mixed[:, 0, 13, 13] == 0).float().mean()
    assert 0.3 < by_gaze < 0.7 and ((mixed[:, 0, 13, 13] == 0) ^ (mixed[:, 0, 1, 1] == 0)).all()


def test_the_gaze_alignment_loss_by_hand_and_gaze_is_asked_for_in_training():
    from gaze.models.cal import CAL, alignment_loss

    attentions = torch.zeros(1, 2, 2, 2)
    attentions[0, 0, 0, 0], attentions[0, 1, 0, 0], attentions[0, 1, 1, 1] = 2.0, 2.0, 1.0  # mean [[2, 0], [0, .5]]
    gaze = torch.zeros(1, 1, 4, 4)
    gaze[0, 0, :2, 2:] = 1.0  # top-right quarter
    assert alignment_loss(attentions, gaze).item() == pytest.approx((1 + 1 + 0 + 0.25) / 4)
    assert CAL.needs_gaze("train", {"attention_source": "gaze"}) and not CAL.needs_gaze("test", {"attention_source": "gaze"})
    assert CAL.needs_gaze("train", {"gaze_alignment": 0.5}) and not CAL.needs_gaze("train", {})
    model = create_model("cal", num_classes=3, backbone="resnet18", input_size=64, num_attentions=4,
                         attention_source="mixed", gaze_alignment=0.5).train()
    batch = {"image": torch.randn(2, 3, 64, 64), "label": torch.tensor([0, 1]), "gaze": torch.rand(2, 1, 64, 64)}
    parts = model.loss(batch)
    assert parts["loss_alignment"] > 0
    torch.testing.assert_close(parts["loss"], parts["loss_ce"] / 3 + parts["loss_effect"] + 2 * parts["loss_aug"] / 3
                               + parts["loss_centre"] + parts["loss_alignment"])
    with pytest.raises(KeyError, match="need 'gaze'"):
        model.loss({"image": batch["image"], "label": batch["label"]})
