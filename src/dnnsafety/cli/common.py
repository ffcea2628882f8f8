"""Shared CLI pieces: the options that describe a run, and config resolution."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from dnnsafety.config import RunConfig, load_config, merge, parse_overrides
from dnnsafety.data.builtin import DATASETS
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.loading import FILE_ARCHS
from dnnsafety.models.zoo import MODELS
from dnnsafety.registry import Registry
from dnnsafety.runs import CONFIG_FILE

log = logging.getLogger(__name__)

F = Callable[..., Any]


class RegistryChoice(click.ParamType):
    """A name from a registry (plus ``extra`` names), checked when the command line is parsed.

    The names are read from the registry when needed, so plug-ins registered after the CLI was
    imported count too; help and shell completion list them. An unknown name raises the
    registry's :class:`ConfigError` naming the valid ones (``error: Unknown dataset 'x'. Choose
    one of: ...``). With ``many``, the value is a comma-separated list of names.
    """

    def __init__(
        self,
        registry: Registry[Any],
        extra: Sequence[str] = (),
        many: bool = False,
        also: Sequence[Registry[Any]] = (),
    ) -> None:
        self.registry = registry
        self.extra = tuple(extra)
        self.many = many
        self.also = tuple(also)
        self.name = registry.kind

    @property
    def choices(self) -> list[str]:
        """Every valid name: the registry's, those of the ``also`` registries, then ``extra``."""
        names = [*self.registry.names()]
        for other in self.also:
            names += [n for n in other.names() if n not in names]
        return [*names, *(e for e in self.extra if e not in names)]

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        joined = "|".join(self.choices)
        return f"[{joined}][,...]" if self.many else f"[{joined}]"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(c) for c in self.choices if c.startswith(incomplete)]

    def _check(self, name: str) -> str:
        if name not in self.choices:
            known = ", ".join(self.choices)
            raise ConfigError(f"Unknown {self.registry.kind} {name!r}. Choose one of: {known}.")
        return name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if not self.many:
            return self._check(value)
        return ",".join(self._check(n.strip()) for n in value.split(",") if n.strip())


DATASET_CHOICE = RegistryChoice(DATASETS)
ARCH_CHOICE = RegistryChoice(MODELS, extra=(*FILE_ARCHS, "import"))


def run_options(func: F) -> F:
    """Options shared by commands that build a run: config file, data, model, training."""
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A config.toml to start from (e.g. an edited copy of a run's config).",
        ),
        click.option(
            "--dataset",
            type=DATASET_CHOICE,
            help="Built-in dataset, 'folder' or 'npz' (see `datasets`).",
        ),
        click.option(
            "--data-path", help="Image folder root or .npz file for --dataset folder/npz."
        ),
        click.option(
            "--image-size",
            type=click.IntRange(min=1),
            help="Resize images to this size (pixels).",
        ),
        click.option(
            "--arch",
            type=ARCH_CHOICE,
            help="Model: a built-in architecture, a model file (torchscript, export, onnx) or "
            "import (--model-factory).",
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


_ABSENT = object()


def _config_value(config: RunConfig, key: str) -> Any:
    """The value at a dotted ``key`` of ``config`` (tables are dicts), or :data:`_ABSENT`."""
    value: Any = config
    for part in key.split("."):
        try:
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        except (KeyError, AttributeError, TypeError):
            return _ABSENT
    return value


def _set_text(value: Any) -> str | None:
    """``value`` as ``--set`` would take it (the inverse of :func:`parse_value`), or ``None``
    for a value of another kind (a plug-in table object)."""
    from dnnsafety.config import parse_value

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value if parse_value(value) == value else f'"{value}"'
    if isinstance(value, list):
        items = [_set_text(v) for v in value]
        return None if None in items else "[" + ", ".join(str(i) for i in items) + "]"
    if isinstance(value, dict):
        pairs = {k: _set_text(v) for k, v in value.items()}
        if None in pairs.values():
            return None
        return "{" + ", ".join(f"{k} = {v}" for k, v in pairs.items()) + "}"
    return None


def _say_saved_changes(config: RunConfig, given: Mapping[str, Any], path: Path) -> None:
    """Say which ``--set`` values change the run's saved configuration: the command saves them
    in ``config.toml``, so every later command on the run uses them too."""
    for key, value in given.items():
        old = _config_value(config, key)
        after = _set_text(value)
        if after is None or old == value:
            continue
        if old is _ABSENT:
            log.info(
                "--set %s=%s: this command saves it in %s, so later commands on this run use "
                "it too",
                key,
                after,
                path,
            )
            continue
        before = _set_text(old)
        if before is None:
            continue
        restore = f"--set {key}={before}"
        if any(c in before for c in ' {}[]"'):
            restore = f"--set '{key}={before}'"
        log.info(
            "--set %s=%s replaces %s: this command saves it in %s, so later commands on this "
            "run use the new value too (%s restores it)",
            key,
            after,
            before,
            path,
            restore,
        )


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
    settings: Iterable[str] = (),
    base: RunConfig | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Config from ``--config``, else the run folder's ``config.toml``, else defaults; then
    the command-line options on top: the run options, ``--set KEY=VALUE`` items (typed by
    :func:`~dnnsafety.config.parse_value`), and last ``overrides``, a dict of dotted keys to
    values that a command's own options set (passed as they are, never re-parsed)."""
    saved = False
    if config_file is not None:
        config = load_config(config_file)
    elif run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        config = load_config(run_dir / CONFIG_FILE)
        saved = True
    else:
        config = base or RunConfig()
    changes: dict[str, Any] = {
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
        changes["model.arch"] = "import"
    given = parse_overrides(settings)
    if saved and run_dir is not None:
        _say_saved_changes(config, given, run_dir / CONFIG_FILE)
    changes.update(given)
    changes.update(overrides or {})
    try:
        return merge(config, changes)
    except KeyError as exc:
        raise ConfigError(f"Unknown config key {exc.args[0]!r} in --set.") from None
