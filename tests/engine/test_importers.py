"""Importers (gaze/engine/importers.py): released CUB-GHA checkpoints -> our format -> models."""

from __future__ import annotations

import pytest
import torch

from gaze.models import create_model
from gaze.engine.importers import import_checkpoint, load_model_checkpoint

SIZE = 64
KFN_INDEX = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


def randomised(model):
    """Perturb weights and BN statistics so a silent non-load would show."""
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.mul_(1 + 0.2 * torch.rand_like(tensor))
    return model.eval()


def published_gat(model):
    """Our GAT state dict renamed as the released CUB-GHA GAT (with its unused 1000-class fc)."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("backbone.net."):
            state["pretrained_model." + key[len("backbone.net."):]] = tensor
        else:
            state["cls_net." + key[len("classifier."):]] = tensor
    state["pretrained_model.fc.weight"] = torch.randn(1000, 2048)
    state["pretrained_model.fc.bias"] = torch.randn(1000)
    return state


def published_kfn(model):
    """Our KFN state dict renamed as the released KFN (Sequential children indices)."""
    branches = {"image_backbone": "pretrained_model1", "gaze_backbone": "pretrained_model2"}
    state = {}
    for key, tensor in model.state_dict().items():
        head, _, rest = key.partition(".")
        if head in branches:
            child, _, name = rest[len("net."):].partition(".")
            state[f"{branches[head]}.{KFN_INDEX[child]}.{name}"] = tensor
        else:
            state["cls_net." + rest] = tensor
    return state


def logits_of(model, images, gaze):
    with torch.no_grad():
        return model.eval()(images, gaze)


@pytest.mark.parametrize("name, rename", [("gat", published_gat), ("kfn", published_kfn)])
def test_released_checkpoint_round_trip(tmp_path, name, rename):
    source = randomised(create_model(name, num_classes=7, backbone="resnet50", input_size=SIZE))
    state = {"module." + k: v for k, v in rename(source).items()}
    path = tmp_path / "epoch12.pth"
    torch.save({"epoch": 12, "model_state_dict": state, "learning_rate": 0.001}, path)

    checkpoint = import_checkpoint(path)
    assert checkpoint["model_name"] == name and checkpoint["epoch"] == 12
    assert checkpoint["config"]["backbone"] == "resnet50" and checkpoint["config"]["num_classes"] == 7
    assert checkpoint["config"]["init_lr"] == 0.001
    ours = tmp_path / "ours.pt"
    torch.save(checkpoint, ours)  # only tensors and primitives: loads with weights_only=True
    assert torch.load(ours, weights_only=True)["model_name"] == name

    target = create_model(name, num_classes=7, backbone="resnet50", input_size=SIZE)
    load_model_checkpoint(target, path)
    images, gaze = torch.randn(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    torch.testing.assert_close(logits_of(target, images, gaze), logits_of(source, images, gaze), rtol=0, atol=0)

    again = create_model(name, num_classes=7, backbone="resnet50", input_size=SIZE)
    load_model_checkpoint(again, ours)  # our format loads the same
    torch.testing.assert_close(logits_of(again, images, gaze), logits_of(source, images, gaze), rtol=0, atol=0)


def test_bare_released_state_dict_is_detected(tmp_path):
    source = create_model("gat", num_classes=4, backbone="resnet18", input_size=SIZE)
    state = published_gat(source)
    state.pop("pretrained_model.fc.weight"), state.pop("pretrained_model.fc.bias")
    torch.save(state, tmp_path / "bare.pth")
    checkpoint = import_checkpoint(tmp_path / "bare.pth")
    assert checkpoint["model_name"] == "gat" and checkpoint["config"]["backbone"] == "resnet18"


def test_unknown_format_names_the_file_and_keys(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"weights": {"a.b": torch.zeros(1)}, "step": 3}, path)
    with pytest.raises(ValueError, match=r"mystery\.pth.*unknown checkpoint format.*'weights', 'step'"):
        import_checkpoint(path)
    torch.save({"encoder.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"mystery\.pth.*encoder\.conv\.weight"):
        import_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        import_checkpoint(tmp_path / "absent.pth")


def test_wrong_model_is_a_clear_error(tmp_path):
    gat = create_model("gat", num_classes=4, backbone="resnet18", input_size=SIZE)
    path = tmp_path / "gat.pth"
    torch.save({"epoch": 1, "model_state_dict": published_gat(gat) | {}, "learning_rate": 0.1}, path)
    kfn = create_model("kfn", num_classes=4, backbone="resnet18", input_size=SIZE)
    with pytest.raises(ValueError, match="holds a 'gat' model, the model is 'kfn'"):
        load_model_checkpoint(kfn, path)
    other_classes = create_model("gat", num_classes=5, backbone="resnet18", input_size=SIZE)
    with pytest.raises(ValueError, match="shape mismatch for 'classifier.weight'"):
        load_model_checkpoint(other_classes, path)


def test_hafc_cxr_checkpoints_convert():
    from gaze.engine.importers import convert_checkpoint

    gat = {"encoder.conv_stem.weight": torch.ones(32, 3, 3, 3), "encoder.conv_head.weight": torch.ones(1280, 320, 1, 1),
           "encoder.bn2.weight": torch.ones(1280), "classification_head.3.weight": torch.full((3, 320), 2.0),
           "classification_head.3.bias": torch.zeros(3)}
    converted = convert_checkpoint(gat, "gat.pth")
    assert converted["model_name"] == "gat" and converted["config"]["num_classes"] == 3
    assert set(converted["model"]) == {"backbone.net.conv_stem.weight", "classifier.weight", "classifier.bias"}
    kfn = {"branch1.conv_stem.weight": torch.ones(32, 3, 3, 3), "branch2.conv_stem.weight": torch.zeros(32, 3, 3, 3),
           "fc.weight": torch.ones(3, 640), "fc.bias": torch.ones(3)}
    converted = convert_checkpoint(kfn, "kfn.pth")
    assert converted["model_name"] == "kfn"
    assert torch.equal(converted["model"]["gaze_backbone.net.conv_stem.weight"], kfn["branch2.conv_stem.weight"])
    assert torch.equal(converted["model"]["classifier.weight"], kfn["fc.weight"])
    with pytest.raises(ValueError, match=r"kfn\.pth.*unexpected keys \['extra\.weight'\]"):
        convert_checkpoint({**kfn, "extra.weight": torch.ones(2)}, "kfn.pth")
