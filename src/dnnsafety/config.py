"""Typed run configuration.

A run is described by one :class:`RunConfig`. It is saved, fully resolved, as ``config.toml`` in
every run folder; a user can edit that file and run again with ``--config``. Unknown keys are
rejected with the list of valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import tomli_w

from dnnsafety.exceptions import ConfigError


@dataclass
class DataConfig:
    """Where the images come from.

    ``name`` is a built-in dataset (``signs``, ``fashion-mnist``, ``digits``), ``folder``
    (``path`` = root of ``<split>/<class>/<file>``) or ``npz`` (``path`` = an ``.npz`` file).
    Sizes of 0 mean "the dataset's default".
    """

    name: str = "signs"
    path: str = ""
    image_size: int = 0
    channels: int = 0
    metadata_csv: str = ""
    skip_bad_files: bool = False
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    n_pool: int = 0
    scenarios: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Which model to train or load.

    ``arch`` is a zoo name (``small_cnn``, ``alexnet``, ``resnet``), ``torchscript`` (``weights``
    = a TorchScript file) or ``import`` (``factory`` = ``module:callable`` building the module,
    ``weights`` = a state-dict file read with ``weights_only=True``).
    """

    arch: str = "small_cnn"
    factory: str = ""
    weights: str = ""


@dataclass
class TrainConfig:
    """Training hyper-parameters (used by ``train`` and ``demo``)."""

    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    select_by: str = "val"
    threads: int = 0


@dataclass
class AnalysisConfig:
    """White-box root-cause analysis (HUDD, METHOD.md §2 steps 1-7).

    ``mode = "default"`` uses the improved behaviour; ``"hudd-compat"`` the released tool's.
    Empty ``ruleset`` / ``k_rule`` / ``selection`` follow the mode:

    ========================  ===============  ===============
    setting                   default          hudd-compat
    ========================  ===============  ===============
    ruleset (LRP rules)       ``default``      ``hudd``
    k_rule (number of RCCs)   ``hudd`` (knee)  ``hudd`` (knee)
    selection (layer choice)  ``default``      ``compat``
    ========================  ===============  ===============

    ``layers`` names the candidate layers (empty: inputs of every conv, linear and pooling
    module).
    """

    mode: str = "default"
    ruleset: str = ""
    k_rule: str = ""
    selection: str = ""
    layers: list[str] = field(default_factory=list)
    split: str = "test"
    batch_size: int = 64

    def resolved(self) -> dict[str, str]:
        """The effective rule set, k rule and layer selection."""
        if self.mode not in ("default", "hudd-compat"):
            raise ConfigError(
                f"analysis.mode must be 'default' or 'hudd-compat'. Got {self.mode!r}."
            )
        compat = self.mode == "hudd-compat"
        return {
            "ruleset": self.ruleset or ("hudd" if compat else "default"),
            "k_rule": self.k_rule or "hudd",
            "selection": self.selection or ("compat" if compat else "default"),
        }


@dataclass
class RunConfig:
    """Everything that determines a run's results."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        """One section as a plain dict (used to fingerprint stages)."""
        value = getattr(self, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return {name: value}


T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"Config section [{where}] must be a table, got {value!r}.")
        return from_dict(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"Config key {where!r} must be a list, got {value!r}.")
        (item_hint,) = typing.get_args(hint)
        return [_coerce(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"Config key {where!r} must be a table, got {value!r}.")
        _, val_hint = typing.get_args(hint)
        return {str(k): _coerce(v, val_hint, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"Config key {where!r} has an invalid value {value!r}.")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and type(value) is hint:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"Config key {where!r} must be of type {name}; got {value!r}.")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build the dataclass ``cls`` from a plain dict, rejecting unknown keys."""
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    if unknown:
        place = f" in [{where}]" if where else ""
        raise ConfigError(
            f"Unknown config key(s) {', '.join(unknown)}{place}. "
            f"Valid keys: {', '.join(sorted(fields))}."
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML configuration file (for example a run folder's ``config.toml``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file {str(p)!r} does not exist.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {str(p)!r} is not valid TOML: {exc}") from None
    return from_dict(RunConfig, data)


def dump_config(config: RunConfig) -> str:
    """The configuration as TOML text."""
    header = "# dnnsafety run configuration (resolved). Edit and re-run with --config this_file.\n"
    return header + tomli_w.dumps(config.to_dict())


def merge(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply dotted-key overrides such as ``{"train.epochs": 3}``; ``None`` values are ignored."""
    data = config.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return from_dict(RunConfig, data)
