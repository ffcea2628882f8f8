"""``dnnsafety select``: choose the pool images worth labelling (the unsafe set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir
from dnnsafety.selection import SELECTORS


@click.command("select")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--strategy",
    type=RegistryChoice(SELECTORS),
    help="Selection strategy (default: closest, HUDD's ClosestU).",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    help="How many images to label (default: 3% of the pool).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed for random strategies.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path, strategy: str | None, budget: int | None, seed: int | None, settings: Any
) -> None:
    """Select the unlabeled pool images to label for retraining RUN_DIR's model.

    Writes selection/<strategy>/: the images, labels.csv to fill in (sample_id,label; a class
    name or index per row), classes.txt and selection.json; and the column
    selected.<strategy> of samples.parquet. Then run `dnnsafety retrain RUN_DIR --strategy
    <strategy> --labels selection/<strategy>/labels.csv`.
    """
    from dnnsafety.pipeline.labels import export_selection
    from dnnsafety.pipeline.retrain import RetrainSession, needs_analysis

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=tuple(settings))
    name = strategy or config.retrain.strategy
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        pipe.check_supported("select", (name,))
        if needs_analysis([name]):
            pipe.analyze()
        else:
            pipe.evaluate()
        session = RetrainSession(pipe)
        n = session.budget(budget)
        use_seed = config.seed if seed is None else seed
        selection = session.select(name, n, use_seed)
        pool = pipe.dataset["pool"]
        pos = {sid: i for i, sid in enumerate(pool.ids.astype(str).tolist())}
        index = torch.tensor([pos[str(s)] for s in selection.ids], dtype=torch.long)
        images = pool.images[index]
        csv_path = export_selection(
            run,
            name,
            selection,
            images,
            pipe.dataset.class_names,
            {"budget": n, "seed": use_seed},
        )
        session.record_selection(name, selection)
    click.echo(
        f"Selected {len(selection)} pool images with {name} (labels spent: {selection.cost}).\n"
        f"Label them in {csv_path} (images beside it), then run:\n"
        f"  dnnsafety retrain {run_dir} --strategy {name} --labels {csv_path}"
    )
