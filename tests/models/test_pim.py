"""gaze.models.pim (PIM) against independent computations; PIM's learning-rate laws."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gaze.engine.optim import ScheduleSpan, lr_factor
from gaze.models import create_model
from gaze.models.backbones import SWIN_MERGED_STAGES, VIT_BLOCKS_8_11
from gaze.models.cam import grad_cam
from gaze.models.pim import Combiner

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("backbone, upsample", [("resnet18", "bilinear"), ("resnet18", "conv"),
                                                ("tf_efficientnet_lite0", "bilinear")])
def test_shapes_of_every_head(backbone, upsample):
    torch.manual_seed(0)
    model = create_model("pim", num_classes=5, backbone=backbone, input_size=64, fpn_size=32, fpn_upsample=upsample,
                         num_selects=[32, 8, 4, 1]).eval()
    outputs = model.forward_all(torch.randn(2, 3, 64, 64))
    tokens = [h * w for h, w in model.grids]
    assert tokens == [256, 64, 16, 4]
    for l, (count, selected) in enumerate(zip(tokens, [32, 8, 4, 1]), 1):
        assert outputs[f"layer{l}"].shape == (2, count, 5)
        assert outputs[f"select_layer{l}"].shape == (2, selected, 5)
        assert outputs[f"drop_layer{l}"].shape == (2, count - selected, 5)
    assert outputs["comb_outs"].shape == (2, 5) and model.combiner.adj1.shape == (45 // 32, 45 // 32)


def test_the_selector_keeps_the_most_confident_tokens():
    torch.manual_seed(0)
    model = create_model("pim", num_classes=3, backbone="resnet18", input_size=64, fpn_size=16,
                         num_selects=[5, 3, 2, 1]).eval()
    with torch.no_grad():
        outputs = model.forward_all(torch.randn(1, 3, 64, 64))
    logits = outputs["layer2"][0]  # (64, 3)
    confidence = logits.softmax(-1).amax(-1)
    ranking = sorted(range(len(confidence)), key=lambda i: -float(confidence[i]))  # by hand
    torch.testing.assert_close(outputs["select_layer2"][0], logits[ranking[:3]])
    torch.testing.assert_close(outputs["drop_layer2"][0], logits[ranking[3:]])


def test_the_combiner_is_its_formula():
    torch.manual_seed(0)
    combiner = Combiner(tokens=64, features=8, num_classes=3).eval()
    with torch.no_grad():
        combiner.alpha1.fill_(0.7)
        selections = torch.randn(2, 64, 8)
        hs = selections.transpose(1, 2) @ combiner.param_pool0.weight.T + combiner.param_pool0.bias  # (B,8,J=2)
        q = (torch.einsum("oc,bcj->boj", combiner.conv_q1.weight[:, :, 0], hs) + combiner.conv_q1.bias[:, None]).mean(1)
        k = (torch.einsum("oc,bcj->boj", combiner.conv_k1.weight[:, :, 0], hs) + combiner.conv_k1.bias[:, None]).mean(1)
        adjacency = combiner.adj1 + 0.7 * torch.tanh(q[:, :, None] - k[:, None, :])
        mixed = (torch.einsum("oc,bcj->boj", combiner.conv1.weight[:, :, 0], hs) + combiner.conv1.bias[:, None]) @ adjacency
        bn = combiner.batch_norm1
        mixed = (mixed - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[:, None] \
            + bn.bias[:, None]
        pooled = (mixed @ combiner.param_pool1.weight.T + combiner.param_pool1.bias)[..., 0]
        expected = pooled @ combiner.classifier.weight.T + combiner.classifier.bias
        torch.testing.assert_close(combiner(selections), expected, rtol=1e-4, atol=1e-5)
    assert torch.allclose(combiner.adj1, torch.eye(2) / 100 + 0.01)


def test_the_loss_is_the_weighted_hand_sum():
    torch.manual_seed(0)
    model = create_model("pim", num_classes=3, backbone="resnet18", input_size=64, fpn_size=16,
                         num_selects=[5, 3, 2, 1], lambda_s=0.25).train()
    batch = {"image": torch.randn(2, 3, 64, 64), "label": torch.tensor([0, 2])}
    torch.manual_seed(1)
    parts = model.loss(batch)
    torch.manual_seed(1)
    outputs = model.forward_all(batch["image"])
    labels = batch["label"]
    layers = sum(F.cross_entropy(outputs[f"layer{l}"].mean(1), labels) for l in range(1, 5))
    selected = sum(F.cross_entropy(outputs[f"select_layer{l}"].reshape(-1, 3),
                                   labels.repeat_interleave(outputs[f"select_layer{l}"].shape[1])) for l in range(1, 5))
    dropped = sum(((torch.tanh(outputs[f"drop_layer{l}"]) + 1) ** 2).mean() for l in range(1, 5))
    combiner = F.cross_entropy(outputs["comb_outs"], labels)
    expected = 0.5 * layers + 0.25 * selected + 5.0 * dropped + combiner
    torch.testing.assert_close(parts["loss"], expected, rtol=1e-4, atol=1e-5)
    parts["loss"].backward()
    assert model.combiner.param_pool0.weight.grad.abs().sum() > 0


def test_both_pim_lr_laws_at_zero_the_warm_up_end_and_the_end():
    span = ScheduleSpan(steps_per_epoch=375, total_epochs=50, warmup_steps=800)
    total = 375 * 50
    for law in ("pim", "pim_published"):
        assert lr_factor(0, law, span) == 0.0 and lr_factor(400, law, span) == pytest.approx(0.5)
        assert lr_factor(800, law, span) == pytest.approx(1.0)
    assert lr_factor(total, "pim", span) == pytest.approx(0.0, abs=1e-12)  # the corrected law reaches 0
    published_end = 0.5 * (1 + math.cos(math.pi * (total - 800) / total))
    assert lr_factor(total, "pim_published", span) == pytest.approx(published_end)
    assert 5e-4 * published_end == pytest.approx(2.2e-6, rel=0.05)  # §3.5: ~2.2e-6 on CUB


def test_highest_k_sums_the_most_confident_heads_first():
    model = create_model("pim", num_classes=3, backbone="resnet18", input_size=64, fpn_size=16,
                         num_selects=[5, 3, 2, 1]).eval()
    layer_logits = [torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[3.0, 0.0, 0.0]]),  # softmax maxima by hand:
                    torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 5.0]])]  # 1/3, .87, .58, .99
    outputs = {f"layer{l}": logits[:, None].expand(1, 4, 3) for l, logits in enumerate(layer_logits, 1)}
    outputs["comb_outs"] = torch.tensor([[0.0, 2.0, 0.0]])  # .79
    heads = model.head_probabilities(outputs)
    soft = {name: logits.softmax(-1) for name, logits in zip(
        ["layer1", "layer2", "layer3", "layer4", "combiner"], [*layer_logits, outputs["comb_outs"]])}
    by_hand = ["layer4", "layer2", "combiner", "layer3", "layer1"]  # descending max confidence
    for k in range(1, 6):
        torch.testing.assert_close(heads[f"highest-{k}"], sum(soft[name] for name in by_hand[:k]))
    torch.testing.assert_close(heads["layer2"], soft["layer2"])
    assert heads["highest-1"].argmax() == 2  # the published ascending order would pick layer1's tie -> class 0


def test_predict_reports_every_head_top1_and_top3():
    torch.manual_seed(0)
    model = create_model("pim", num_classes=5, backbone="resnet18", input_size=64, fpn_size=16,
                         num_selects=[5, 3, 2, 1]).eval()
    batch = {"image": torch.randn(4, 3, 64, 64), "label": torch.tensor([0, 1, 2, 3])}
    with torch.no_grad():
        output = model.predict(batch)
        heads = model.head_probabilities(model.forward_all(batch["image"]))
    assert sorted(k for k in output if k.startswith("top1_")) == sorted(f"top1_{h}" for h in heads)
    for head, probabilities in heads.items():
        top3 = probabilities.topk(3, 1).indices
        expected3 = [100.0 * (label in row) for label, row in zip(batch["label"].tolist(), top3.tolist())]
        assert output[f"top3_{head}"].tolist() == expected3
        assert output[f"top1_{head}"].tolist() == [100.0 * (p == y) for p, y in
                                                   zip(probabilities.argmax(1).tolist(), batch["label"].tolist())]


@pytest.mark.parametrize("backbone, size, grids", [
    ("swin_tiny_patch4_window7_224", 112, [(28, 28), (14, 14), (7, 7), (4, 4)]),  # tokens (B,h,w,C) -> NCHW
    ("vit_tiny_patch16_224", 96, [(6, 6)] * 4),  # blocks.8-11 at 96 px: the position table follows the input
])
def test_token_backbones_give_every_head(backbone, size, grids):
    torch.manual_seed(0)
    model = create_model("pim", num_classes=4, backbone=backbone, input_size=size, fpn_size=16,
                         fpn_upsample="conv").eval()
    assert model.grids == grids
    with torch.no_grad():
        outputs = model.forward_all(torch.randn(2, 3, size, size))
    for l, (h, w) in enumerate(grids, 1):
        assert outputs[f"layer{l}"].shape == (2, h * w, 4)
    assert outputs["comb_outs"].shape == (2, 4)
    cams = grad_cam(model, torch.randn(2, 3, size, size), targets=torch.tensor([0, 3]))  # the NCHW last stage
    assert cams.cams.shape == (2, 1, size, size) and torch.isfinite(cams.cams).all() and cams.cams.amax() > 0


def test_the_gaze_guided_selector_loss_is_its_formula_and_needs_gaze_in_training():
    torch.manual_seed(0)
    model = create_model("pim", num_classes=4, backbone="resnet18", input_size=64, fpn_size=16,
                         num_selects=[5, 3, 2, 1], lambda_g=2.0).eval()
    gaze = torch.rand(2, 1, 64, 64)
    batch = {"image": torch.randn(2, 3, 64, 64), "label": torch.tensor([0, 3]), "gaze": gaze}
    parts = model.loss(batch)
    outputs = model.forward_all(batch["image"])
    expected = []
    for l, (h, w) in enumerate(model.grids, 1):  # by hand: block means of the gaze, min-max; rescaled max-softmax
        blocks = gaze[:, 0].reshape(2, h, 64 // h, w, 64 // w).mean((2, 4)).flatten(1)
        blocks = (blocks - blocks.min(1, keepdim=True).values) / (blocks.max(1, keepdim=True).values
                                                                  - blocks.min(1, keepdim=True).values)
        confidence = (outputs[f"layer{l}"].softmax(-1).max(-1).values - 0.25) / 0.75
        expected.append(((confidence - blocks) ** 2).mean())
    torch.testing.assert_close(parts["loss_gaze"], sum(expected) / 4, rtol=1e-4, atol=1e-6)
    model.weights["lambda_g"] = 0.0
    torch.testing.assert_close(parts["loss"] - 2.0 * parts["loss_gaze"], model.loss(batch)["loss"], rtol=1e-5, atol=1e-5)
    cls = type(model)
    assert cls.needs_gaze("train", {"lambda_g": 0.5}) and not cls.needs_gaze("train", {"lambda_g": 0.0})
    assert not cls.needs_gaze("test", {"lambda_g": 0.5})
    model.weights["lambda_g"] = 1.0
    with pytest.raises(ValueError, match="needs the gaze map"):
        model.loss({"image": batch["image"], "label": batch["label"]})


def test_the_published_swin_stages_are_read_after_each_patch_merging():
    torch.manual_seed(0)
    model = create_model("pim", num_classes=3, backbone="swin_tiny_patch4_window7_224", input_size=224, fpn_size=16,
                         fpn_upsample="conv", stage_modules=list(SWIN_MERGED_STAGES)).train()
    assert model.grids == [(28, 28), (14, 14), (7, 7), (7, 7)]  # Swin-L 384's 48/24/12/12 at 224 px (Swin-T)
    assert model.backbone.stage_channels == [192, 384, 768, 768]
    assert "backbone.net.layers.0.blocks.0.attn.qkv.weight" in model.state_dict()  # timm's own names
    assert not model.backbone.net.norm.weight.requires_grad  # after the last stage: no gradient to wait for
    parts = model.loss({"image": torch.randn(2, 3, 224, 224), "label": torch.tensor([0, 2])})
    parts["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_the_published_vit_keeps_its_class_token_in_every_stage():
    torch.manual_seed(0)
    model = create_model("pim", num_classes=4, backbone="vit_tiny_patch16_224", input_size=96, fpn_size=16,
                         fpn_upsample="conv", stage_modules=list(VIT_BLOCKS_8_11), lambda_g=1.0).train()
    assert model.grids == [(6, 6)] * 4 and model.prefix_tokens == 1 and model.num_selects[0] <= 37
    images = torch.randn(2, 3, 96, 96)
    batch = {"image": images, "label": torch.tensor([0, 3]), "gaze": torch.rand(2, 1, 96, 96)}
    parts = model.loss(batch)  # the gaze loss on the 6 x 6 patch tokens, the class token left out
    parts["loss"].backward()
    model.eval()
    with torch.no_grad():
        outputs = model.forward_all(images)
        maps, prefixes = model.backbone.forward_stage_tokens(images)
    assert outputs["layer1"].shape == (2, 1 + 36, 4)  # 785 at 448 px as published: 1 + 28^2
    blocks = {}
    hooks = [model.backbone.net.get_submodule(name).register_forward_hook(
        lambda module, inputs, output, name=name: blocks.__setitem__(name, output)) for name in VIT_BLOCKS_8_11]
    with torch.no_grad():
        model.backbone.net.forward_features(model.backbone.input_scale * images + model.backbone.input_shift)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(prefixes[0], blocks["blocks.8"][:, :1])  # the class token, as the block gave it
    torch.testing.assert_close(maps[3].flatten(2).transpose(1, 2), blocks["blocks.11"][:, 1:])
    cams = grad_cam(model, images, targets=torch.tensor([1, 2]))
    assert cams.cams.shape == (2, 1, 96, 96) and torch.isfinite(cams.cams).all()
    with pytest.raises(ValueError, match="class token need fpn_upsample='conv'"):
        create_model("pim", num_classes=4, backbone="vit_tiny_patch16_224", input_size=96, fpn_size=16,
                     fpn_upsample="bilinear", stage_modules=list(VIT_BLOCKS_8_11))
