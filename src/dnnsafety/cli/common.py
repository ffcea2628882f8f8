"""Shared CLI pieces: the options that describe a run, and config resolution."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dnnsafety.config import RunConfig, load_config, merge
from dnnsafety.exceptions import ConfigError
from dnnsafety.runs import CONFIG_FILE

F = Callable[..., Any]


def run_options(func: F) -> F:
    """Options shared by commands that build a run: config file, data, model, training."""
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A config.toml to start from (e.g. an edited copy of a run's config).",
        ),
        click.option("--dataset", help="Built-in dataset, 'folder' or 'npz' (see `datasets`)."),
        click.option(
            "--data-path", help="Image folder root or .npz file for --dataset folder/npz."
        ),
        click.option(
            "--image-size",
            type=click.IntRange(min=1),
            help="Resize images to this size (pixels).",
        ),
        click.option(
            "--arch", help="Model: small_cnn, alexnet, resnet, torchscript, export, onnx or import."
        ),
        click.option("--model-factory", help="module:callable that builds your nn.Module."),
        click.option(
            "--weights",
            help="Trained model file: state dict or checkpoint, TorchScript, .pt2 or .onnx.",
        ),
        click.option("--epochs", type=click.IntRange(min=1), help="Training epochs."),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            help="Random seed (data generation, training).",
        ),
        click.option(
            "--set",
            "settings",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any config value, e.g. --set train.lr=0.01 --set data.n_train=5000.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _parse_value(raw: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def resolve_config(
    run_dir: Path | None,
    config_file: Path | None,
    dataset: str | None = None,
    data_path: str | None = None,
    image_size: int | None = None,
    arch: str | None = None,
    model_factory: str | None = None,
    weights: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    settings: tuple[str, ...] = (),
    base: RunConfig | None = None,
) -> RunConfig:
    """Config from ``--config``, else the run folder's ``config.toml``, else defaults; then
    the command-line options on top."""
    if config_file is not None:
        config = load_config(config_file)
    elif run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        config = load_config(run_dir / CONFIG_FILE)
    else:
        config = base or RunConfig()
    overrides: dict[str, Any] = {
        "data.name": dataset,
        "data.path": data_path,
        "data.image_size": image_size,
        "model.arch": arch,
        "model.factory": model_factory,
        "model.weights": weights,
        "train.epochs": epochs,
        "seed": seed,
    }
    if model_factory and arch is None:
        overrides["model.arch"] = "import"
    for item in settings:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}.")
        key, raw = item.split("=", 1)
        overrides[key.strip()] = _parse_value(raw.strip())
    try:
        return merge(config, overrides)
    except KeyError as exc:
        raise ConfigError(f"Unknown config key {exc.args[0]!r} in --set.") from None
