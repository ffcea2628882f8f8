"""A bad mitigation parameter set once with --set is saved in the run's config.toml and
comes back in later commands: the error says where it lives and how to replace it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnnsafety.cli.main import main

FAST = ["--epochs", "1", "--set", "train.batch_size=64"]


def test_a_bad_saved_mitigation_parameter_names_its_table_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), "--dataset", "digits", *FAST]) == 0
    argv = ["compare", str(run), "--strategies", "adversarial", "--seeds", "1"]
    bad = 'retrain.params.adversarial={loss = "trades", beta = -1}'
    assert main([*argv, "--set", bad]) != 0
    first = capsys.readouterr().err
    assert "'beta' parameter of AdversarialFineTuning" in first
    # the next command without --set fails the same way: the value was saved
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "'beta' parameter of AdversarialFineTuning" in err
    assert "[retrain.params.adversarial]" in err and str(run / "config.toml") in err
    assert "--set 'retrain.params.adversarial={" in err


def test_a_parameter_the_mitigation_does_not_take_fails_before_any_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), "--dataset", "digits", *FAST]) == 0
    argv = ["compare", str(run), "--strategies", "random,adversarial", "--seeds", "1"]
    assert main([*argv, "--set", "retrain.params.adversarial={betta = 1.5}"]) != 0
    err = capsys.readouterr().err
    assert "takes no parameter(s) betta" in err and "beta" in err
    assert "[retrain.params.adversarial]" in err
    assert "selection 1/1" not in (run / "run.log").read_text()
