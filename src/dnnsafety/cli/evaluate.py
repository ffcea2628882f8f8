"""``dnnsafety evaluate``: predict every split and write the per-sample table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import resolve_config, run_options
from dnnsafety.cli.summary import print_metrics
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@run_options
def command(run_dir: Path, config_file: Path | None, **opts: Any) -> None:
    """Evaluate the model of RUN_DIR on every split.

    Writes samples.parquet (one row per sample: sample_id, split, label, pred, correct,
    confidence, scenario, prob.*, meta.*) and metrics.json. To evaluate your own trained model,
    pass --weights (and --arch/--model-factory) with a new RUN_DIR.
    """
    run = RunDir(run_dir)
    config = resolve_config(run_dir, config_file, **opts)
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        if pipe.needs_training:
            pipe.train()
        pipe.evaluate()
    print_metrics(run_dir)
    click.echo(f"\nWrote {run / 'samples.parquet'} and {run / 'metrics.json'}")
