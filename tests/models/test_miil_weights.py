"""The MIIL ImageNet-21k files PIM's builders load (resnet50_miil_21k.pth, vit_base_patch16_224_miil_21k.pth),
from local files in their layout ({'state_dict': a whole timm network with an 11,221-class head})."""

from __future__ import annotations

import pytest
import timm
import torch

from gaze.models import create_model
from gaze.models.backbones import create_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def miil_file(tmp_path, name: str) -> tuple:
    torch.manual_seed(0)
    network = timm.create_model(name, pretrained=False, num_classes=11221)
    state = network.state_dict()
    path = tmp_path / f"{name}_miil_21k.pth"
    torch.save({"state_dict": state}, path)
    return path, state


def test_a_resnet_miil_file_loads_into_pims_stages_without_its_21k_head(tmp_path):
    path, state = miil_file(tmp_path, "resnet18")
    model = create_model("pim", num_classes=3, backbone="resnet18", input_size=64, fpn_size=16,
                         pretrained_path=str(path))
    torch.testing.assert_close(model.backbone.net.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_a_vit_miil_file_loads_with_its_position_table_zoomed_to_the_input(tmp_path):
    path, state = miil_file(tmp_path, "vit_tiny_patch16_224")
    table = state["pos_embed"].clone()  # (1, 1 + 14^2, C)
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    table[0, 1:] = (2 * rows + 3 * cols).reshape(-1, 1)  # a linear grid: order-1 zoom keeps it linear
    torch.save({"state_dict": {**state, "pos_embed": table}}, path)
    backbone = create_backbone("vit_tiny_patch16_224", path, out_indices=(-4, -3, -2, -1), img_size=96)
    zoomed = backbone.net.state_dict()["model.pos_embed"]
    assert zoomed.shape == (1, 1 + 6 * 6, 192)
    scale = 13 / 5  # scipy's zoom maps the corner centres onto each other: i -> i (14 - 1) / (6 - 1)
    new_rows, new_cols = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    expected = (2 * new_rows * scale + 3 * new_cols * scale).reshape(-1)
    torch.testing.assert_close(zoomed[0, 1:, 0], expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(zoomed[0, 0], table[0, 0])  # the class token's entry
    torch.testing.assert_close(backbone.net.state_dict()["model.blocks.11.mlp.fc2.weight"],
                               state["blocks.11.mlp.fc2.weight"])


def test_a_mismatched_tensor_is_an_error_naming_it(tmp_path):
    path, state = miil_file(tmp_path, "resnet18")
    torch.save({"state_dict": {**state, "layer1.0.conv1.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(ValueError, match=r"shape mismatch for 'layer1.0.conv1.weight'"):
        create_backbone("resnet18", path, out_indices=(-4, -3, -2, -1))
