"""``compare``'s time estimate counts the attack that adversarial fine-tuning runs on every
batch (TRADES: 1 epoch of a 2000-image signs run took 19.2 s against 2.9 s for a plain one)."""

from __future__ import annotations

import json
from pathlib import Path

from dnnsafety.cli.compare import cost_lines


def _history(run: Path) -> None:
    history = [{"epoch": 1, "seconds": 3.0}, {"epoch": 2, "seconds": 3.0}]
    (run / "training.json").write_text(json.dumps({"history": history}))


def test_adversarial_epochs_count_their_attack_steps(tmp_path: Path) -> None:
    _history(tmp_path)
    plain = cost_lines(tmp_path, ["random"], 1, 1)[1]
    assert "about 6 s (2 x 1 epochs x 3.0s per epoch of the original training)" in plain
    trades = {"adversarial": {"loss": "trades", "steps": 7}}
    line = cost_lines(tmp_path, ["adversarial"], 1, 1, trades)[1]
    # control 1 + TRADES (7 attack steps + training on twice the rows) 9 = 10 epochs of 3 s
    assert "about 30 s" in line and "adversarial 9.0x" in line
    pgd = cost_lines(tmp_path, ["adversarial"], 1, 1, {"adversarial": {"steps": 4}})[1]
    assert "about 12 s" in pgd and "adversarial 3.0x" in pgd  # control 1 + (1 + 0.5 * 4)
    # a parameter the mitigation refuses: no guess, the run itself says what is wrong
    bad = cost_lines(tmp_path, ["adversarial"], 1, 1, {"adversarial": {"loss": "x", "steps": 0}})
    assert "about 6 s" in bad[1]


def test_robust_accuracy_adds_one_pgd10_attack_per_model(tmp_path: Path) -> None:
    # 3 s per epoch of 1,000 training images; PGD-10 = 11 forward and backward passes, so 100
    # attacked inputs cost 1,100 image passes = 1.1 epochs = 3.3 s, for the 2 fine-tuned
    # models (random, the control) and the original
    _history(tmp_path)
    sizes = {"train": {"n": 1000}, "test": {"n": 400}}
    (tmp_path / "dataset.json").write_text(json.dumps(sizes))
    line = cost_lines(tmp_path, ["random"], 1, 1, None, robust_n=100)[1]
    assert "about 16 s" in line  # 6 s of fine-tuning + 3 x 3.3 s
    assert "PGD-10 on 100 test inputs for each of 3 models, about 3.3s each" in line
    capped = cost_lines(tmp_path, ["random"], 1, 1, None, robust_n=5000)[1]
    assert "on 400 test inputs" in capped  # the attacked subset is capped by the test split
    assert "about 6 s" in cost_lines(tmp_path, ["random"], 1, 1)[1]  # not measured: no cost


def test_a_model_trained_elsewhere_says_why_there_is_no_estimate(tmp_path: Path) -> None:
    lines = cost_lines(tmp_path, ["random"], 1, 1)  # no training.json: an own model
    assert lines[1].startswith("No time estimate: the model was not trained in this run")
    assert not any(line.startswith("Estimated time") for line in lines)
