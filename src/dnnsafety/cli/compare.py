"""``dnnsafety compare``: selection strategies side by side at one labelling budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import resolve_config
from dnnsafety.cli.summary import print_comparison
from dnnsafety.pipeline import Pipeline
from dnnsafety.report import render_report
from dnnsafety.runs import RunDir


@click.command("compare")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--strategies",
    help="Comma-separated strategies (default: closest,random,entropy,deepgini).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    help="Labels per strategy (default: 3% of the pool).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), help="Retraining runs per strategy (default: 5)."
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path,
    strategies: str | None,
    budget: int | None,
    seeds: int | None,
    settings: Any,
) -> None:
    """Compare unsafe-set selection strategies by retraining RUN_DIR's model with each.

    Labels come from the held-back pool labels (an experiment). Writes comparison.json
    (original and per-strategy, per-run test accuracy overall, on the rare scenarios, per
    scenario and per cluster; labelling cost; A12 and Mann-Whitney p between strategies) and
    the columns selected.<strategy> of samples.parquet.
    """
    from dnnsafety.retraining.experiment import NEEDS_SPACE, compare

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=tuple(settings))
    names = (
        [s.strip() for s in strategies.split(",") if s.strip()]
        if strategies
        else list(config.retrain.strategies)
    )
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        pipe.check_supported("compare", tuple(names))  # before the analysis
        if any(n in NEEDS_SPACE for n in names):
            pipe.analyze()
        else:
            pipe.evaluate()
        compare(pipe, names, budget, seeds)
    print_comparison(run_dir)
    click.echo(f"Report: {render_report(run_dir)}")
