"""A ``--set`` on an existing run is saved in its ``config.toml`` and used by every later
command: the command says so when it replaces a saved value, and how to restore it."""

from __future__ import annotations

import logging

from dnnsafety.cli.common import _set_text, resolve_config
from dnnsafety.cli.main import main
from dnnsafety.config import parse_value

LOGGER = logging.getLogger("dnnsafety.cli.common")


def test_a_set_that_replaces_a_saved_value_says_so_and_how_to_restore_it(tmp_path, caplog):
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), "--dataset", "digits", "--epochs", "1"]) == 0
    settings = (
        "retrain.epochs=2",
        "retrain.seeds=5",  # the saved value: nothing to say
        "retrain.params.adversarial={steps = 2}",  # a new table: saved too
    )
    LOGGER.addHandler(caplog.handler)  # the CLI's logging does not propagate to the root
    try:
        with caplog.at_level(logging.INFO, logger="dnnsafety.cli.common"):
            config = resolve_config(run, None, settings=settings)
    finally:
        LOGGER.removeHandler(caplog.handler)
    assert config.retrain.epochs == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("--set retrain.epochs=2 replaces 5: this command saves it in")
    assert "(--set retrain.epochs=5 restores it)" in lines[0]
    assert lines[1].startswith("--set retrain.params.adversarial={steps = 2}: this command")
    # a new run has nothing saved: nothing to say
    caplog.clear()
    LOGGER.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="dnnsafety.cli.common"):
            resolve_config(tmp_path / "new", None, settings=settings)
    finally:
        LOGGER.removeHandler(caplog.handler)
    assert not caplog.records


def test_the_restoring_set_text_reads_back_as_the_same_value():
    for value in (5, 0.001, True, "auto", "two words", [1, "a"], {"steps": 2, "loss": "trades"}):
        text = _set_text(value)
        assert text is not None and parse_value(text) == value
