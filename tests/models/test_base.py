"""Every registered model keeps the contract of gaze/models/base.py (registry-wide)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gaze.models import list_models, model_class
from gaze.models.base import SPLITS, GazeModel
from gaze.models.cam import cam_from_features

SIZE = 64
CONFIG = {"num_classes": 3, "backbone": "resnet18", "input_size": SIZE, "dropout": None}


def build(name: str) -> GazeModel:
    torch.manual_seed(0)
    return model_class(name).from_config(CONFIG, pretrained_path=None)


def batch(name: str) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"image": torch.randn(2, 3, SIZE, SIZE, generator=generator),
            "gaze": torch.rand(2, 1, SIZE, SIZE, generator=generator),
            "label": torch.tensor([0, 2]), "id": ["a", "b"]}


@pytest.mark.parametrize("name", list_models())
def test_facts_are_well_formed(name):
    cls = model_class(name)
    assert issubclass(cls, GazeModel) and cls.name == name
    assert cls.gaze_splits <= set(SPLITS) and cls.mask_splits <= set(SPLITS)
    assert not cls.inference_needs_gaze or "test" in cls.gaze_splits
    assert isinstance(cls.phases, tuple) and len(set(cls.phases)) == len(cls.phases)
    assert {split: cls.needs_gaze(split, CONFIG) for split in SPLITS} == {s: s in cls.gaze_splits for s in SPLITS}
    model = build(name)
    assert len(cls.cam_layers) >= 1
    for layer in cls.cam_layers.values():
        model.get_submodule(layer)  # raises when the named layer does not exist
    assert model.panel_prefix and "/" not in model.panel_prefix
    assert isinstance(model.describe(), dict)


@pytest.mark.parametrize("name", list_models())
def test_forward_is_features_then_head_and_predict_passes_gaze_by_the_facts(name):
    model = build(name).eval()
    data = batch(name)
    gaze = data["gaze"] if model.inference_needs_gaze else None
    with torch.no_grad():
        logits = model(data["image"], gaze=gaze)
        features = model.forward_features(data["image"], gaze)
        assert features.dim() == 4 and features.shape[0] == 2
        torch.testing.assert_close(model.forward_head(features), logits)
        predicted = model.predict(data)  # logits, or a dict with them and per-sample metrics
        torch.testing.assert_close(predicted["logits"] if isinstance(predicted, dict) else predicted, logits)
        assert logits.shape == (2, 3)
    if model.inference_needs_gaze:
        with pytest.raises(ValueError, match="gaze"):
            model.predict({**data, "gaze": None})


@pytest.mark.parametrize("name", list_models())
def test_differentiable_cam_from_the_training_forward(name):
    """One train-mode forward gives the CE and a CAM whose loss reaches the backbone."""
    model = build(name).train()
    data = batch(name)
    features = model.forward_features(data["image"], data["gaze"])
    logits = model.forward_head(features)
    cams = cam_from_features(features, logits, data["label"], differentiable=True, relu=False)
    assert cams.shape == (2, 1, *features.shape[-2:]) and cams.requires_grad
    assert torch.isfinite(cams).all() and float(cams.detach().min()) >= 0 and float(cams.detach().max()) <= 1
    loss = F.cross_entropy(logits, data["label"]) + (cams - 0.5).abs().mean()
    loss.backward()  # the CE's graph survived the CAM's autograd.grad
    first_conv = next(p for n, p in model.named_parameters() if p.dim() == 4)
    assert first_conv.grad is not None and torch.isfinite(first_conv.grad).all() and first_conv.grad.abs().sum() > 0


def test_cam_core_matches_the_formula():
    """Linear head on pooled features: d logit_t / d A_c = W[t, c] / (h w), so cam = sum_c W[t,c] A_c / (h w)."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 4, 5, 6, generator=generator, requires_grad=True)
    weight = torch.randn(2, 4, generator=generator)
    logits = features.mean(dim=(2, 3)) @ weight.T
    targets = torch.tensor([0, 1, 1])
    raw = cam_from_features(features, logits, targets, relu=False, normalize=False)
    expected = (weight[targets].numpy()[:, :, None, None] * features.detach().numpy()).sum(1, keepdims=True) / 30
    assert raw.shape == (3, 1, 5, 6) and not raw.requires_grad
    assert abs(raw.numpy() - expected).max() < 1e-6
    scaled = cam_from_features(features, features.mean(dim=(2, 3)) @ weight.T, targets, size=(10, 12))
    upsampled = F.interpolate(torch.from_numpy(expected.clip(min=0)), size=(10, 12), mode="bilinear").numpy()
    low, high = upsampled.min(axis=(2, 3), keepdims=True), upsampled.max(axis=(2, 3), keepdims=True)
    assert abs(scaled.numpy() - (upsampled - low) / (high - low + 1e-7)).max() < 1e-5  # ReLU, upsample, min-max


def test_constructor_arguments_map_keys_and_keep_defaults_for_none():
    gat = model_class("gat")
    arguments = gat.constructor_arguments({**CONFIG, "N_list": [1, 2, 3], "iou_threshs": [0.3, 0.3, 0.3],
                                          "window_side": 24, "gaze_threshold": None, "unrelated": 1},
                                         pretrained_path=None)
    assert arguments["n_list"] == (1, 2, 3) and arguments["iou_threshold"] == 0.3 and arguments["window_size"] == 24
    assert "gaze_threshold" not in arguments and "dropout" not in arguments and "unrelated" not in arguments
    assert build("kfn").dropout.p == 0.0 and build("gat").dropout.p == 0.5  # dropout=None: each method's own
    with pytest.raises(TypeError, match="no argument nope"):
        gat.constructor_arguments(CONFIG, nope=1)
