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
@click.option(
    "--pool-store",
    type=click.Path(exists=True, path_type=Path),
    help="Select from this pool instead of the run's: a pool store (.zarr), an .npz with "
    "x_pool, or an image folder; read chunk by chunk (docs/scale.md).",
)
@click.option(
    "--scheduler",
    help="Where --pool-store chunks run: local, threads, processes or tcp://host:port "
    "(default: compute.scheduler).",
)
def command(
    run_dir: Path,
    strategy: str | None,
    budget: int | None,
    seed: int | None,
    settings: Any,
    pool_store: Path | None = None,
    scheduler: str | None = None,
) -> None:
    """Select the unlabeled pool images to label for retraining RUN_DIR's model.

    Writes selection/<strategy>/: the images, labels.csv to fill in (sample_id,label; a class
    name or index per row), classes.txt and selection.json; and the column
    selected.<strategy> of samples.parquet. Then run `dnnsafety retrain RUN_DIR --strategy
    <strategy> --labels selection/<strategy>/labels.csv`.
    """
    from dnnsafety.pipeline.labels import export_selection
    from dnnsafety.pipeline.retrain import RetrainSession
    from dnnsafety.pipeline.strategies import needs_analysis

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
        use_seed = config.seed if seed is None else seed
        if pool_store is not None:
            csv_path = _select_from_store(pipe, name, pool_store, budget, use_seed, scheduler)
            click.echo(f"Label the selected images in {csv_path} (images beside it).")
            return
        session = RetrainSession(pipe)
        n = session.budget(budget)
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


def _select_from_store(
    pipe: Pipeline,
    name: str,
    path: Path,
    budget: int | None,
    seed: int,
    scheduler: str | None,
) -> Path:
    """``select --pool-store``: the chunked path (pipeline/scale.py) over a lazily read pool."""
    import math

    from dnnsafety.compute import make_executor
    from dnnsafety.data.pool import open_pool
    from dnnsafety.pipeline.labels import export_selection
    from dnnsafety.pipeline.retrain import DEFAULT_BUDGET_SHARE
    from dnnsafety.pipeline.scale import select_from_pool

    pool = open_pool(path)
    compute = pipe.config.compute
    n = budget or pipe.config.retrain.budget or math.ceil(DEFAULT_BUDGET_SHARE * len(pool))
    n = min(n, len(pool))
    with make_executor(scheduler or compute.scheduler, compute.workers) as executor:
        selection, rows = select_from_pool(pipe, name, pool, n, seed, executor)
        used = executor.scheduler
    meta = {"budget": n, "seed": seed, "pool": str(Path(path).resolve()), "scheduler": used}
    csv_path = export_selection(
        pipe.run, name, selection, pool.images.take(rows), pipe.dataset.class_names, meta
    )
    click.echo(
        f"Selected {len(selection)} of {len(pool)} images of {path} with {name} "
        f"(scheduler: {used})."
    )
    return csv_path
