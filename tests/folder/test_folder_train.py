"""folder/: the ImageFolder tree on a tiny synthetic set in GRADIA's layout, end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from folder import evaluate as folder_evaluate
from folder import train as folder_train
from folder.dataset import ImageFolderDataset
from folder.experiment import load_data, load_folder_config, phase_two_samples
from gaze.data.human_attention import HumanAttention
from gaze.data.transforms import build_resize_transforms
from gaze.synthetic.gradia import make_synthetic_gradia


@pytest.fixture(scope="module")
def tiny_gradia(tmp_path_factory):
    return make_synthetic_gradia(tmp_path_factory.mktemp("data") / "synthetic_gradia", per_class=(8, 4, 4),
                                 image_size=64)


def common_args(root, run_root, *extra):
    return [f"--root={root}", f"--model_path={run_root}", "--input_size=64", "--batch_size=8", "--backbone=resnet18",
            "--pretrain_path=None", "--end_epoch=2", "--cam_images=2", *extra]


def test_the_synthetic_set_has_gradia_files_in_their_schemas(tiny_gradia):
    masks = json.loads((tiny_gradia / "attention_val.json").read_text())
    assert len(masks) == 8 and np.asarray(masks[0]["attention"]).shape == (224, 224)
    ratings = json.loads((tiny_gradia / "reasonablity_val.json").read_text())
    assert len(ratings) == 4 and set(ratings.values()) <= {"Reasonable Accurate", "Unreasonable Accurate",
                                                          "Reasonable Inaccurate", "Unreasonable Inaccurate"}
    assert sorted(p.name for p in (tiny_gradia / "train").iterdir()) == ["horizontal", "vertical"]
    assert (tiny_gradia / "README.txt").read_text().startswith("SYNTHETIC DATA")


def test_gradia_runs_both_phases_on_p2_train_and_writes_every_artefact(tiny_gradia, tmp_path):
    args = common_args(tiny_gradia, tmp_path)
    assert folder_train.main(args) == 0
    run = tmp_path / "gradia"
    p2 = pd.read_csv(run / "p2_train.csv")
    data = load_data(load_folder_config(args))
    train, val = phase_two_samples(data)
    assert len(p2) == len(train) == 16 + 4 and len(val) == 4  # the training images + the 4 rated val images
    for phase in ("phase1", "phase2"):
        assert (run / phase / "ckpt_best.pt").is_file()
    assert pd.read_csv(run / "phase2" / "metrics.csv")["train_loss_attention"].iloc[0] > 0
    for name in ("img_fns.json", "misclassified.json", "IOU.json"):
        assert (run / "phase2" / "evaluation" / name).is_file(), name
    assert len(json.loads((run / "phase2" / "evaluation" / "IOU.json").read_text())) == 8  # every test image is masked
    assert len(list((run / "cam").glob("gradia_*.png"))) == 2
    assessments = tmp_path / "assessments.json"
    test_ids = json.loads((run / "phase2" / "evaluation" / "img_fns.json").read_text())
    assessments.write_text(json.dumps([{"img": f"x/{i}", "label": "unreasonable" if k % 2 else "fine"}
                                       for k, i in enumerate(test_ids)]))
    assert folder_evaluate.main([*args, f"--assessments={assessments}", f"--eval_dir={tmp_path / 'eval'}"]) == 0
    matrix_labels = json.loads((tmp_path / "eval" / "reasonablity_test.json").read_text())
    assert len(matrix_labels) == 8 and len(list((tmp_path / "eval" / "attention").glob("*.png"))) == 2


def test_the_flip_moves_the_mask_with_the_image(tiny_gradia):
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:, :16] = 255  # a white band on the left ...
    path = tiny_gradia.parent / "flip.jpg"
    Image.fromarray(picture).save(path, quality=100)
    mask = np.zeros((64, 64), bool)
    mask[:, :16] = True  # ... and its mask
    dataset = ImageFolderDataset([(str(path), 0)], ["a"], build_resize_transforms(True, 64, flip=True),
                                 HumanAttention({"flip.jpg": mask}))
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        item = dataset[0]
        bright = item["image"].mean(0) > 0
        assert torch.equal(bright, item["mask"][0] >= 0.5)  # wherever the band went, the mask went
        seen.add(bool(bright[:, 0].all()))
    assert seen == {True, False}  # both flipped and unflipped draws happened


def test_bad_attention_files_name_the_file_and_entry(tiny_gradia, tmp_path):
    from gaze.attention.annotations import AnnotationFormatError

    (tmp_path / "reasonablity_val.json").write_text(json.dumps({"nope.jpg": "Reasonable Accurate"}))
    with pytest.raises(AnnotationFormatError, match=r"reasonablity_val\.json: 1 entry match no image .*'nope\.jpg'"):
        load_data(load_folder_config([f"--root={tiny_gradia}", f"--ratings={tmp_path / 'reasonablity_val.json'}"]))


def test_cal_on_the_nycu_hw1_layout_writes_answer_txt_in_the_test_order(tmp_path):
    from tests.data.test_layouts import make_hw1

    make_hw1(tmp_path / "hw1", per_class=6, tests=5)
    args = [f"--root={tmp_path / 'hw1'}", "--layout=nycu_hw1", "--transforms=hw1", "--model_type=cal",
            f"--model_path={tmp_path / 'runs'}", "--input_size=48", "--batch_size=4", "--backbone=resnet18",
            "--pretrain_path=None", "--end_epoch=1", "--num_attentions=4", "--val_fraction=0.34", "--cam_images=0",
            f"--answer_path={tmp_path / 'submission' / 'answer.txt'}"]
    assert folder_train.main(args) == 0
    answer = (tmp_path / "submission" / "answer.txt").read_bytes().decode()
    lines = answer.split("\n")
    assert not answer.endswith("\n") and [line.split(" ")[0] for line in lines] == \
        ["0004.jpg", "0003.jpg", "0002.jpg", "0001.jpg", "0000.jpg"]
    assert {line.split(" ")[1] for line in lines} <= {"001.Black_footed_Albatross", "002.Laysan_Albatross"}
    protocols = json.loads((tmp_path / "runs" / "cal" / "protocols.json").read_text())
    assert list(protocols) == ["raw", "raw+crop", "cal_tta"]


def test_a_pim_yaml_trains_pim_on_train_and_test_folders_and_chooses_the_head_on_validation(tiny_gradia, tmp_path):
    yaml = tmp_path / "tiny_pim.yaml"
    yaml.write_text(f"project_name: tiny\nexp_name: pim\ntrain_root: {tiny_gradia}/train/\nval_root: {tiny_gradia}/test\n"
                    "data_size: 64\nnum_workers: 0\nbatch_size: 8\nmodel_name: resnet18\npretrained: ~\n"
                    "optimizer: AdamW\nmax_lr: 1e-3\nmax_epochs: 2\nwarmup_batchs: 2\nuse_amp: False\nfpn_size: 16\n"
                    "num_classes: 2\nnum_selects: {layer1: 32, layer2: 8, layer3: 4, layer4: 1}\nupdate_freq: 1\n")
    assert folder_train.main([str(yaml), f"--model_path={tmp_path}/runs", "--cam_images=0"]) == 0
    run = tmp_path / "runs" / "pim"
    heads = json.loads((run / "heads.json").read_text())
    assert heads["chosen_on_val"] in heads["val"] and set(heads["test"]) >= {"layer1", "combiner", "highest-5"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val"]["num_samples"] == 2 and summary["test"]["num_samples"] == 8  # val carved from train/
    text = (run / "eval_results.txt").read_text()
    assert text.startswith("[Evaluation Results]\nProject: runs, Experiment: pim\nSamples: 8\n")
    chosen = heads["chosen_on_val"]
    assert f"CHOSEN_ON_VALIDATION: {chosen}-top-1 val {heads['val'][chosen]['top1']:.3f}%" in text
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.read_text().replace("num_classes: 2", "num_classes: 200"))
    with pytest.raises(ValueError, match="'num_classes' = 200, but the data has 2 classes"):
        folder_train.main([str(wrong), f"--model_path={tmp_path}/runs"])


def test_a_released_pim_checkpoint_evaluates_with_evaluate_py(tiny_gradia, tmp_path):
    import timm

    from tests.engine.test_pim_importer import pim_layout

    state = pim_layout(timm.create_model("resnet18", pretrained=False).state_dict(), [64, 128, 256, 512],
                       [256, 64, 16, 4], fpn=16, classes=2, selected=45, conv_projection=True, conv_up=False)
    best = tmp_path / "records" / "tiny" / "pim" / "backup" / "best.pt"
    best.parent.mkdir(parents=True)
    torch.save({"model": state, "optimizer": {}, "epoch": 3}, best)
    args = [f"--root={tiny_gradia}", "--layout=pim", "--input_size=64", "--batch_size=8", "--num_selects=[32, 8, 4, 1]",
            f"--checkpoint={best}", f"--eval_dir={tmp_path}/eval", "--cam_images=0"]
    assert folder_evaluate.main(args) == 0
    out = tmp_path / "eval"
    results = (out / "eval_results.txt").read_text().splitlines()
    assert results[:3] == ["[Evaluation Results]", "Project: tiny, Experiment: pim", "Samples: 8"]
    assert any(line.startswith("BEST_ACC: ") for line in results)
    table = pd.read_csv(out / "infer_predictions.csv")
    assert list(table.columns[:4]) == ["id", "label", "prediction", "score"] and len(table) == 8
    assert ((table["score"] >= 0.5) & (table["score"] <= 1)).all()  # the predicted class's softmax of 2 classes
    report = json.loads((out / "classification_report.json").read_text())
    assert f"top-1 {report['top1']:.3f}%" in (out / "infer_results.txt").read_text()
    with Image.open(out / "infer_cm.png") as image:
        assert image.width < 1600


def test_a_missing_pim_folder_names_the_key_and_the_yaml_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such folder \(config key 'train_dir'; a PIM YAML's train_root\)"):
        load_data(load_folder_config(["--layout=pim", f"--train_dir={tmp_path}/nothing"]))
