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


def tiny_gradia_study(base, image_size=(64, 96)) -> list[str]:
    """Train a 2-epoch GRADIA run on a tiny synthetic CUB under ``base`` (run ``base/gradia``),
    prepare its annotation study, and return the cub/train.py arguments used."""
    from cub import train as cub_train
    from gaze.annotate.cli import main as annotate_main
    from gaze.synthetic.cub import make_synthetic_cub

    root = base / "data" / "synthetic_cub"
    make_synthetic_cub(root, num_classes=3, train_per_class=10, test_per_class=4, image_size=image_size, num_runs=2)
    args = [f"--root={root}", "--num_classes=3", "--input_size=64", "--batch_size=8", f"--model_path={base}",
            "--model_name=gradia", "--cam_images=0", "--val_fraction=0.2", "--model_type=gradia",
            "--backbone=resnet18", "--pretrain_path=None", "--end_epoch=2"]
    assert cub_train.main(args) == 0
    assert annotate_main(["--run", str(base / "gradia"), "--prepare-only"]) == 0
    return args
