"""Train -> annotate -> export -> phase 2: the loop the app closes, on a tiny synthetic CUB run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cub import train as cub_train
from gaze.annotate.app import create_app
from gaze.annotate.cli import files_folder
from gaze.annotate.cli import main as annotate_main
from gaze.annotate.store import Store
from tests.annotate.helpers import tiny_gradia_study
from tests.annotate.test_app import png_url, token_of

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ratings_and_masks_from_the_app_feed_cub_phase_two(tmp_path):
    args = tiny_gradia_study(tmp_path)
    run = tmp_path / "gradia"
    db = run / "annotations" / "annotations.sqlite"
    store = Store(db)
    items = store.items()
    assert len(items) == 6 and store.methods() == [str(run)]  # the 6 val images, explained by phase 1
    assert all((files_folder(db) / item.image).is_file() and item.gaze for item in items)
    predicted = store.predictions(items[0].item)[str(run)][0]
    assert 0 <= predicted < 3

    app = create_app(db, files_folder(db))
    client = app.test_client()
    token = token_of(client.get("/login").data)
    client.post("/login", data={"name": "ann", "csrf_token": token})
    for k, (q1, q2) in enumerate([("yes", "no"), ("no", "yes")]):
        assert client.post(f"/rate/{k}", data={"csrf_token": token, "order": "0", "q1_0": q1, "q2_0": q2,
                                               "q3_0": "3"}).status_code == 302
    mask = np.zeros((items[1].height, items[1].width), bool)
    mask[:, : items[1].width // 2] = True
    assert client.post("/mask/1", json={"png": png_url(mask), "start": "empty"},
                       headers={"X-CSRFToken": token}).status_code == 200

    out = tmp_path / "export"
    assert annotate_main(["export", "--db", str(db), "--out", str(out)]) == 0
    ratings = json.loads((out / "reasonablity_val.json").read_text())
    assert sorted(ratings) == sorted([items[0].item, items[1].item])
    assert ratings[items[1].item].startswith("Unreasonable") and ratings[items[0].item].startswith("Reasonable")
    assert (out / "masks" / f"{items[1].item}.png").is_file()

    phase_two = [*args, "--phase=2", f"--init_from={run / 'phase1' / 'ckpt_best.pt'}", "--model_name=gradia_rated",
                 f"--ratings={out / 'reasonablity_val.json'}", f"--masks_dir={out / 'masks'}"]
    assert cub_train.main(phase_two) == 0
    p2 = pd.read_csv(tmp_path / "gradia_rated" / "p2_train.csv", dtype=str)
    assert {items[0].item, items[1].item} <= set(p2["id"]) and len(p2) == 24 + 2
    assert (tmp_path / "gradia_rated" / "phase2" / "ckpt_best.pt").is_file()


def test_folder_and_cxr_runs_are_prepared_too(tmp_path):
    """The study works on every tree: an ImageFolder run (no gaze) and a CXR fold (gaze, fold 0)."""
    from cxr import train as cxr_train
    from folder import train as folder_train
    from gaze.synthetic.cxr import make_synthetic_cxr_eye
    from gaze.synthetic.gradia import make_synthetic_gradia

    gradia_root = make_synthetic_gradia(tmp_path / "data" / "synthetic_gradia", per_class=(8, 4, 4), image_size=64)
    assert folder_train.main([f"--root={gradia_root}", f"--model_path={tmp_path / 'folder'}", "--input_size=64",
                              "--batch_size=8", "--backbone=resnet18", "--pretrain_path=None", "--end_epoch=2",
                              "--cam_images=0"]) == 0
    cxr_root = tmp_path / "data" / "synthetic_cxr"
    make_synthetic_cxr_eye(cxr_root, images_per_class=10, image_size=(96, 128), seed=3)
    assert cxr_train.main([f"--mimic_root={cxr_root / 'mimic-cxr-jpg'}", f"--egd_dir={cxr_root / 'egd-cxr'}",
                           "--input_size=64", "--batch_size=8", "--backbone=resnet18", "--pretrain_path=None",
                           "--end_epoch=2", "--val_fraction=0.2", f"--model_path={tmp_path / 'cxr'}",
                           "--model_type=gradia", "--run_folds=[0]"]) == 0
    for run, has_gaze in ((tmp_path / "folder" / "gradia", False), (tmp_path / "cxr" / "gradia_cv_rseed1", True)):
        db = tmp_path / f"{run.parent.name}.sqlite"
        assert annotate_main(["--run", str(run), "--db", str(db), "--split", "test", "--limit", "5",
                              "--prepare-only"]) == 0
        store = Store(db)
        assert store.count() == 5 and store.meta()["split"] == "test"
        assert all((item.gaze is not None) == has_gaze for item in store.items())
        for item in store.items():
            predicted, overlay = store.predictions(item.item)[str(run)]
            assert (files_folder(db) / overlay).is_file() and 0 <= predicted
        assert annotate_main(["--run", str(run), "--db", str(db), "--prepare-only"]) == 0  # prepared once: reused
