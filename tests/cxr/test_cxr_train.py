"""cxr/train.py and cxr/evaluate.py end to end on a tiny synthetic CXR-Eye tree (5-fold CV)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch

from cxr import evaluate as cxr_evaluate
from cxr import train as cxr_train
from cxr.experiment import build_model, load_cxr_config
from gaze.config import ConfigError
from gaze.models.kfn import KFN
from gaze.synthetic.cxr import make_synthetic_cxr_eye

FOLD_FILES = ("config.json", "metrics.csv", "ckpt_best.pt", "ckpt_last.pt", "classification_report.json",
              "classification_results.csv", "predictions.csv", "confusion_matrix.png", "NET.pt",
              "training_process.png", "params.json")


@pytest.fixture(scope="module")
def tiny_cxr(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic_cxr"
    make_synthetic_cxr_eye(root, images_per_class=10, image_size=(96, 128), seed=3)
    return root


def common_args(root, run_root, *extra):
    return [f"--mimic_root={root / 'mimic-cxr-jpg'}", f"--egd_dir={root / 'egd-cxr'}", "--input_size=64",
            "--batch_size=8", "--backbone=resnet18", "--pretrain_path=None", "--end_epoch=1",
            "--val_fraction=0.2", f"--model_path={run_root}", "--cam_images=2", *extra]


@pytest.fixture(scope="module")
def gat_run(tiny_cxr, tmp_path_factory):
    run_root = tmp_path_factory.mktemp("runs")
    args = common_args(tiny_cxr, run_root, "--model_type=gat", "--gcam_viz=True", "--window_loss_from_epoch=1")
    assert cxr_train.main(args) == 0
    return run_root / "gat_cv_rseed1", args


def test_one_epoch_cv_run_writes_every_artefact(gat_run, tiny_cxr):
    run_dir, _ = gat_run
    splits = pd.read_csv(run_dir / "splits.csv", dtype=str, keep_default_na=False)
    assert len(splits) == 30 and {f"split_{k}" for k in range(5)} <= set(splits.columns)
    for k in range(5):
        fold = run_dir / f"fold{k}"
        for name in FOLD_FILES:
            assert (fold / name).is_file(), f"fold{k}/{name}"
        assert len(list((fold / "viz_plots").glob("gat_*.png"))) == 2
        test_ids = set(splits["dicom_id"][splits[f"split_{k}"] == "test"])
        results = pd.read_csv(fold / "classification_results.csv", dtype={"dicom_id": str})
        assert set(results["dicom_id"]) == test_ids  # GG-CAM's file, with the dicom_id it lacked
        assert list(results.columns) == ["dicom_id", "label", "prob_Normal", "prob_CHF", "prob_pneumonia"]
        report = json.loads((fold / "classification_report.json").read_text())
        assert {"top1", "macro_f1", "weighted_f1", "roc_auc_ovr", "roc_auc_ovo"} <= set(report)
        params = json.loads((fold / "params.json").read_text())
        assert params["total_param"] > 1e6 and params["fold"] == k
        net = torch.load(fold / "NET.pt", weights_only=True)
        assert "classifier.weight" in net
    metrics = pd.read_csv(run_dir / "cv_metrics.csv")
    assert list(metrics["fold"]) == [0, 1, 2, 3, 4]
    summary = json.loads((run_dir / "cv_summary.json").read_text())
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(metrics["accuracy"].mean())
    assert summary["metrics"]["accuracy"]["std"] == pytest.approx(metrics["accuracy"].std(ddof=1))


def test_window_loss_ran_and_folds_are_patient_disjoint(gat_run):
    run_dir, _ = gat_run
    assert "train_loss_window" in pd.read_csv(run_dir / "fold0" / "metrics.csv").columns
    splits = pd.read_csv(run_dir / "splits.csv", dtype=str, keep_default_na=False)
    for k in range(5):
        sets = {s: set(splits["patient_id"][splits[f"split_{k}"] == s]) for s in ("train", "val", "test")}
        assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["val"]) and not (sets["val"] & sets["test"])
        assert sets["val"], "a validation part is carved from each fold's training patients"


def test_evaluate_reproduces_each_fold(gat_run, tmp_path):
    run_dir, args = gat_run
    assert cxr_evaluate.main([*args, f"--checkpoint_dir={run_dir}", f"--eval_dir={tmp_path}"]) == 0
    evaluated = pd.read_csv(tmp_path / "cv_metrics.csv")
    trained = pd.read_csv(run_dir / "cv_metrics.csv")
    pd.testing.assert_series_equal(evaluated["accuracy"], trained["accuracy"])


def test_kfn_starts_from_the_gat_fold_checkpoints(gat_run):
    run_dir, args = gat_run
    config = load_cxr_config([*args, "--model_type=kfn", f"--pretrained_dir={run_dir}"])
    model = build_model(config, k=3)
    assert isinstance(model, KFN)
    gat = torch.load(run_dir / "fold3" / "ckpt_best.pt", weights_only=True)["model"]
    for key, tensor in model.image_backbone.net.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(tensor, gat[f"backbone.net.{key}"])
            torch.testing.assert_close(model.gaze_backbone.net.state_dict()[key], gat[f"backbone.net.{key}"])
    missing = load_cxr_config([*args, "--model_type=kfn", f"--pretrained_dir={run_dir / 'nothing'}"])
    with pytest.raises(FileNotFoundError, match="fold3/ckpt_best.pt"):
        build_model(missing, k=3)


def test_kfn_from_a_hafc_fold_checkpoint(tiny_cxr, tmp_path):
    """A bare HAFC GAT state dict (encoder.* + classification_head.*) initialises KFN."""
    args = common_args(tiny_cxr, tmp_path, "--backbone=efficientnet_b0")
    gat = build_model(load_cxr_config([*args, "--model_type=gat"]))
    state = {"encoder." + k[len("backbone.net."):]: v for k, v in gat.state_dict().items() if k.startswith("backbone.net.")}
    state["encoder.conv_head.weight"] = torch.zeros(1280, 320, 1, 1)  # smp keeps the unused head conv
    state["classification_head.3.weight"] = gat.classifier.weight.detach()
    state["classification_head.3.bias"] = gat.classifier.bias.detach()
    (tmp_path / "hafc" / "2_fold").mkdir(parents=True)
    torch.save(state, tmp_path / "hafc" / "2_fold" / "best.pth")
    kfn = build_model(load_cxr_config([*args, "--model_type=kfn", f"--pretrained_dir={tmp_path / 'hafc'}"]), k=2)
    torch.testing.assert_close(kfn.gaze_backbone.net.conv_stem.weight, gat.backbone.net.conv_stem.weight)


def test_ggcam_one_fold_runs_and_selects_on_its_loss(tiny_cxr, tmp_path):
    args = common_args(tiny_cxr, tmp_path, "--model_type=ggcam", "--run_folds=[0]", "--end_epoch=2", "--input_hw=[64, 48]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cxr_train.main(args) == 0
    fold = tmp_path / "ggcam_cv_rseed1" / "fold0"
    for name in FOLD_FILES:
        assert (fold / name).is_file(), name
    params = json.loads((fold / "params.json").read_text())
    assert params["select_metric"] == "loss" and params["cam_target"] == "true"
    assert params["config"]["lr_schedule"] == "plateau" and params["config"]["init_lr"] == 5e-3  # ResNet
    metrics = pd.read_csv(fold / "metrics.csv")
    assert {"train_loss_gaze", "train_sigma_ce", "train_sigma_gaze"} <= set(metrics.columns)
    assert metrics["val_loss"].iloc[0] > 1e3  # the whole weighted sum, not the CE


def test_ggcam_published_preprocessing_end_to_end(tiny_cxr, tmp_path):
    from cxr.experiment import build_catalogue, build_loaders, split_table

    args = common_args(tiny_cxr, tmp_path, "--model_type=ggcam", "--run_folds=[0]", "--input_hw=[64, 48]",
                       "--preprocessing=pad_subsample", "--gcam_viz=True")
    config = load_cxr_config(args)
    catalogue = build_catalogue(config)
    batch = next(iter(build_loaders(config, catalogue, split_table(config, catalogue), 0)["train"]))
    # 128 x 96 films on the 128 x 96 canvas: every 2nd pixel, divided by the max, no mean/std.
    assert batch["image"].shape[-2:] == (64, 48) and batch["image"].min() >= 0 and batch["image"].amax() <= 1
    assert torch.allclose(batch["image"].amax(dim=(1, 2, 3)), torch.ones(len(batch["image"])))
    assert torch.allclose(batch["gaze"].amax(dim=(1, 2, 3)), torch.ones(len(batch["gaze"])))
    assert build_model(config).gaze_sampling == "point"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cxr_train.main(args) == 0
    assert len(list((tmp_path / "ggcam_cv_rseed1" / "fold0" / "viz_plots").glob("*.png"))) == 2
    with pytest.raises(ConfigError, match="gaze_source='fixations'"):
        load_cxr_config([*args, "--gaze_source=heatmaps"])
    ggcam_configs = [load_cxr_config([f"cxr/configs/{name}.py"]) for name in ("ggcam_effnet", "ggcam_resnet")]
    assert all(c["preprocessing"] == "pad_subsample" and c["input_hw"] == [1536, 1280] for c in ggcam_configs)


def test_select_on_test_validates_on_the_test_fold(tiny_cxr, tmp_path):
    args = common_args(tiny_cxr, tmp_path, "--model_type=baseline", "--select_on_test=True", "--run_folds=[1]")
    with pytest.warns(UserWarning, match="TEST fold"):
        assert cxr_train.main(args) == 0
    fold = tmp_path / "baseline_cv_rseed1" / "fold1"
    val = pd.read_csv(fold / "val_predictions.csv", dtype={"id": str})
    test = pd.read_csv(fold / "predictions.csv", dtype={"id": str})
    assert sorted(val["id"]) == sorted(test["id"])


def test_cv_without_validation_patients_keeps_the_last_epoch(tiny_cxr, tmp_path):
    args = common_args(tiny_cxr, tmp_path, "--model_type=baseline", "--val_fraction=0", "--run_folds=[1]",
                       "--end_epoch=2", "--cam_images=0")
    assert cxr_train.main(args) == 0
    summary = json.loads(next(tmp_path.glob("*/fold1/summary.json")).read_text())
    assert summary["val"] is None and summary["best_epoch"] == 2


def test_published_protocols_of_hafc_and_ggcam(tiny_cxr, tmp_path):
    with pytest.warns(UserWarning, match=r"(?s)select_on_test = True.*heatmap_png_mode = 'luma'.*window_crop"):
        gat = load_cxr_config(["cxr/configs/hafc_gat.py", "--protocol=published"])
    assert (gat["gaze_source"], gat["heatmap_png_mode"], gat["select_on_test"], gat["jpeg_draft"]) == (
        "heatmaps", "luma", True, False)
    assert gat["model_name"] == "gat_cv_rseed1_published" and gat["window_crop"] == "published"
    with pytest.warns(UserWarning, match="cam_target = 'class0'"):
        ggcam = load_cxr_config(["cxr/configs/ggcam_resnet.py", "--protocol=published"])
    assert ggcam["cam_target"] == "class0" and not ggcam["ggcam_patient_disjoint"] and ggcam["split"] == "ggcam"
    with pytest.raises(ConfigError, match=r"the key 'split' now \(--split=holdout\)"):
        load_cxr_config(["--protocol=holdout"])
    # A published GG-CAM fold end to end (tiny inputs): the per-image split is kept as it is.
    args = common_args(tiny_cxr, tmp_path, "--model_type=ggcam", "--protocol=published", "--input_hw=[64, 48]",
                       "--end_epoch=1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cxr_train.main(args) == 0
        assert cxr_train.main(args) == 0  # resumes: the saved splits.csv is read back
    run = tmp_path / "ggcam_ggcam_rseed0_published"
    assert json.loads((run / "ggcam" / "params.json").read_text())["cam_target"] == "class0"
    # A published HAFC GAT fold: luma PNG maps, test-fold selection, the shifted window crops.
    args = common_args(tiny_cxr, tmp_path, "--model_type=gat", "--protocol=published", "--run_folds=[0]",
                       "--window_loss_from_epoch=1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cxr_train.main(args) == 0
    fold = tmp_path / "gat_cv_rseed1_published" / "fold0"
    metrics = pd.read_csv(fold / "metrics.csv")
    assert metrics["train_loss_window"].notna().all()
    assert json.loads((fold / "config.json").read_text())["gaze_source"] == "heatmaps"


def test_two_fresh_cv_runs_are_identical(tiny_cxr, tmp_path):
    for name in ("a", "b"):
        args = common_args(tiny_cxr, tmp_path, "--model_type=gat", "--run_folds=[2]", f"--model_name={name}",
                           "--window_loss_from_epoch=1", "--cam_images=0")
        assert cxr_train.main(args) == 0
    runs = [tmp_path / name / "fold2" for name in ("a", "b")]
    metrics = [pd.read_csv(run / "metrics.csv").drop(columns=["images_per_second", "epoch_time"]) for run in runs]
    pd.testing.assert_frame_equal(*metrics)
    weights = [torch.load(run / "ckpt_last.pt", weights_only=True)["model"] for run in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_unknown_model_is_a_config_error(capsys):
    assert cxr_train.main(["--model_type=unet"]) == 2
    assert "model_type='unet'" in capsys.readouterr().err


def test_method_defaults_follow_the_papers():
    gat = load_cxr_config([])
    assert gat["pretrain_path"] == "package:efficientnet-lite0" and gat["init_lr"] == 5e-4
    assert gat["lr_schedule"] == "multistep" and gat["select_metric"] == "top1" and gat["rseed"] == 1
    ggcam = load_cxr_config(["--model_type=ggcam", "--backbone=resnet50"])
    assert ggcam["pretrain_path"] is None  # from scratch as published; the Lite0 weights would not fit
    assert (ggcam["init_lr"], ggcam["lr_schedule"], ggcam["early_stop_patience"]) == (5e-3, "plateau", 83)
    assert ggcam["select_metric"] == "loss" and ggcam["val_loss"] == "model" and ggcam["reload_best_on_lr_drop"]
    assert load_cxr_config(["--model_type=ggcam"])["init_lr"] == 6e-3  # EfficientNet family
    assert load_cxr_config(["--split=holdout"])["rseed"] == 42  # EGD's seed


@pytest.mark.parametrize("extra", [[], ["cxr/configs/hafc_gat.py"]])
def test_cxr_window_loss_starts_at_the_third_epoch(extra):
    # HAFC CXR-Eye/main.py loops `for epoch in range(args.epochs)` (0-based) and adds the window
    # CE unless `epoch < 2`: the first window loss is in the third epoch (cxr §2.3).
    config = load_cxr_config([*extra, "--backbone=resnet18", "--pretrain_path=None", "--input_size=64"])
    assert config["window_loss_from_epoch"] == 3
    model = build_model(config)
    batch = {"image": torch.randn(2, 3, 64, 64), "label": torch.tensor([0, 2]), "gaze": torch.rand(2, 1, 64, 64)}
    for epoch, has_window_loss in ((1, False), (2, False), (3, True)):
        model.epoch = epoch
        assert ("loss_window" in model.loss(batch)) == has_window_loss


def test_hafc_configs_build_the_smp_encoder_and_head():
    args = ["--pretrain_path=None", "--input_size=64"]
    gat = build_model(load_cxr_config(["cxr/configs/hafc_gat.py", *args]))
    kfn = build_model(load_cxr_config(["cxr/configs/hafc_kfn.py", *args, "--pretrained_dir=None"]))
    for backbone in (gat.backbone, kfn.image_backbone, kfn.gaze_backbone):
        rates = [m.drop_prob for m in backbone.modules() if type(m).__name__ == "DropPath"]
        assert backbone.arch == "efficientnet_b0" and backbone.num_features == 320
        assert max(rates) == pytest.approx(0.2 * 15 / 16)  # timm's ramp to 0.2 over 16 blocks
    assert torch.equal(gat.classifier.bias, torch.zeros(3))  # xavier head, zero bias
    bound = (6 / (320 + 3)) ** 0.5
    assert float(gat.classifier.weight.abs().max()) <= bound and float(gat.classifier.weight.abs().max()) > 0.8 * bound
    assert kfn.classifier.bias.abs().sum() > 0  # Two_Branch's plain nn.Linear
    assert load_cxr_config(["cxr/configs/hafc_gat.py"])["pretrain_path"].endswith("tf_efficientnet_b0_aa-827b6e33.pth")


def test_gcam_viz_of_kfn_shows_both_branches(tiny_cxr, tmp_path):
    from cxr.experiment import build_catalogue, build_dataset
    from gaze.viz.panels import write_cam_panels

    config = load_cxr_config(common_args(tiny_cxr, tmp_path, "--model_type=kfn"))
    catalogue = build_catalogue(config)
    dataset = build_dataset(config, catalogue, [0, 1, 2], "test", with_gaze=False).with_attention()
    paths = write_cam_panels(build_model(config), dataset, 2, tmp_path / "viz_plots")
    assert [p.name for p in paths] == [f"TwoBranch_{i}.png" for i in catalogue.frame["dicom_id"][:2]]
    from PIL import Image

    with Image.open(paths[0]) as panel:  # image, gaze overlay, two branch CAMs side by side
        assert panel.width > 3.0 * panel.height  # 3 panels would be ~2.5 wide


@pytest.mark.slow
def test_torchrun_two_processes_run_several_folds(tiny_cxr, tmp_path):
    """One process group for all folds: re-joining it per fold used to hang at fold 1."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(repo / "cxr" / "train.py"), *common_args(tiny_cxr, tmp_path, "--run_folds=[0, 1]")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = pd.read_csv(tmp_path / "gat_cv_rseed1" / "cv_metrics.csv")
    assert list(metrics["fold"]) == [0, 1]
    assert done.stderr.count("accuracy (%)") == 1  # rank 0 alone reports the summary (through the logger)


def test_prepare_cli_writes_the_splits_next_to_the_run(tiny_cxr, tmp_path, capsys):
    from cxr.prepare import main as prepare_main
    from gaze.data.patient_splits import read_split_table

    assert prepare_main(common_args(tiny_cxr, tmp_path, "--split=holdout")) == 0
    table = read_split_table(tmp_path / "gat_holdout_rseed42" / "splits.csv")
    assert len(table) == 30 and set(table["split_0"]) == {"train", "val", "test"}
    assert "Normal  CHF  pneumonia" in capsys.readouterr().err  # the report goes through the logger
    assert not list((tiny_cxr / "egd-cxr").glob("*split*"))  # never written into the data folders


def test_kfn_of_a_holdout_run_starts_from_the_holdout_gat(gat_run, tmp_path):
    """Outside CV the GAT run folder is named after the protocol (it used to look for fold0/)."""
    import shutil

    run_dir, args = gat_run
    (tmp_path / "holdout").mkdir()
    shutil.copy(run_dir / "fold0" / "ckpt_best.pt", tmp_path / "holdout" / "ckpt_best.pt")
    config = load_cxr_config([*args, "--model_type=kfn", "--split=holdout", f"--pretrained_dir={tmp_path}"])
    model = build_model(config, k=0)
    gat = torch.load(run_dir / "fold0" / "ckpt_best.pt", weights_only=True)["model"]
    torch.testing.assert_close(model.image_backbone.net.conv1.weight, gat["backbone.net.conv1.weight"])


def test_gradia_fold_runs_both_phases_with_gaze_masks(tiny_cxr, tmp_path):
    args = common_args(tiny_cxr, tmp_path, "--model_type=gradia", "--run_folds=[0]", "--end_epoch=2", "--gcam_viz=True")
    assert cxr_train.main(args) == 0
    fold = tmp_path / "gradia_cv_rseed1" / "fold0"
    assert (fold / "phase1" / "ckpt_best.pt").is_file()
    for name in FOLD_FILES:  # the fold's GG-CAM-style artefacts come from the last phase
        assert (fold / "phase2" / name).is_file(), name
    phase2 = pd.read_csv(fold / "phase2" / "metrics.csv")
    assert phase2["train_loss_attention"].iloc[0] > 0 and 0 <= phase2["val_attention_iou"].iloc[0] <= 1
    summary = json.loads((tmp_path / "gradia_cv_rseed1" / "cv_summary.json").read_text())
    assert summary["folds"] == 1 and summary["eval_protocol"] == "single"
    assert 0 <= summary["metrics"]["attention_iou"]["mean"] <= 1  # the model's metric joins the CV summary
    assert "attention_iou" in pd.read_csv(tmp_path / "gradia_cv_rseed1" / "cv_metrics.csv")
    assert len(list((fold / "phase2" / "viz_plots").glob("gradia_*.png"))) == 2
    assert cxr_evaluate.main([*args, f"--eval_dir={tmp_path / 'eval'}"]) == 0  # finds fold0/phase2/ckpt_best.pt
    assert (tmp_path / "eval" / "fold0" / "IOU.json").is_file()
    assert len(list((tmp_path / "eval" / "fold0" / "attention").glob("*.png"))) == 2


def test_gradia_fold_phase_two_trains_on_the_fold_rated_val_images_with_drawn_masks(tiny_cxr, tmp_path):
    """Ratings (by file name or dicom_id) and PNG masks in cross-validation: fold k's phase 2 trains
    on its training images + its rated validation images; a rated test image is never trained on."""
    import numpy as np
    from PIL import Image

    from cxr.experiment import build_catalogue, split_table

    args = common_args(tiny_cxr, tmp_path, "--model_type=gradia", "--run_folds=[0]", "--end_epoch=2")
    config = load_cxr_config(args)
    catalogue = build_catalogue(config)
    table = split_table(config, catalogue)
    frame = catalogue.frame.assign(split=table["split_0"].to_numpy())
    val, train, test = (frame[frame["split"] == part] for part in ("val", "train", "test"))
    assert len(val) >= 3
    ratings = {f"{val['dicom_id'].iloc[0]}.jpg": "Unreasonable Accurate", val["dicom_id"].iloc[1]: "Reasonable Inaccurate",
               test["dicom_id"].iloc[0]: "Unreasonable Inaccurate"}
    (tmp_path / "ratings.json").write_text(json.dumps(ratings))
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 2)).save(masks / f"{train['dicom_id'].iloc[0]}.png")
    args += [f"--ratings={tmp_path / 'ratings.json'}", f"--masks_dir={masks}"]
    assert cxr_train.main(args) == 0
    fold = tmp_path / "gradia_cv_rseed1" / "fold0"
    p2 = pd.read_csv(fold / "p2_train.csv", dtype={"dicom_id": str})
    assert sorted(p2["dicom_id"]) == sorted([*train["dicom_id"], *val["dicom_id"].iloc[:2]])
    summary = json.loads((fold / "phase2" / "summary.json").read_text())
    assert summary["val"]["num_samples"] == len(val) - 2
    verdicts = tmp_path / "assessments.json"
    verdicts.write_text(json.dumps({f"{dicom_id}.jpg": "Unreasonable Accurate" for dicom_id in test["dicom_id"].iloc[:3]}))
    assert cxr_evaluate.main([*args, f"--assessments={verdicts}", f"--eval_dir={tmp_path / 'eval'}"]) == 0
    labels = json.loads((tmp_path / "eval" / "fold0" / "reasonablity_test.json").read_text())
    assert sorted(labels) == sorted(test["dicom_id"].iloc[:3]) and all(v.startswith("Unreasonable") for v in labels.values())
