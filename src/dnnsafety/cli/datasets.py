"""``dnnsafety datasets``: list the built-in datasets and data sources."""

from __future__ import annotations

import click

from dnnsafety.data.builtin import DATASETS


@click.command("datasets")
def command() -> None:
    """List the datasets you can pass to --dataset."""
    width = max(len(n) for n in DATASETS.names())
    for name in DATASETS.names():
        click.echo(f"{name:<{width}}  {DATASETS.describe(name)}")
