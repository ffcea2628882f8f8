"""``dnnsafety analyze``: group the model's errors into root-cause clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import resolve_config
from dnnsafety.cli.summary import print_clusters
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


@click.command("analyze")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["default", "hudd-compat"]),
    help="Improved default, or the released HUDD tool's behaviour.",
)
@click.option("--layers", help="Comma-separated layer names (default: every conv/linear/pool).")
@click.option("--split", help="Which split's errors to analyse (default: test).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path, mode: str | None, layers: str | None, split: str | None, settings: Any
) -> None:
    """Cluster the error-inducing inputs of RUN_DIR by their LRP heatmaps (HUDD).

    Writes clusters.json, the column `cluster` of samples.parquet, and under analysis/: the
    per-layer table (layers.json), WICD plots and a contact sheet per cluster.
    """
    run = RunDir(run_dir, create=False)
    extra = list(settings)
    if mode:
        extra.append(f"analysis.mode={mode!r}")
    if split:
        extra.append(f"analysis.split={split!r}")
    if layers:
        names = [f"{name.strip()!r}" for name in layers.split(",") if name.strip()]
        extra.append(f"analysis.layers=[{', '.join(names)}]")
    config = resolve_config(run_dir, None, settings=tuple(extra))
    with run.logging_to_file():
        Pipeline(run, config).analyze()
    print_clusters(run_dir)
