"""Released CAL / WS-DAN checkpoints and the HW1 pickled model, in their documented key layouts."""

from __future__ import annotations

import sys

import pytest
import torch

from gaze.engine.importers import import_checkpoint, load_model_checkpoint
from gaze.models import create_model
from gaze.torch_files import CheckpointFileError
from gaze.unpickle import main as unpickle_main

RESNET_CHILDREN = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def published_state(model, sequential: bool = True, prefix: str = "") -> dict:
    """Our CAL model's weights renamed to the published WSDAN_CAL layout."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("backbone.net."):
            child, _, rest = key[len("backbone.net."):].partition(".")
            if child == "fc":
                continue
            state[f"{prefix}features.{RESNET_CHILDREN[child] if sequential else child}.{rest}"] = tensor.clone()
        elif key.startswith("attention.0."):
            state[prefix + "attentions.conv." + key[len("attention.0."):]] = tensor.clone()
        elif key.startswith("attention.1."):
            state[prefix + "attentions.bn." + key[len("attention.1."):]] = tensor.clone()
        elif key == "fc.weight":
            state[prefix + "fc.weight"] = tensor.clone()
    return state


@pytest.fixture()
def trained_like():
    torch.manual_seed(0)
    model = create_model("cal", num_classes=4, backbone="resnet18", input_size=64, num_attentions=3)
    model.feature_center.normal_()
    return model


def test_model_ckpt_and_model_bestacc_import_with_every_key_mapped(tmp_path, trained_like):
    torch.save({"logs": {"epoch": 9}, "state_dict": published_state(trained_like, prefix="module."),
                "feature_center": trained_like.feature_center.clone()}, tmp_path / "model.ckpt")
    torch.save({"logs": {}, "state_dict": published_state(trained_like)}, tmp_path / "model_bestacc.pth")
    checkpoint = import_checkpoint(tmp_path / "model.ckpt")
    config = checkpoint["config"]
    assert (config["backbone"], config["num_classes"], config["num_attentions"]) == ("resnet18", 4, 3)
    for name in ("cal", "wsdan"):
        target = create_model(name, num_classes=4, backbone="resnet18", input_size=64, num_attentions=3)
        load_model_checkpoint(target, tmp_path / "model.ckpt")
        for key, tensor in trained_like.state_dict().items():
            torch.testing.assert_close(target.state_dict()[key], tensor, msg=key)
    best = import_checkpoint(tmp_path / "model_bestacc.pth")
    assert best["model"]["feature_center"].abs().sum() == 0  # no centres in that file


def test_a_mismatched_released_checkpoint_is_an_error_naming_the_key(tmp_path, trained_like):
    state = published_state(trained_like)
    state["fc.weight"] = state["fc.weight"][:, :10]
    torch.save({"logs": {}, "state_dict": state}, tmp_path / "bad.pth")
    target = create_model("cal", num_classes=4, backbone="resnet18", input_size=64, num_attentions=3)
    with pytest.raises(ValueError, match=r"bad\.pth: shape mismatch"):
        load_model_checkpoint(target, tmp_path / "bad.pth")
    state = published_state(trained_like)
    state["features.8.weight"] = torch.zeros(1)
    torch.save({"logs": {}, "state_dict": state}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd\.pth: unexpected key 'features\.8\.weight'"):
        import_checkpoint(tmp_path / "odd.pth")


HW1_MODULE = '''
import torch
from torch import nn
from torchvision.models import resnet18

class WSDAN_CAL(nn.Module):
    def __init__(self, num_classes=4, M=3):
        super().__init__()
        net = resnet18()
        net.avgpool, net.fc = nn.Identity(), nn.Identity()
        self.features = net
        self.attentions = nn.Module()
        self.attentions.conv = nn.Conv2d(512, M, 1, bias=False)
        self.attentions.bn = nn.BatchNorm2d(M, eps=0.001)
        self.fc = nn.Linear(M * 512, num_classes, bias=False)
'''


def test_the_hw1_pickled_model_is_refused_then_converted_with_trust_pickle(tmp_path, monkeypatch):
    (tmp_path / "hw1_notebook.py").write_text(HW1_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hw1_notebook

    torch.manual_seed(1)
    model = hw1_notebook.WSDAN_CAL()
    torch.save({"model": model, "losses": [1.0], "feature_center": torch.randn(4, 3 * 512)}, tmp_path / "hw1.pt")
    del sys.modules["hw1_notebook"]
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # the class is not importable any more
    (tmp_path / "hw1_notebook.py").unlink()
    with pytest.raises(CheckpointFileError, match=r"python -m gaze unpickle --trust_pickle"):
        import_checkpoint(tmp_path / "hw1.pt")
    assert unpickle_main([str(tmp_path / "hw1.pt"), str(tmp_path / "plain.pt")]) == 2  # refused without the flag
    assert unpickle_main(["--trust_pickle", str(tmp_path / "hw1.pt"), str(tmp_path / "plain.pt")]) == 0
    converted = import_checkpoint(tmp_path / "plain.pt")  # weights_only=True now
    target = create_model("cal", num_classes=4, backbone="resnet18", input_size=64, num_attentions=3)
    load_model_checkpoint(target, converted)
    torch.testing.assert_close(target.fc.weight, model.fc.weight)
    torch.testing.assert_close(target.backbone.net.layer4[1].conv2.weight, model.features.layer4[1].conv2.weight)
