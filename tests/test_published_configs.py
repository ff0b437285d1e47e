"""gaze/published_configs.py: PIM's own YAML files as override files of the folder tree."""

from __future__ import annotations

import pytest

from folder.experiment import REPO_ROOT, load_folder_config
from gaze.config import ConfigError

SWIN_YAML = REPO_ROOT / "folder" / "configs" / "CUB200_SwinT.yaml"


def test_every_key_of_pims_cub_yaml_maps_to_ours():
    with pytest.warns(UserWarning, match="use_wandb has no effect"):
        config = load_folder_config([str(SWIN_YAML)])
    expected = {
        "model_type": "pim", "layout": "pim", "transforms": "pim", "lr_schedule": "pim",
        "model_path": "runs/CUB200-T2", "model_name": "T3000",
        "train_dir": "../datas/train/", "test_dir": "../datas/test/", "input_size": 384, "workers": 2,
        "batch_size": 16, "backbone": "swin_large_patch4_window12_384", "fpn_upsample": "conv", "pretrain_path": None,
        "stage_modules": ["layers.1.downsample", "layers.2.downsample", "layers.3.downsample", "layers.3"],
        "init_from": None, "optimizer": "sgd", "momentum": 0.9, "nesterov": True, "init_lr": 5e-4,
        "weight_decay": 5e-4, "end_epoch": 50, "warmup_steps": 400, "amp": "fp16", "fpn_size": 1536,
        "num_classes": 200, "num_selects": [2048, 512, 128, 32], "lambda_b": 0.5, "lambda_s": 0.0, "lambda_n": 5.0,
        "lambda_c": 1.0, "accumulate_steps": 2, "log_interval": 100,
    }
    assert {key: config[key] for key in expected} == expected
    assert config["config_files"][-1] == str(SWIN_YAML)


def test_command_line_keys_after_the_yaml_win_and_builders_map(tmp_path):
    yaml = tmp_path / "r50.yaml"
    yaml.write_text("model_name: resnet50\noptimizer: AdamW\nmax_lr: 3e-4\nwdecay: 5e-4\nwarmup_batchs: 5\n"
                    "update_freq: 2\n")
    config = load_folder_config([str(yaml), "--batch_size=4"])
    assert (config["backbone"], config["fpn_upsample"], config["pretrain_path"]) == \
        ("resnet50", "bilinear", "resnet50_miil_21k.pth")
    assert config["init_lr"] == 3e-4  # PyYAML reads 3e-4 as a string: converted
    assert (config["optimizer"], config["weight_decay"]) == ("adamw", 0.01)  # published AdamW gets lr only
    assert config["warmup_steps"] == 3 and config["batch_size"] == 4  # ceil(5 / 2) optimizer steps
    assert config["stage_modules"] is None  # ResNet: its layer1-4
    yaml.write_text("model_name: efficient\n")
    config = load_folder_config([str(yaml)])
    assert (config["backbone"], config["stage_modules"]) == ("efficientnet_b7", ["blocks.3", "blocks.4", "blocks.5",
                                                                                 "blocks.6"])  # features.4-7
    yaml.write_text("model_name: vit\n")
    assert load_folder_config([str(yaml)])["stage_modules"] == [f"blocks.{i}" for i in range(8, 12)]


@pytest.mark.parametrize("text, message", [
    ("max_lrr: 0.1\n", "unknown PIM key 'max_lrr' (did you mean 'max_lr'?)"),
    ("use_fpn: False\n", "use_fpn: False: PIM without its plug-ins"),
    ("max_lr: fast\n", "key 'max_lr' = 'fast': expected a number"),
    ("train_root: ~\n", "evaluation-only mode"),
    ("num_selects: {layer1: 3}\n", "key 'num_selects'"),
    ("optimizer: Adam\n", "PIM offers 'SGD' or 'AdamW'"),
    ("- a list\n", "expected PIM's key: value mapping"),
    ("batch_size: [1\n", "not a YAML file"),
    ("lambda_b: [1]\n", "key 'lambda_b' = [1]: expected a number"),
    ("num_workers: 2.5\n", "key 'num_workers' = 2.5: expected a whole number"),
])
def test_bad_yaml_names_the_file_and_key(tmp_path, text, message):
    yaml = tmp_path / "bad.yaml"
    yaml.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_folder_config([str(yaml)])
    assert message in str(error.value) and str(yaml) in str(error.value)


def test_another_suffix_is_still_refused():
    with pytest.raises(ConfigError, match=r"ending in \.py or \.yaml or \.yml"):
        load_folder_config(["config.json"])


def test_pims_paper_configs_in_our_format_load_with_the_published_values():
    from cub.experiment import load_cub_config

    swin = load_cub_config([str(REPO_ROOT / "cub" / "configs" / "pim_swinl.py")])
    yaml = load_folder_config([str(SWIN_YAML)])
    for key in ("backbone", "stage_modules", "input_size", "fpn_size", "fpn_upsample", "num_selects", "init_lr",
                "weight_decay", "optimizer", "nesterov", "end_epoch", "warmup_steps", "accumulate_steps", "amp",
                "lambda_b", "lambda_s", "lambda_n", "lambda_c", "transforms", "lr_schedule", "batch_size"):
        assert swin[key] == yaml[key], key  # the same run as PIM's own YAML
    r50 = load_cub_config([str(REPO_ROOT / "cub" / "configs" / "pim_r50.py")])
    assert (r50["backbone"], r50["pretrain_path"], r50["input_size"], r50["fpn_upsample"]) == \
        ("resnet50", "resnet50_miil_21k.pth", 448, "bilinear")
    assert load_cub_config(["--model_type=pim"])["transforms"] == "pim"  # PIM's recipe on the CUB tree too
    assert load_cub_config([])["transforms"] == "cub"
