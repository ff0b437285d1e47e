"""gaze/engine/checkpoint.py: checkpoint contents, unreadable files, errors and wrapper prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaze.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from tests.engine.toys import OtherNet, ToyNet, new_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"), (b"PK\x03\x04trunc", "truncated or corrupted"),
])
def test_unreadable_checkpoint_files_are_named(tmp_path, content, message):
    path = tmp_path / "ckpt_last.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}: .*{message}"):
        load_checkpoint(path, new_model())
    good = save_checkpoint(tmp_path / "good.pt", make_checkpoint(new_model(), epoch=1))
    path.write_bytes(good.read_bytes()[:200])  # cut short, as by a kill without the atomic rename
    with pytest.raises(ValueError, match=f"{path}: cannot be read as a torch file"):
        load_checkpoint(path, new_model())


def test_load_checkpoint_errors_and_prefixes(tmp_path):
    model = new_model()
    checkpoint = make_checkpoint(model, epoch=1, config={"path": Path("x")})
    path = save_checkpoint(tmp_path / "ckpt.pt", checkpoint)
    with pytest.raises(ValueError, match=r"'toy'.*'other'"):
        load_checkpoint(path, OtherNet())
    with pytest.raises(ValueError, match=r"'toy'.*'gat'"):
        load_checkpoint(path, expected_model_name="gat")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt", model)
    # DDP / torch.compile prefixes are stripped
    checkpoint["model"] = {f"module._orig_mod.{k}": v for k, v in checkpoint["model"].items()}
    save_checkpoint(path, checkpoint)
    fresh = ToyNet()
    loaded = load_checkpoint(path, fresh)
    assert loaded["config"] == {"path": "x"} and loaded["model_name"] == "toy"
    torch.testing.assert_close(fresh.fc.weight, model.fc.weight)
    # weights of a different shape name the file and the model
    checkpoint["model"] = {"fc.weight": torch.zeros(3, 3)}
    save_checkpoint(path, checkpoint)
    with pytest.raises(ValueError, match="ckpt.pt.*ToyNet"):
        load_checkpoint(path, ToyNet())
