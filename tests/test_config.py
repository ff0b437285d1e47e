"""gaze/config.py: defaults file, override files, --key=value, errors, --help, save."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gaze.config import ConfigError, config_help, format_config, load_config, save_config

DEFAULTS = '''
"""Toy defaults."""
import math  # modules are not config keys

# learning rate of SGD
# (published value)
init_lr = 1e-3
batch_size = 6  # images per GPU
end_epoch = 150
amp = None
use_gaze = True
model_type = 'gat'
lr_milestones = [50, 100]
window_side = (128, 192, 256)
pretrained_path = None
extra = {'a': 1}
_private = 3
derived = math.pi
'''


@pytest.fixture
def defaults(tmp_path) -> Path:
    path = tmp_path / "cub" / "config.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(DEFAULTS))
    return path


def test_defaults_keep_public_config_values(defaults):
    config = load_config(defaults, [])
    assert config["init_lr"] == 1e-3 and config["batch_size"] == 6 and config["use_gaze"] is True
    assert config["window_side"] == (128, 192, 256) and config["derived"] == pytest.approx(3.14159, abs=1e-5)
    assert "math" not in config and "_private" not in config and "__builtins__" not in config
    assert config["config_files"] == [str(defaults)]


def test_override_file_then_command_line(defaults, tmp_path, monkeypatch):
    override = defaults.parent / "configs" / "kfn.py"
    override.parent.mkdir()
    override.write_text("_extra = 2  # private helper\nmodel_type = 'kfn'  # KFN\n"
                        "batch_size = batch_size + _extra  # sees the defaults\n")
    monkeypatch.chdir(tmp_path)  # the file is found relative to the defaults folder
    config = load_config(defaults, ["configs/kfn.py", "--batch_size=16", "--model_type=kfn2"])
    assert config["batch_size"] == 16 and config["model_type"] == "kfn2"
    assert config["config_files"] == [str(defaults), str(defaults.parent / "configs" / "kfn.py")]
    config = load_config(defaults, ["configs/kfn.py"])
    assert config["batch_size"] == 8 and config["model_type"] == "kfn"


def test_command_line_literals_and_raw_strings(defaults):
    config = load_config(defaults, [
        "--lr_milestones=[10, 20]", "--window_side=[1, 2]", "--use_gaze=False", "--model_type=123",
        "--amp=bf16", "--pretrained_path=pretrained/r50.pth", "--extra={'b': 2}", "--end-epoch=3",
    ])
    assert config["lr_milestones"] == [10, 20]
    assert config["window_side"] == (1, 2)  # list accepted for a tuple key, stored as tuple
    assert config["use_gaze"] is False
    assert config["model_type"] == "123"  # a str key keeps the raw text
    assert config["amp"] == "bf16" and config["pretrained_path"] == "pretrained/r50.pth"
    assert config["extra"] == {"b": 2} and config["end_epoch"] == 3


def test_int_accepted_for_float_and_none_accepts_anything(defaults):
    config = load_config(defaults, ["--init_lr=1", "--pretrained_path=[1, 2]"])
    assert config["init_lr"] == 1.0 and type(config["init_lr"]) is float
    assert config["pretrained_path"] == [1, 2]


def test_unknown_key_suggests_closest(defaults, tmp_path):
    with pytest.raises(ConfigError, match=r"command line: unknown config key 'init_rl'; did you mean 'init_lr'\?"):
        load_config(defaults, ["--init_rl=0.1"])
    override = tmp_path / "typo.py"
    override.write_text("batchsize = 8\n")
    with pytest.raises(ConfigError, match=r"typo.py: unknown config key 'batchsize'; did you mean 'batch_size'"):
        load_config(defaults, [str(override)])


@pytest.mark.parametrize("argument, key, expected, got", [
    ("--batch_size=0.5", "batch_size", "int", "float 0.5"),
    ("--use_gaze=1", "use_gaze", "bool", "int 1"),  # a bool key rejects ints
    ("--batch_size=True", "batch_size", "int", "bool True"),
    ("--init_lr=True", "init_lr", "float", "bool True"),
    ("--init_lr=fast", "init_lr", "float", "str 'fast'"),
    ("--lr_milestones=50", "lr_milestones", "list", "int 50"),
])
def test_type_errors_name_key_source_and_value(defaults, argument, key, expected, got):
    with pytest.raises(ConfigError, match=rf"command line: config key '{key}' expects {expected} .*got {got}"):
        load_config(defaults, [argument])


def test_type_error_in_override_file_names_the_file(defaults, tmp_path):
    override = tmp_path / "bad.py"
    override.write_text("end_epoch = '150'\n")
    with pytest.raises(ConfigError, match=r"bad.py: config key 'end_epoch' expects int .*got str '150'"):
        load_config(defaults, [str(override)])


def test_bad_arguments(defaults):
    with pytest.raises(FileNotFoundError, match="missing.py"):
        load_config(defaults, ["missing.py"])
    with pytest.raises(ConfigError, match="expected --key=value"):
        load_config(defaults, ["--use_gaze"])
    with pytest.raises(ConfigError, match="expected an override file"):
        load_config(defaults, ["batch_size=3"])
    with pytest.raises(ConfigError, match="unknown config key 'config_files'"):
        load_config(defaults, ["--config_files=[]"])


def test_help_prefers_the_comment_beside_a_key_over_its_section_header(tmp_path):
    path = tmp_path / "config.py"
    path.write_text("# --- method\nmodel = 'gat'  # 'gat' | 'kfn'\n# --- data\nroot = 'data'\n# explained above\nsize = 3\n")
    text = config_help(path)
    assert "model = 'gat'  # 'gat' | 'kfn'" in text and "size = 3  # explained above" in text
    assert "root = 'data'\n" in text + "\n" and "---" not in text


def test_help_lists_keys_defaults_and_comments(defaults, capsys):
    text = config_help(defaults)
    assert "init_lr = 0.001  # learning rate of SGD (published value)" in text
    assert "batch_size = 6  # images per GPU" in text
    assert "pretrained_path = None" in text and "_private" not in text
    with pytest.raises(SystemExit) as stop:
        load_config(defaults, ["--help"])
    assert stop.value.code == 0 and "images per GPU" in capsys.readouterr().out


def test_save_config_writes_json_and_copies_files(defaults, tmp_path):
    override = tmp_path / "kfn.py"
    override.write_text("model_type = 'kfn'\n")
    config = load_config(defaults, [str(override), "--batch_size=8"])
    run_dir = tmp_path / "runs" / "cub" / "kfn"
    path = save_config(config, run_dir)
    saved = json.loads(path.read_text())
    assert saved["batch_size"] == 8 and saved["window_side"] == [128, 192, 256]
    assert (run_dir / "config.py").read_text() == defaults.read_text()
    assert (run_dir / "kfn.py").read_text() == "model_type = 'kfn'\n"
    assert not list(run_dir.glob(".*.tmp"))


def test_format_config_one_sorted_line_per_key():
    lines = format_config({"b": 1, "a_long_key": "x"}).splitlines()
    assert lines == ["a_long_key = 'x'", "b          = 1"]


def test_none_switches_off_a_str_key_but_not_a_number(tmp_path):
    defaults = tmp_path / "defaults.py"
    defaults.write_text("pretrain_path = 'weights.pth'\nbatch_size = 8\n")
    assert load_config(defaults, ["--pretrain_path=None"])["pretrain_path"] is None
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(defaults, ["--batch_size=None"])


def test_choices_are_checked_after_every_override_and_listed_by_help(defaults, capsys):
    choices = {"model_type": ["baseline", "gat", "kfn"]}
    assert load_config(defaults, ["--model_type=kfn"], choices=choices)["model_type"] == "kfn"
    with pytest.raises(ConfigError, match=r"model_type='unet': expected one of baseline, gat, kfn"):
        load_config(defaults, ["--model_type=unet"], choices=choices)
    with pytest.raises(SystemExit):
        load_config(defaults, ["--help"], choices=choices)
    assert "choices: 'baseline' | 'gat' | 'kfn'" in capsys.readouterr().out


def test_a_renamed_key_says_its_new_name(defaults, tmp_path):
    with pytest.raises(ConfigError, match=r"command line: config key 'model' is now 'model_type' \(e\.g\. --model_type='kfn'\)"):
        load_config(defaults, ["--model=kfn"], renamed={"model": "model_type"})
    old = tmp_path / "old.py"
    old.write_text("model = 'kfn'\n")
    with pytest.raises(ConfigError, match=r"old\.py: config key 'model' is now 'model_type'"):
        load_config(defaults, [str(old)], renamed={"model": "model_type"})


def test_check_numbers_rejects_text_for_a_key_whose_default_is_none():
    from gaze.config import check_numbers

    with pytest.raises(ConfigError, match=r"config key 'init_lr' = 'fast': expected a number > 0"):
        check_numbers({"init_lr": "fast"}, positive=("init_lr",))
    with pytest.raises(ConfigError, match=r"'workers' = True: expected a number >= 0"):
        check_numbers({"workers": True}, non_negative=("workers",))
    check_numbers({"init_lr": None, "input_hw": [64, 48]}, positive=("init_lr", "input_hw"))
