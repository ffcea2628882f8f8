"""``dnnsafety datasets``: list the built-in datasets and data sources; write pool stores."""

from __future__ import annotations

from pathlib import Path

import click

from dnnsafety.data.builtin import DATASETS

POOL_SIMULATORS = ("signs",)


@click.command("datasets")
@click.option(
    "--write-pool",
    type=click.Choice(POOL_SIMULATORS),
    help="Render a simulated pool of --n images into the pool store --out (chunk by chunk).",
)
@click.option(
    "--convert-pool",
    type=click.Path(exists=True, path_type=Path),
    help="Copy a pool (.npz with x_pool, or an image folder) into the pool store --out.",
)
@click.option("--n", "n", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="The pool store to write (.zarr).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--image-size", type=click.IntRange(8, 256), default=32, show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["uint8", "float16", "float32"]),
    default="uint8",
    show_default=True,
    help="How pixels are stored.",
)
@click.option("--chunk-rows", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option(
    "--scheduler",
    default="local",
    show_default=True,
    help="local, threads, processes or tcp://host:port: where the rendering tasks run.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
def command(
    write_pool: str | None = None,
    convert_pool: Path | None = None,
    n: int = 100_000,
    out: Path | None = None,
    seed: int = 0,
    image_size: int = 32,
    dtype: str = "uint8",
    chunk_rows: int = 4096,
    scheduler: str = "local",
    overwrite: bool = False,
) -> None:
    """List the datasets you can pass to --dataset, or write a pool store (docs/scale.md)."""
    if write_pool is None and convert_pool is None:
        width = max(len(n) for n in DATASETS.names())
        for name in DATASETS.names():
            click.echo(f"{name:<{width}}  {DATASETS.describe(name)}")
        return
    if out is None:
        raise click.UsageError("Pass --out pool.zarr: the store to write.")
    from dnnsafety.compute import make_executor
    from dnnsafety.data import pool

    if convert_pool is not None:
        source = pool.open_pool(convert_pool)
        store = pool.convert_pool(
            source.images, source.ids, out, dtype=dtype, chunk_rows=chunk_rows, overwrite=overwrite
        )
    else:
        with make_executor(scheduler) as executor:
            store = pool.write_signs_pool(
                out,
                n,
                seed=seed,
                size=image_size,
                dtype=dtype,
                chunk_rows=chunk_rows,
                executor=executor,
                overwrite=overwrite,
            )
    click.echo(f"Wrote {len(store)} images to the pool store {out}.")
