"""``dnnsafety env``: versions and hardware, to paste into bug reports."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import click

PACKAGES = (
    "dnnsafety",
    "torch",
    "torchvision",
    "zennit",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "pillow",
    "click",
    "tqdm",
)


@click.command("env")
def command() -> None:
    """Print versions of Python, dnnsafety and its dependencies, and the hardware."""
    import torch

    click.echo(f"python       {platform.python_version()} ({platform.platform()})")
    for pkg in PACKAGES:
        try:
            version = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        click.echo(f"{pkg:<12} {version}")
    click.echo(f"cpu cores    {os.cpu_count()} (torch threads {torch.get_num_threads()})")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        click.echo(f"cuda         {torch.version.cuda}: {', '.join(names)}")
    else:
        click.echo("cuda         not available (CPU only)")
