"""gaze/engine/evaluate.py: evaluation protocols, model metrics, the model's own loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from gaze.engine.evaluate import evaluate
from tests.engine.toys import ToyDataset, ToyNet, make_loaders, new_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_evaluate_matches_direct_computation():
    model = new_model().eval()
    loader = make_loaders(eval_size=37)["val"]
    results = evaluate(model, loader, torch.device("cpu"))
    dataset = loader.dataset
    with torch.no_grad():
        logits = model(dataset.images, gaze=dataset.gaze)
    assert results["num_samples"] == 37 and results["ids"] == [f"s{i:03d}" for i in range(37)]
    np.testing.assert_array_equal(results["labels"], dataset.labels.numpy())
    np.testing.assert_allclose(results["probabilities"], logits.softmax(1).numpy(), atol=1e-6)
    top1 = 100 * (logits.argmax(1) == dataset.labels).float().mean().item()
    assert results["top1"] == pytest.approx(top1)
    assert results["loss"] == pytest.approx(F.cross_entropy(logits, dataset.labels).item(), rel=1e-5)
    assert results["top5"] == 100.0  # top-C with C = 4 < 5 classes


def test_evaluate_with_model_loss_averages_the_model_total():
    model = new_model().eval()
    loader = DataLoader(ToyDataset(20, seed=3), batch_size=8)
    results = evaluate(model, loader, torch.device("cpu"), model_loss=True)
    with torch.no_grad():
        totals = [(float(model.loss(batch)["loss"]), len(batch["label"])) for batch in loader]
    expected = sum(t * n for t, n in totals) / 20
    assert results["loss"] == pytest.approx(expected, rel=1e-6)
    assert results["num_samples"] == 20 and 0 <= results["top1"] <= 100


def test_flip_protocol_averages_the_view_and_its_mirror_and_is_named():
    model = new_model().eval()
    loader = DataLoader(ToyDataset(10, seed=5), batch_size=4)
    results = evaluate(model, loader, torch.device("cpu"), protocol="flip")
    dataset = loader.dataset
    with torch.no_grad():
        logits = (model(dataset.images, dataset.gaze) + model(dataset.images.flip(-1), dataset.gaze.flip(-1))) / 2
    np.testing.assert_allclose(results["probabilities"], logits.softmax(1).numpy(), atol=1e-6)
    assert results["protocol"] == "flip" and evaluate(model, loader, torch.device("cpu"))["protocol"] == "single"
    with pytest.raises(ValueError, match=r"'eval_protocol': expected one of cal_tta, flip, raw, raw\+crop, single"):
        evaluate(model, loader, torch.device("cpu"), protocol="multicrop")


class ScoredNet(ToyNet):
    """predict also returns a per-sample metric: 1 where the gaze mean exceeds 0.5."""

    def predict(self, batch):
        return {"logits": super().predict(batch), "gaze_hit": (batch["gaze"].mean((1, 2, 3)) > 0.5).float()}


def test_per_sample_metrics_of_the_model_are_averaged_over_samples():
    model = ScoredNet().eval()
    loader = DataLoader(ToyDataset(13, seed=6), batch_size=5)
    results = evaluate(model, loader, torch.device("cpu"))
    expected = float((loader.dataset.gaze.mean((1, 2, 3)) > 0.5).float().mean())
    assert results["gaze_hit"] == pytest.approx(expected) and results["num_samples"] == 13
    model.predict = lambda batch: {"logits": ToyNet.predict(model, batch), "bad": torch.zeros(1)}
    with pytest.raises(ValueError, match="metric 'bad' has 1 values for 5 samples"):
        evaluate(model, loader, torch.device("cpu"))
