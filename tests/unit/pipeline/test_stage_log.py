"""A stage run once and then asked for again by a later step of the same command (the demo:
evaluate, then analyze, which needs the evaluation) is logged once, not as 'done' and then
'reused' on the next line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dnnsafety.config import RunConfig
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


def test_a_stage_asked_for_twice_in_one_command_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = RunConfig()
    config.data.name = "digits"
    config.train.epochs = 1
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        pipe = Pipeline(RunDir(tmp_path / "run"), config)
        pipe.train()
        pipe.evaluate()
        pipe.evaluate()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage ")]
    assert [line.split()[1] for line in lines] == ["train", "evaluate"], lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dnnsafety"):  # a later command: reused, said
        Pipeline(RunDir(tmp_path / "run"), config).evaluate()
    assert any("stage evaluate reused" in r.getMessage() for r in caplog.records)
