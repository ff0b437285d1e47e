"""cub/train.py and cub/evaluate.py end to end on a tiny synthetic CUB tree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cub import evaluate as cub_evaluate
from cub import train as cub_train
from cub.dataset import CUBDataset
from gaze.synthetic.cub import make_synthetic_cub


@pytest.fixture(scope="module")
def tiny_cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic_cub"
    make_synthetic_cub(root, num_classes=3, train_per_class=10, test_per_class=6, image_size=(64, 96), num_runs=3)
    return root


def common_args(root, run_root, name, *extra):
    return [
        f"--root={root}", "--num_classes=3", "--input_size=64", "--batch_size=8", "--workers=0",
        f"--model_path={run_root}", f"--model_name={name}", "--cam_images=2", "--val_fraction=0.2",
        *extra,
    ]


@pytest.fixture(scope="module")
def gat_run(tiny_cub, tmp_path_factory):
    """A 2-epoch GAT run (resnet18, random init, so released-format import works)."""
    run_root = tmp_path_factory.mktemp("runs")
    args = common_args(tiny_cub, run_root, "gat", "--backbone=resnet18", "--pretrain_path=None", "--end_epoch=2")
    assert cub_train.main(args) == 0
    return run_root / "gat", args


def test_gat_run_writes_every_artefact(gat_run):
    run_dir, _ = gat_run
    for name in ("config.json", "ckpt_last.pt", "ckpt_best.pt", "metrics.csv", "training_curves.png",
                 "classification_report.json", "predictions.csv", "confusion_matrix.png", "summary.json"):
        assert (run_dir / name).is_file(), name
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert len(predictions) == 18  # 3 classes x 6 test images
    assert len(list((run_dir / "cam").glob("*.png"))) == 2
    checkpoint = torch.load(run_dir / "ckpt_best.pt", weights_only=True)
    assert checkpoint["model_name"] == "gat" and checkpoint["config"]["num_classes"] == 3


def test_training_reports_name_the_classes(gat_run, tiny_cub):
    """The engine read ``dataset.classes``, which CUBDataset never had: the reports said 0, 1, 2."""
    run_dir, _ = gat_run
    report = json.loads((run_dir / "classification_report.json").read_text())
    names = CUBDataset(tiny_cub, split="test", num_classes=3).class_names
    assert len(names) == 3 and all("Synthetic" in name for name in names)
    assert sorted(report["per_class_accuracy"]) == sorted(names)


def test_evaluate_reproduces_the_test_accuracy_of_training(gat_run, tmp_path):
    run_dir, args = gat_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert cub_evaluate.main([*args, f"--checkpoint={run_dir / 'ckpt_best.pt'}", f"--eval_dir={tmp_path}"]) == 0
    report = json.loads((tmp_path / "classification_report.json").read_text())
    assert report["top1"] == pytest.approx(summary["test"]["top1"])
    assert len(list((tmp_path / "cam").glob("*.png"))) == 2


def test_evaluate_a_checkpoint_in_the_published_format(gat_run, tmp_path):
    """Rename our keys to the released GAT layout ({epoch, model_state_dict, learning_rate})."""
    run_dir, args = gat_run
    ours = torch.load(run_dir / "ckpt_best.pt", weights_only=True)
    released = {}
    for key, tensor in ours["model"].items():
        if key.startswith("backbone.net."):
            released["pretrained_model." + key[len("backbone.net."):]] = tensor
        elif key.startswith("classifier."):
            released["cls_net." + key[len("classifier."):]] = tensor
    released["pretrained_model.fc.weight"] = torch.zeros(1000, 512)
    released["pretrained_model.fc.bias"] = torch.zeros(1000)
    path = tmp_path / "best.pth"
    torch.save({"epoch": 2, "model_state_dict": released, "learning_rate": 1e-3}, path)
    assert cub_evaluate.main([*args, f"--checkpoint={path}", "--input_size=64", f"--eval_dir={tmp_path / 'eval'}"]) == 0
    report = json.loads((tmp_path / "eval" / "classification_report.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["top1"] == pytest.approx(summary["test"]["top1"])


def test_kfn_starts_from_the_gat_checkpoint(gat_run, tiny_cub, tmp_path):
    run_dir, _ = gat_run
    args = common_args(tiny_cub, tmp_path, "kfn", "--model_type=kfn", "--backbone=resnet18", "--pretrain_path=None",
                       f"--GAT_pretrained={run_dir / 'ckpt_best.pt'}", "--end_epoch=1", "--cam_images=0")
    assert cub_train.main(args) == 0
    kfn = torch.load(tmp_path / "kfn" / "ckpt_last.pt", weights_only=True)
    assert kfn["model_name"] == "kfn"


def test_pretrained_baseline_beats_chance_in_two_epochs(tiny_cub, tmp_path):
    """EfficientNet-Lite0 with its real ImageNet weights (the default backbone) learns the parts."""
    args = common_args(tiny_cub, tmp_path, "baseline", "--model_type=baseline", "--end_epoch=2", "--cam_images=0",
                       "--init_lr=0.02", "--input_size=128")
    assert cub_train.main(args) == 0
    summary = json.loads((tmp_path / "baseline" / "summary.json").read_text())
    assert summary["test"]["top1"] > 100 / 3  # 3 classes


def test_unknown_key_is_an_error_naming_the_closest(capsys):
    assert cub_train.main(["--modle_type=kfn"]) == 2
    assert "model_type" in capsys.readouterr().err


@pytest.mark.parametrize("model_type, extra, jittered", [
    ("gat", [], True), ("baseline", [], True),
    ("kfn", [], False),  # the published KFN recipe has no ColorJitter (cub_pim §1.7)
    ("kfn", ["--color_jitter=[0.2, 0.2]"], True), ("gat", ["--color_jitter=[0, 0]"], False),
])
def test_training_colour_jitter_is_the_methods_recipe(tiny_cub, tmp_path, model_type, extra, jittered):
    from PIL import Image

    from cub.experiment import build_dataset, load_cub_config
    from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    config = load_cub_config(common_args(tiny_cub, tmp_path, "jitter", f"--model_type={model_type}", *extra))
    transform = build_dataset(config, tiny_cub, "train", with_gaze=False).transform
    grey = Image.new("RGB", (80, 64), (128, 128, 128))  # crop and flip leave it unchanged
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    changed = []
    for seed in range(4):
        torch.manual_seed(seed)
        image, _ = transform(grey)
        changed.append(not torch.allclose(image, expected[:, None, None].expand_as(image), atol=1e-6))
    assert any(changed) == jittered


def test_val_fraction_zero_trains_on_every_training_image_and_keeps_the_last_epoch(tiny_cub, tmp_path, capsys):
    from cub.experiment import build_loaders, load_cub_config

    args = common_args(tiny_cub, tmp_path, "all", "--model_type=baseline", "--backbone=resnet18",
                       "--pretrain_path=None", "--end_epoch=2", "--val_fraction=0", "--cam_images=0")
    loaders = build_loaders(load_cub_config(args))
    assert loaders["val"] is None and len(loaders["train"].dataset) == 30  # all 3 x 10 training images
    assert cub_train.main(args) == 0
    assert "last epoch 2 (no validation split)" in capsys.readouterr().err  # the report goes through the logger
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["best_epoch"] == 2 and summary["val"] is None and summary["test"]["num_samples"] == 18
    metrics = pd.read_csv(tmp_path / "all" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and metrics["val_top1"].isna().all()
    last = torch.load(tmp_path / "all" / "ckpt_last.pt", weights_only=True)
    best = torch.load(tmp_path / "all" / "ckpt_best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())


def test_select_on_test_reproduces_the_published_selection(tiny_cub, tmp_path):
    from cub.experiment import build_loaders, load_cub_config

    config = load_cub_config(common_args(tiny_cub, tmp_path, "sel", "--select_on_test=True"))
    with pytest.warns(UserWarning, match="ON THE TEST SET"):
        loaders = build_loaders(config)
    assert len(loaders["train"].dataset) == 30  # no validation carved
    assert loaders["val"].dataset.ids == loaders["test"].dataset.ids


def test_published_protocol_turns_on_the_papers_quirks_with_a_warning():
    from cub.experiment import load_cub_config
    from gaze.config import ConfigError

    with pytest.warns(UserWarning, match=r"(?s)protocol='published'.*select_on_test = True \(was False\).*window_crop"):
        gat = load_cub_config(["cub/configs/gat_r50.py", "--protocol=published"])
    assert gat["select_on_test"] and gat["window_crop"] == "published" and gat["model_name"] == "gat_r50_published"
    with pytest.warns(UserWarning, match="masked_image_crop = 'independent'"):
        kfn = load_cub_config(["cub/configs/kfn_r50.py", "--protocol=published"])
    assert kfn["masked_image_crop"] == "independent" and kfn["select_on_test"]
    ours = load_cub_config(["cub/configs/gat_r50.py"])
    assert not ours["select_on_test"] and ours["window_crop"] == "scored" and ours["model_name"] == "gat_r50"
    with pytest.raises(ConfigError, match="protocol='paper'"):
        load_cub_config(["--protocol=paper"])


def test_published_kfn_masked_picture_has_its_own_crop(tiny_cub, tmp_path):
    import numpy as np
    from PIL import Image

    from cub.dataset import published_masked_picture
    from cub.experiment import build_loaders, load_cub_config

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    attention = torch.from_numpy(rng.random((30, 40)).astype(np.float32))
    expected = (np.asarray(picture, np.float32) / np.float32(255) * attention.numpy()[..., None] * np.float32(255))
    np.testing.assert_array_equal(np.asarray(published_masked_picture(picture, attention)), expected.astype(np.uint8))

    args = common_args(tiny_cub, tmp_path, "kfn", "--model_type=kfn", "--backbone=resnet18", "--pretrain_path=None",
                       "--protocol=published", "--input_size=48")
    with pytest.warns(UserWarning):
        loaders = build_loaders(load_cub_config(args))
    torch.manual_seed(0)
    batch = next(iter(loaders["train"]))
    assert batch["masked_image"].shape == batch["image"].shape
    assert "masked_image" not in next(iter(loaders["test"]))
    from cub.experiment import build_model

    with pytest.warns(UserWarning):
        model = build_model(load_cub_config(args))
    out = model.loss(batch)  # the gaze branch reads the independently cropped masked picture
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model.forward_head(model.branch_features(batch["image"], batch["masked_image"])), model.loss(batch)["logits"])
    assert torch.isfinite(out["loss"])


def _run_outputs(run_dir):
    metrics = pd.read_csv(run_dir / "metrics.csv").drop(columns=["images_per_second", "epoch_time"])
    weights = torch.load(run_dir / "ckpt_last.pt", weights_only=True)["model"]
    return metrics, weights


def test_two_fresh_runs_of_one_config_are_identical(tiny_cub, tmp_path):
    # The model used to be built before anything was seeded: two fresh runs started from
    # different head initialisations (issue: epoch-1 loss 2.4532 vs 2.4051).
    for name in ("a", "b"):
        args = common_args(tiny_cub, tmp_path, name, "--backbone=resnet18", "--pretrain_path=None", "--end_epoch=2",
                           "--cam_images=0")
        assert cub_train.main(args) == 0
    metrics_a, weights_a = _run_outputs(tmp_path / "a")
    metrics_b, weights_b = _run_outputs(tmp_path / "b")
    pd.testing.assert_frame_equal(metrics_a, metrics_b)
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    predictions = [pd.read_csv(tmp_path / name / "predictions.csv") for name in ("a", "b")]
    pd.testing.assert_frame_equal(*predictions)


@pytest.mark.parametrize("bad", ["--input_size=0", "--batch_size=0", "--batch_size=-4", "--end_epoch=0",
                                 "--workers=-1", "--val_fraction=1.0", "--gaze_missing=zeros"])
def test_bad_numbers_are_config_errors_naming_the_key(bad, capsys):
    assert cub_train.main([bad]) == 2
    key = bad[2:].split("=")[0]
    assert f"{key}" in capsys.readouterr().err


def test_gaze_missing_is_a_plain_key(tiny_cub, tmp_path):
    import shutil

    from cub.experiment import build_dataset, load_cub_config

    root = tmp_path / "synthetic_cub"
    shutil.copytree(tiny_cub, root)
    runs = sorted((root / "gaze").glob("*.txt"))
    for run in runs:  # drop image 1's gaze from every run
        run.write_text("".join(line for line in run.read_text().splitlines(keepends=True) if not line.startswith("1,")))
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="--gaze_missing=uniform"):
        build_dataset(load_cub_config(common_args(root, tmp_path, "m")), root, "trainval", with_gaze=True)
    config = load_cub_config(common_args(root, tmp_path, "m", "--gaze_missing=uniform"))
    with pytest.warns(UserWarning):
        dataset = build_dataset(config, root, "trainval", with_gaze=True)
    torch.testing.assert_close(dataset[dataset.ids.index("1")]["gaze"], torch.ones(1, 64, 64))


def test_a_malformed_checkpoint_names_its_file(gat_run, tmp_path, capsys):
    run_dir, args = gat_run
    checkpoint = torch.load(run_dir / "ckpt_best.pt", weights_only=True)
    del checkpoint["model"]["classifier.weight"]
    broken = tmp_path / "broken.pt"
    torch.save(checkpoint, broken)
    with pytest.raises(ValueError, match=f"{broken}: checkpoint does not fit"):
        cub_evaluate.main([*args, f"--checkpoint={broken}", f"--eval_dir={tmp_path / 'eval'}"])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{empty}: the file is empty"):
        cub_evaluate.main([*args, f"--checkpoint={empty}"])


def test_help_lists_the_registered_models(capsys):
    from gaze.models import list_models

    with pytest.raises(SystemExit):
        cub_train.main(["--help"])
    out = capsys.readouterr().out
    assert f"choices: {' | '.join(map(repr, list_models()))}" in out and "'ggcam'" in out


def test_ggcam_trains_on_cub_with_its_own_recipe(tiny_cub, tmp_path):
    """Every registered model is a valid model_type; GG-CAM brings its Adam/plateau recipe."""
    from cub.experiment import load_cub_config

    args = common_args(tiny_cub, tmp_path, "ggcam", "--model_type=ggcam", "--backbone=resnet18", "--pretrain_path=None",
                       "--end_epoch=2")
    config = load_cub_config(args)
    assert (config["optimizer"], config["init_lr"], config["lr_schedule"]) == ("adam", 5e-3, "plateau")
    assert (config["select_metric"], config["val_loss"], config["early_stop_patience"]) == ("loss", "model", 83)
    gat = load_cub_config(common_args(tiny_cub, tmp_path, "gat"))
    assert (gat["optimizer"], gat["init_lr"], gat["lr_schedule"], gat["select_metric"]) == ("sgd", 0.01, "cosine", "top1")
    assert load_cub_config([*args, "--init_lr=1e-4"])["init_lr"] == 1e-4  # a value set by the user stays
    assert cub_train.main(args) == 0
    metrics = pd.read_csv(tmp_path / "ggcam" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and metrics["train_loss"].notna().all()
    assert len(list((tmp_path / "ggcam" / "cam").glob("ggcam_*.png"))) == 2


def test_gradia_runs_both_phases_and_reports_attention_scores(tiny_cub, tmp_path):
    """GRADIA on CUB: phase 1 (CE) then phase 2 (CE + CAM-to-gaze-mask L1) from phase 1's best weights."""
    args = common_args(tiny_cub, tmp_path, "gradia", "--model_type=gradia", "--backbone=resnet18",
                       "--pretrain_path=None", "--end_epoch=2")
    assert cub_train.main(args) == 0
    run = tmp_path / "gradia"
    for phase in ("phase1", "phase2"):
        assert (run / phase / "ckpt_best.pt").is_file() and list(pd.read_csv(run / phase / "metrics.csv")["epoch"]) == [1]
    phase2 = pd.read_csv(run / "phase2" / "metrics.csv")
    assert "train_loss_attention" in phase2 and phase2["train_loss_attention"].iloc[0] > 0
    assert "val_attention_iou" in phase2 and 0 <= phase2["val_attention_iou"].iloc[0] <= 1
    summary = json.loads((run / "phase2" / "summary.json").read_text())
    assert 0 <= summary["test"]["attention_iou"] <= 1 and summary["eval_protocol"] == "single"
    assert summary["select_metric"] == "attention_iou"  # GRADIA's phase-2 criterion, on validation
    assert json.loads((run / "phase1" / "summary.json").read_text())["select_metric"] == "top1"
    assert len(list((run / "cam").glob("gradia_*.png"))) == 2
    config = json.loads((run / "phase2" / "config.json").read_text())
    assert (config["optimizer"], config["init_lr"]) == ("adam", 1e-3)  # GRADIA's recipe, both phases
    evaluation = run / "phase2" / "evaluation"  # GRADIA's published files (A7)
    assert len(json.loads((evaluation / "img_fns.json").read_text())) == 18
    iou = json.loads((evaluation / "IOU.json").read_text())
    assert iou and all(0 <= value <= 1 for value in iou.values())
    assert cub_evaluate.main([*args, f"--checkpoint={run / 'phase2' / 'ckpt_best.pt'}",
                              f"--eval_dir={tmp_path / 'eval'}"]) == 0
    assert (tmp_path / "eval" / "IOU.json").is_file() and len(list((tmp_path / "eval" / "attention").glob("*.png"))) == 2
    # phase 2 alone from a checkpoint
    assert cub_train.main([*args, "--phase=2", f"--init_from={run / 'phase1' / 'ckpt_best.pt'}",
                           "--model_name=gradia_p2"]) == 0
    assert not (tmp_path / "gradia_p2" / "phase1").exists() and (tmp_path / "gradia_p2" / "phase2" / "ckpt_best.pt").is_file()


def test_select_metric_is_a_key_filled_by_the_method_recipe(tiny_cub, tmp_path):
    from cub.experiment import load_cub_config

    args = common_args(tiny_cub, tmp_path, "x")
    assert load_cub_config(args)["select_metric"] == "top1"
    assert load_cub_config([*args, "--model_type=ggcam"])["select_metric"] == "loss"
    assert load_cub_config([*args, "--model_type=gradia", "--select_metric=attention_iou"])["select_metric"] == "attention_iou"


def test_default_run_names_follow_the_method(tiny_cub):
    """A fixed 'gat_demo' made a KFN or GRADIA run resume into the GAT demo's folder."""
    from cub.experiment import load_cub_config

    base = [f"--root={tiny_cub}", "--num_classes=3"]
    assert load_cub_config(base)["model_name"] == "gat_demo"
    assert load_cub_config([*base, "--model_type=kfn"])["model_name"] == "kfn_demo"
    assert load_cub_config([*base, "--model_type=kfn", "--protocol=published"])["model_name"] == "kfn_demo_published"
    assert load_cub_config([*base, "--model_name=mine"])["model_name"] == "mine"


def test_gradia_phase_two_trains_on_train_plus_rated_val_with_drawn_masks(tiny_cub, tmp_path):
    """Ratings (keyed by file name or id) and PNG masks, as the annotation app exports them: phase 2
    trains on the training images + the rated validation images (p2_train.csv), selects on the
    validation images left, weighs samples by their rating, and evaluate.py writes the matrix."""
    from PIL import Image

    from cub.experiment import load_cub_config, phase_loaders

    args = common_args(tiny_cub, tmp_path, "gradia", "--model_type=gradia", "--backbone=resnet18",
                       "--pretrain_path=None", "--end_epoch=2")
    config = load_cub_config(args)
    val = CUBDataset(tiny_cub, "val", val_fraction=0.2, seed=config["seed"], num_classes=3)
    train = CUBDataset(tiny_cub, "train", val_fraction=0.2, seed=config["seed"], num_classes=3)
    test = CUBDataset(tiny_cub, "test", num_classes=3)
    ratings = {val.paths[0].name: "Unreasonable Accurate", val.ids[1]: "Reasonable Inaccurate",
               test.ids[0]: "Unreasonable Inaccurate"}  # a rated test image is never trained on
    (tmp_path / "reasonablity_val.json").write_text(json.dumps(ratings))
    masks = tmp_path / "masks"
    masks.mkdir()
    drawn = np.zeros((8, 12), np.uint8)
    drawn[4:, 6:] = 255  # bottom-right quarter, at any resolution
    Image.fromarray(drawn).save(masks / f"{val.ids[0]}.png")
    args += [f"--ratings={tmp_path / 'reasonablity_val.json'}", f"--masks_dir={masks}", "--attention_samples=rated"]
    config = load_cub_config(args)
    loaders, per_phase = phase_loaders(config, tmp_path / "gradia")
    p2 = pd.read_csv(tmp_path / "gradia" / "p2_train.csv", dtype=str)
    assert sorted(p2["id"]) == sorted([*train.ids, val.ids[0], val.ids[1]])
    assert len(per_phase["phase2"]["val"].dataset) == len(val) - 2 and loaders["train"].dataset.ids == train.ids
    phase2_train = per_phase["phase2"]["train"].dataset
    item = phase2_train[phase2_train.ids.index(val.ids[0])]
    assert (item["weight_ce"].item(), item["weight_att"].item()) == (pytest.approx(0.4), pytest.approx(1.6))
    assert item["mask"].shape == (1, 64, 64) and 0.1 < (item["mask"] >= 0.5).float().mean() < 0.45
    unrated = phase2_train[phase2_train.ids.index(train.ids[0])]
    assert (unrated["weight_ce"].item(), unrated["weight_att"].item()) == (1.0, 0.0)  # 'rated': as published
    assert cub_train.main(args) == 0
    summary = json.loads((tmp_path / "gradia" / "phase2" / "summary.json").read_text())
    assert summary["val"]["num_samples"] == len(val) - 2
    assessed = tmp_path / "assessments.json"
    assessed.write_text(json.dumps([{"img": f"images/{path.name}", "label": "unreasonable" if k % 2 else "ok"}
                                    for k, path in enumerate(test.paths[:5])]))
    assert cub_evaluate.main([*args, f"--assessments={assessed}", f"--eval_dir={tmp_path / 'eval'}"]) == 0
    labels = json.loads((tmp_path / "eval" / "reasonablity_test.json").read_text())
    assert sorted(labels) == sorted(test.ids[:5])
    assert sum(label.startswith("Unreasonable") for label in labels.values()) == 2


def test_cal_trains_reports_its_protocols_and_resumes_exactly_centres_included(tiny_cub, tmp_path):
    """CAL on CUB: a stopped run continued equals the uninterrupted one (weights, BN, centres), and the
    end of the run reports raw, raw+crop and cal_tta."""
    base = ["--model_type=cal", "--backbone=resnet18", "--pretrain_path=None", "--num_attentions=4", "--cam_images=0"]
    assert cub_train.main(common_args(tiny_cub, tmp_path, "straight", *base, "--end_epoch=2")) == 0
    assert cub_train.main(common_args(tiny_cub, tmp_path, "resumed", *base, "--end_epoch=1")) == 0
    assert cub_train.main(common_args(tiny_cub, tmp_path, "resumed", *base, "--end_epoch=2")) == 0
    straight = torch.load(tmp_path / "straight" / "ckpt_last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "resumed" / "ckpt_last.pt", weights_only=True)["model"]
    assert straight["feature_center"].abs().sum() > 0
    for key, tensor in straight.items():
        torch.testing.assert_close(tensor, resumed[key], rtol=0, atol=0, msg=key)
    protocols = json.loads((tmp_path / "straight" / "protocols.json").read_text())
    assert list(protocols) == ["raw", "raw+crop", "cal_tta"] and all(0 <= p["aux_top1"] <= 100 for p in protocols.values())
    metrics = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    assert {"train_loss_effect", "train_loss_centre", "train_acc_aug", "train_acc_aux", "val_aux_top1"} <= set(metrics)
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert (config["optimizer"], config["init_lr"], config["lr_schedule"]) == ("sgd", 1e-3, "cal_exponential")
    assert cub_evaluate.main(common_args(tiny_cub, tmp_path, "straight", *base, "--eval_protocol=cal_tta",
                                         "--cam_images=2", f"--eval_dir={tmp_path / 'eval'}")) == 0
    assert json.loads((tmp_path / "eval" / "classification_report.json").read_text())["num_samples"] == 18
    assert len(list((tmp_path / "eval" / "attention_maps").glob("*_heat_atten.jpg"))) == 2
