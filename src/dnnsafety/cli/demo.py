"""``dnnsafety demo``: the main job on the built-in traffic-sign simulator."""

from __future__ import annotations

import time
from pathlib import Path

import click

from dnnsafety.cli.common import resolve_config
from dnnsafety.cli.summary import print_clusters, print_metrics
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


@click.command("demo")
@click.option(
    "--out",
    default=Path("runs/demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder.",
)
@click.option("--dataset", default="signs", show_default=True, help="Built-in dataset to use.")
@click.option("--seed", type=int, default=0, show_default=True)
def command(out: Path, dataset: str, seed: int) -> None:
    """Train the default model on a built-in dataset, evaluate it, and explain its failures.

    The training set under-represents some conditions (at night, in fog, occluded, tilted);
    the test set has many of them, so the accuracy table shows which scenarios break the model.
    The analysis then groups the test errors into root-cause clusters by their LRP heatmaps.
    """
    t0 = time.perf_counter()
    run = RunDir(out)
    config = resolve_config(None, None, dataset=dataset, seed=seed)
    with run.logging_to_file():
        pipe = Pipeline(run, config)
        pipe.train()
        pipe.evaluate()
        pipe.analyze()
    print_metrics(out)
    print_clusters(out)
    click.echo(f"\nDemo finished in {time.perf_counter() - t0:.0f}s. Results in {out}/")
