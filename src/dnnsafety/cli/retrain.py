"""``dnnsafety retrain``: fine-tune on the labelled unsafe set and show what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.cli.summary import print_before_after
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir
from dnnsafety.selection import SELECTORS


@click.command("retrain")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--labels",
    "labels_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The filled-in labels.csv written by `dnnsafety select`.",
)
@click.option(
    "--strategy",
    type=RegistryChoice(SELECTORS),
    help="Which selection the labels belong to (default: closest).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Retraining runs."
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path, labels_file: Path, strategy: str | None, seeds: int, settings: Any
) -> None:
    """Retrain RUN_DIR's model on train + the labelled selection (balanced per cluster).

    Writes retrained/<strategy>/model.pt (the first run's model as a state dict; also
    model.ts, TorchScript, when the run's model is TorchScript) and result.json (test
    accuracy overall, per scenario and per cluster, before and after, for every run).
    """
    from dnnsafety.pipeline.retrain_labels import retrain_with_labels

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=tuple(settings))
    name = strategy or config.retrain.strategy
    with run.lock(), run.logging_to_file():
        result = retrain_with_labels(Pipeline(run, config), name, labels_file, seeds)
    runs = result["runs"]
    print_before_after(f"Test accuracy before -> after retraining with {name}", result)
    click.echo(
        f"  improved {_mean(runs, 'improved'):.0f}, worsened {_mean(runs, 'worsened'):.0f} "
        "test inputs (mean per run)"
    )
    files = ", ".join(result["model_files"])
    click.echo(f"\nWrote {result['path']} (retrained model: {files}; result.json)")


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return sum(float(r[key]) for r in runs) / len(runs)
