"""gaze/synthetic/gradia.py: reuse-or-rebuild, and the run says the data are SYNTHETIC."""

from __future__ import annotations

import pytest

from gaze.synthetic.gradia import ensure_synthetic_gradia
from gaze.synthetic.marker import MARKER_NAME


def test_ensure_generates_reuses_says_synthetic_and_spares_real_data(tmp_path, capsys):
    root = tmp_path / "synthetic_gradia"
    ensure_synthetic_gradia(root, per_class=(2, 1, 1), image_size=32)
    assert "Generating a SYNTHETIC" in capsys.readouterr().out and (root / MARKER_NAME).is_file()
    stamp = (root / MARKER_NAME).stat().st_mtime_ns
    ensure_synthetic_gradia(root, per_class=(2, 1, 1), image_size=32)
    assert "Using the SYNTHETIC" in capsys.readouterr().out and (root / MARKER_NAME).stat().st_mtime_ns == stamp
    real = tmp_path / "real"
    real.mkdir()
    (real / "photo.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a synthetic set"):
        ensure_synthetic_gradia(real, verbose=False)
