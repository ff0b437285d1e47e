"""FGVC-PIM's backup/best.pt ({'model', 'optimizer', 'epoch'}) into our format, on state dicts in its layout."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from gaze.engine.importers import convert_checkpoint, load_model_checkpoint
from gaze.models import create_model
from gaze.models.backbones import SWIN_MERGED_STAGES

pytestmark = pytest.mark.usefixtures("one_thread")


def pim_layout(backbone: dict, channels: list[int], tokens: list[int], fpn: int, classes: int, selected: int,
               conv_projection: bool, conv_up: bool) -> dict:
    """A state dict named as PIM's PluginMoodel (models/pim_module/pim_module.py), random values."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    state = {f"backbone.{k}": v for k, v in backbone.items()}
    for l, c in enumerate(channels, 1):
        shape = (lambda o, i: (o, i, 1, 1)) if conv_projection else (lambda o, i: (o, i))
        state.update({f"fpn.Proj_layer{l}.0.weight": rand(*shape(c, c)), f"fpn.Proj_layer{l}.0.bias": rand(c),
                      f"fpn.Proj_layer{l}.2.weight": rand(*shape(fpn, c)), f"fpn.Proj_layer{l}.2.bias": rand(fpn)})
        if conv_up and l > 1 and tokens[l - 1] != tokens[l - 2]:
            state.update({f"fpn.Up_layer{l}.weight": rand(tokens[l - 2], tokens[l - 1], 1),
                          f"fpn.Up_layer{l}.bias": rand(tokens[l - 2])})
        state.update({f"fpn_classifier_layer{l}.0.weight": rand(fpn, fpn, 1), f"fpn_classifier_layer{l}.0.bias": rand(fpn),
                      f"fpn_classifier_layer{l}.1.weight": 1 + rand(fpn), f"fpn_classifier_layer{l}.1.bias": rand(fpn),
                      f"fpn_classifier_layer{l}.1.running_mean": rand(fpn),
                      f"fpn_classifier_layer{l}.1.running_var": 1 + rand(fpn).abs(),
                      f"fpn_classifier_layer{l}.1.num_batches_tracked": torch.tensor(7),
                      f"fpn_classifier_layer{l}.3.weight": rand(classes, fpn, 1),
                      f"fpn_classifier_layer{l}.3.bias": rand(classes)})
    joints = selected // 32
    state.update({"combiner.param_pool0.weight": rand(joints, selected), "combiner.param_pool0.bias": rand(joints),
                  "combiner.adj1": torch.eye(joints) / 100 + 0.01, "combiner.conv1.weight": rand(fpn, fpn, 1),
                  "combiner.conv1.bias": rand(fpn), "combiner.batch_norm1.weight": 1 + rand(fpn),
                  "combiner.batch_norm1.bias": rand(fpn), "combiner.batch_norm1.running_mean": rand(fpn),
                  "combiner.batch_norm1.running_var": 1 + rand(fpn).abs(),
                  "combiner.batch_norm1.num_batches_tracked": torch.tensor(7),
                  "combiner.conv_q1.weight": rand(fpn // 4, fpn, 1), "combiner.conv_q1.bias": rand(fpn // 4),
                  "combiner.conv_k1.weight": rand(fpn // 4, fpn, 1), "combiner.conv_k1.bias": rand(fpn // 4),
                  "combiner.alpha1": torch.tensor([0.3]), "combiner.param_pool1.weight": rand(1, joints),
                  "combiner.param_pool1.bias": rand(1), "combiner.classifier.weight": rand(classes, fpn),
                  "combiner.classifier.bias": rand(classes)})
    return state


def test_a_resnet_pim_with_conv_projections_imports_and_computes_the_same_projection():
    backbone = timm.create_model("resnet18", pretrained=False).state_dict()  # + its fc: dropped
    state = pim_layout(backbone, [64, 128, 256, 512], [64, 16, 4, 1], fpn=16, classes=5, selected=64,
                       conv_projection=True, conv_up=False)
    checkpoint = convert_checkpoint({"model": {f"module.{k}": v for k, v in state.items()}, "optimizer": {},
                                     "epoch": 4}, "best.pt")
    config = checkpoint["config"]
    assert (checkpoint["model_name"], checkpoint["epoch"]) == ("pim", 5)
    assert {k: config[k] for k in ("backbone", "num_classes", "fpn_size", "fpn_upsample")} == \
        {"backbone": "resnet18", "num_classes": 5, "fpn_size": 16, "fpn_upsample": "bilinear"}
    assert "num_selects" not in config and "input_size" not in config  # the evaluating config's own
    model = create_model("pim", num_classes=5, backbone="resnet18", input_size=32, fpn_size=16,
                         num_selects=[44, 15, 4, 1]).eval()  # sum 64: the combiner's 64 inputs
    load_model_checkpoint(model, checkpoint)  # strict: every key mapped, every shape checked
    stage = torch.randn(2, 64, 8, 8)  # the published 1x1 Conv2d projection == our Linear on the tokens
    reference = F.conv2d(F.relu(F.conv2d(stage, state["fpn.Proj_layer1.0.weight"], state["fpn.Proj_layer1.0.bias"])),
                         state["fpn.Proj_layer1.2.weight"], state["fpn.Proj_layer1.2.bias"])
    ours = model.projections[0](stage.flatten(2).transpose(1, 2))
    torch.testing.assert_close(ours, reference.flatten(2).transpose(1, 2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.combiner.alpha1, torch.tensor([0.3]))
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()


def test_a_timm_0_5_swin_pim_moves_each_patch_merging_to_the_next_stage():
    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    old = {}
    for key, value in reference.state_dict().items():  # timm 0.5.4: merging at the END of stages 0-2
        if ".downsample." in key:
            stage = int(key.split(".")[1])
            key = key.replace(f"layers.{stage}.downsample.", f"layers.{stage - 1}.downsample.")
        old[key] = value
    old["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    state = pim_layout(old, [192, 384, 768, 768], [784, 196, 49, 49], fpn=16, classes=3, selected=2720,
                       conv_projection=False, conv_up=True)
    checkpoint = convert_checkpoint({"model": state, "optimizer": {}, "epoch": 49}, "swin/best.pt")
    config = checkpoint["config"]
    assert (config["backbone"], config["input_size"], config["fpn_upsample"]) == \
        ("swin_tiny_patch4_window7_224", 224, "conv")
    assert config["stage_modules"] == list(SWIN_MERGED_STAGES) and config["num_selects"] == [2048, 512, 128, 32]
    torch.testing.assert_close(checkpoint["model"]["backbone.net.layers.1.downsample.reduction.weight"],
                               old["layers.0.downsample.reduction.weight"])
    torch.testing.assert_close(checkpoint["model"]["upsamples.0.weight"], state["fpn.Up_layer2.weight"])
    model = create_model("pim", num_classes=3, backbone=config["backbone"], input_size=224, fpn_size=16,
                         fpn_upsample="conv", stage_modules=config["stage_modules"], num_selects=[600, 150, 40, 20])
    model.combiner = type(model.combiner)(2720, 16, 3)  # the published selection's combiner size
    load_model_checkpoint(model, checkpoint)
    assert isinstance(model.upsamples[2], nn.Identity)  # Up_layer4: 49 -> 49 tokens, no weights


@pytest.mark.parametrize("key, message", [("backbone.pos_embed", "ViT checkpoint"),
                                          ("backbone.features.0.0.weight", "EfficientNet checkpoint"),
                                          ("selector.layer1.weight", "unexpected key 'selector.layer1.weight'")])
def test_unsupported_pim_checkpoints_say_why(key, message):
    state = pim_layout({}, [8, 8, 8, 8], [4, 4, 4, 4], fpn=8, classes=2, selected=32, conv_projection=False,
                       conv_up=False)
    state[key] = torch.zeros(1)
    with pytest.raises(ValueError, match=message):
        convert_checkpoint({"model": state, "optimizer": {}, "epoch": 0}, "x/best.pt")
