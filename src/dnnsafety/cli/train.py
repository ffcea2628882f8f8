"""``dnnsafety train``: train a model on a dataset into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import resolve_config, run_options
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


@click.command("train")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder to create or resume.",
)
@run_options
def command(out: Path, config_file: Path | None, **opts: Any) -> None:
    """Train a model and save it (with config, log and checkpoints) in --out.

    Re-running with the same options reuses the trained model; an interrupted training run
    resumes from its last finished epoch.
    """
    run = RunDir(out)
    config = resolve_config(out, config_file, **opts)
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        outcome = pipe.train()
    word = "reused" if outcome.skipped else "trained"
    click.echo(f"Model {word}: {run / 'model.pt'}  (config: {run / 'config.toml'})")
