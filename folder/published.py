"""What ``protocol='published'`` turns on in the ImageFolder experiment, per method (see cub/published.py)."""

from __future__ import annotations

PUBLISHED: dict[str, dict[str, tuple[object, str]]] = {
    "gradia": {
        "init_lr": (1e-4, "Adam lr 1e-4 in both phases (GRADIA.py, gradia_cal.md A5-A6)"),
    },
}
