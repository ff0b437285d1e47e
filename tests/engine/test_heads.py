"""gaze/engine/heads.py: the head chosen on validation, scored once on test; eval_results.txt."""

from __future__ import annotations

import json

from gaze.engine.heads import choose_head, head_accuracies, report_heads

VAL = {"top1_layer1": 40.0, "top3_layer1": 70.0, "top1_combiner": 55.0, "top3_combiner": 80.0,
       "top1_highest-1": 50.0, "top3_highest-1": 75.0, "attention_iou": 0.2, "top1": 55.0, "num_samples": 20}
TEST = {"top1_layer1": 60.0, "top3_layer1": 90.0, "top1_combiner": 52.5, "top3_combiner": 85.0,
        "top1_highest-1": 57.125, "top3_highest-1": 88.0, "top1": 52.5, "num_samples": 40}


def test_head_accuracies_reads_the_head_metrics_only():
    table = head_accuracies(VAL)
    assert list(table) == ["layer1", "combiner", "highest-1"]
    assert table["combiner"] == {"top1": 55.0, "top3": 80.0}
    assert head_accuracies({"top1": 50.0, "attention_iou": 0.3}) == {} and head_accuracies(None) == {}


def test_the_head_is_chosen_on_validation_not_on_test(tmp_path):
    assert choose_head(head_accuracies(VAL)) == "combiner"  # test would have picked layer1 (60 %)
    assert choose_head({"a": {"top1": 5.0}, "b": {"top1": 5.0}}) == "a"  # ties: the model's order
    lines = report_heads(TEST, VAL, tmp_path, "cub", "pim_demo")
    assert lines[-2] == ("head chosen on validation: combiner (val top-1 55.00%) -> test top-1 52.50%, top-3 85.00%")
    assert lines[-1] == "(the published pick, chosen on test: layer1-top-1 60.00%)"
    assert lines[0] == "head layer1: val top-1 40.00%, test top-1 60.00%, top-3 90.00%"
    text = (tmp_path / "eval_results.txt").read_text().splitlines()
    assert text[:4] == ["[Evaluation Results]", "Project: cub, Experiment: pim_demo", "Samples: 40", ""]
    assert text[4:10] == ["    layer1-top-1 60.000%", "    layer1-top-3 90.000%", "    combiner-top-1 52.500%",
                          "    combiner-top-3 85.000%", "    highest-1-top-1 57.125%", "    highest-1-top-3 88.000%"]
    assert text[11].startswith("BEST_ACC: layer1-top-1 60.000% (as published")
    assert text[12] == "CHOSEN_ON_VALIDATION: combiner-top-1 val 55.000% -> test 52.500%"
    assert json.loads((tmp_path / "heads.json").read_text())["chosen_on_val"] == "combiner"


def test_a_one_head_model_writes_nothing(tmp_path):
    assert report_heads({"top1": 50.0, "num_samples": 3}, None, tmp_path, "p", "e") == []
    assert list(tmp_path.iterdir()) == []


def test_without_validation_only_the_published_pick_is_named(tmp_path):
    lines = report_heads(TEST, None, tmp_path, "p", "e")
    assert not any("chosen on validation" in line for line in lines)
    assert "CHOSEN_ON_VALIDATION" not in (tmp_path / "eval_results.txt").read_text()
