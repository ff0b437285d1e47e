"""The one state-dict loader (gaze/state_dicts.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gaze.state_dicts import load_state_dict, strip_prefixes


def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_prefixes_are_stripped_and_a_sub_tree_selected():
    assert strip_prefixes("module._orig_mod.module.fc.weight") == "fc.weight"
    source = small()
    state = {f"module.backbone.net.{k}": v for k, v in source.state_dict().items()}
    state["module.classifier.weight"] = torch.ones(2, 2)
    target = small()
    report = load_state_dict(target, state, "ckpt.pt", prefix="backbone.net.")
    assert report.loaded == report.total == len(source.state_dict()) and not report.ignored and not report.missing
    torch.testing.assert_close(target[0].weight, source[0].weight)


def test_errors_name_the_file_the_key_and_the_counts():
    state = small().state_dict()
    with pytest.raises(ValueError, match=r"w\.pt: shape mismatch for '0\.weight': file \(5, 3, 3, 3\), model \(4, 3, 3, 3\)"):
        load_state_dict(small(), {**state, "0.weight": torch.zeros(5, 3, 3, 3)}, "w.pt")
    partial = {k: v for k, v in state.items() if k != "1.bias"}
    with pytest.raises(ValueError, match=r"w\.pt: checkpoint does not fit the Sequential: 6 of 7 tensors matched; missing 1: 1\.bias"):
        load_state_dict(small(), partial, "w.pt")
    report = load_state_dict(small(), partial, "w.pt", strict=False)
    assert report.missing == ["1.bias"] and report.loaded == 6
    with pytest.raises(ValueError, match=r"unexpected 1: extra"):
        load_state_dict(small(), {**state, "extra": torch.ones(1)}, "w.pt", allow_unexpected=False)
    assert load_state_dict(small(), {**state, "extra": torch.ones(1)}, "w.pt").ignored == ["extra"]
    with pytest.raises(ValueError, match="0 of 7 tensors matched"):
        load_state_dict(small(), {"other": torch.ones(1)}, "w.pt")
    without_counter = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert load_state_dict(small(), without_counter, "w.pt").absent_optional == ["1.num_batches_tracked"]
