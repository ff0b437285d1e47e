"""A small annotation store built by hand (no run, no images)."""

from __future__ import annotations

from gaze.annotate.store import Item, Store

METHODS = [("phase1", "runs/x/phase1"), ("phase2", "runs/x/phase2")]


def hand_store(path, items: int = 4, labels=None, predicted=None) -> Store:
    """Items '1'..'n' (label 0 unless ``labels``), two methods; phase1 predicts ``predicted`` (default: the label)."""
    store = Store(path)
    store.set_meta({"split": "val", "run": "runs/x"})
    store.add_methods(METHODS)
    labels = labels or [0] * items
    predicted = predicted or labels
    store.add_items([Item(str(k + 1), k, labels[k], f"images/{k + 1}.jpg", None, 8, 6) for k in range(items)],
                    [(str(k + 1), method, predicted[k] if method == "phase1" else labels[k], f"overlays/{method}/{k + 1}.png")
                     for k in range(items) for method, _ in METHODS])
    return store
