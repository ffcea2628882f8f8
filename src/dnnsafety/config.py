"""Typed run configuration.

A run is described by one :class:`RunConfig`. It is saved, fully resolved, as ``config.toml`` in
every run folder; a user can edit that file and run again with ``--config``. Unknown keys are
rejected with the list of valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
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
    Sizes of 0 mean "the dataset's default". A dataset without a validation split (an image
    folder without ``val/``, an ``.npz`` without ``x_val``) gets one of ``val_fraction`` of its
    training images (stratified by class, drawn with ``seed``; 0: no validation split).
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
    val_fraction: float = 0.1
    scenarios: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Which model to train or load.

    ``arch`` is a zoo name (``small_cnn``, ``alexnet``, ``resnet``), ``torchscript`` (``weights``
    = a TorchScript file), ``export`` (``weights`` = a ``torch.export.save`` file, ``.pt2``),
    ``onnx`` (``weights`` = an ``.onnx`` file) or ``import`` (``factory`` = ``module:callable``
    building the module, ``weights`` = a state-dict or checkpoint file read with
    ``weights_only=True``).

    ``classes`` lists the class names in the order of the model's outputs (output ``i`` is
    ``classes[i]``); ``classes_file`` names a text file with one class name per line. When
    neither is set, a ``classes.txt`` next to ``weights`` or at the image folder's root is used,
    else the data's own order (sorted folder names for image folders). ``output`` says what the
    model returns: ``auto`` (detect), ``logits``, ``probs`` or ``log_probs``.
    """

    arch: str = "small_cnn"
    factory: str = ""
    weights: str = ""
    classes: list[str] = field(default_factory=list)
    classes_file: str = ""
    output: str = "auto"


@dataclass
class TrainConfig:
    """Training hyper-parameters (used by ``train`` and ``demo``).

    ``schedule`` is the learning-rate schedule: ``"constant"`` or ``"cosine"`` (per batch, from
    ``lr`` down to 0 at the end of the last epoch).
    """

    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    select_by: str = "val"
    schedule: str = "constant"
    threads: int = 0


@dataclass
class PluginConfig:
    """A plug-in chosen by name with its constructor parameters: ``{name, params}``.

    In TOML either a table or, for the defaults, just the name::

        [analysis.cluster]
        name = "hdbscan"
        params = { min_cluster_size = 10 }

        # the same with default parameters, the form older config.toml files hold
        cluster = "hdbscan"

    On the command line: ``--set analysis.cluster.params.min_cluster_size=10``. ``str()`` of
    it is the name, so logs and ``clusters.json`` read as before.
    """

    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def of(cls, value: str | PluginConfig) -> PluginConfig:
        """``value`` as a :class:`PluginConfig` (a bare name gets default parameters)."""
        return value if isinstance(value, PluginConfig) else cls(name=str(value))


@dataclass
class AnalysisConfig:
    """Root-cause analysis: black-box by default, white-box (HUDD, METHOD.md §2 steps 1-7) on
    request.

    ``mode = "default"`` uses the improved behaviour; ``"hudd-compat"`` the released tool's.
    Empty ``ruleset`` / ``k_rule`` / ``selection`` follow the mode:

    ========================  ===============  ===============
    setting                   default          hudd-compat
    ========================  ===============  ===============
    ruleset (LRP rules)       ``default``      ``hudd``
    k_rule (number of RCCs)   ``hudd`` (knee)  ``hudd`` (knee)
    gradient ends (k knee)    4th-order        1st differences
    selection (layer choice)  ``default``      ``compat``
    ========================  ===============  ===============

    ``layers`` names the candidate layers (empty: inputs of every conv, linear and pooling
    module).

    The default analysis is black-box: ``features = "backbone"`` (MobileNetV2's pooled embedding
    with its block 13 pooled beside it: ``BackboneFeatures.blocks``), ``reduce = "umap"``,
    ``cluster = "guarded"`` (DBSCAN, then any cluster holding more than half the errors is split
    per true class and within it by silhouette: ``dnnsafety.clustering.guard``). It scored
    the highest per-cause F1 and purity of the candidates measured on the corruption and
    semantic-subtype benchmarks (``benchmarks/results/default_analysis*.md``).
    An empty ``features`` (``--features hudd``), ``--layers`` or ``--mode`` run the white-box
    analysis (HUDD) below, unchanged; so does ``mode = "hudd-compat"``.

    Black-box analysis (SAFE, METHOD.md §3): a non-empty ``features`` (a name from
    ``dnnsafety.features.FEATURE_SOURCES``: ``backbone``, ``activations``, ``autoencoder``,
    ``heatmaps``, ``pixels``) replaces the HUDD path by features -> ``reduce`` (``none``,
    ``pca``, ``umap``) -> ``cluster`` (``dbscan``, ``hdbscan``, ``kmeans``, ``ward``).
    ``features``, ``reduce`` and ``cluster`` are :class:`PluginConfig` tables ``{name,
    params}``: the parameters go to the feature source's, reducer's or clusterer's
    constructor (``--set analysis.cluster.params.min_cluster_size=10``,
    ``--set analysis.features.params.latent=16``); a plain name (``cluster = "dbscan"``,
    ``features = "backbone"``) still loads.
    ``backbone`` / ``backbone_weights`` / ``image_size`` / ``feature_layer`` are offered to
    the feature source as its ``arch`` / ``weights`` / ``image_size`` / ``layer`` parameters
    when it takes them (``analysis.features.params`` override them): they configure the
    pretrained backbone (empty weights: the bundled MobileNetV2 ImageNet weights;
    ``image_size`` is the side the images are resized to: 224, what ImageNet models expect,
    separated the Fashion-MNIST scenarios much better than 128, which runs about twice as
    fast) and the layer of the ``heatmaps`` features (empty: the last candidate layer).
    """

    mode: str = "default"
    ruleset: str = ""
    k_rule: str = ""
    selection: str = ""
    layers: list[str] = field(default_factory=list)
    split: str = "test"
    batch_size: int = 64
    features: str | PluginConfig = "backbone"
    reduce: PluginConfig = field(default_factory=lambda: PluginConfig("umap"))
    cluster: PluginConfig = field(default_factory=lambda: PluginConfig("guarded"))
    backbone: str = "mobilenet_v2"
    backbone_weights: str = ""
    image_size: int = 224
    feature_layer: str = ""

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
class RetrainConfig:
    """Unsafe-set selection and retraining (METHOD.md §2 steps 8-12).

    ``budget`` is the number of pool images to label (0: 3% of the pool). ``quota_factor`` is
    ClosestU's f (quota per cluster = ceil(f * members)). Fine-tuning starts from the original
    weights (``from_scratch = false``) on train + the balanced bag with SGD as the HUDD tool
    (lr 1e-3, momentum 0.9, weight decay 5e-4, batch 128); the best epoch is chosen on the
    validation split (``select_by = "train"`` for the tool's behaviour). ``seeds`` runs are
    repeated per strategy with seeds ``seed, seed+1, ...``; the bag is re-drawn for each run.
    ``params`` holds parameters per strategy name (``[retrain.params.jtt]`` ``lambda_up = 20``;
    on the command line ``--set 'retrain.params.jtt={lambda_up = 20}'``).
    ``robust`` says when ``compare`` also scores every model's robust accuracy (PGD-10 on
    ``robust_n`` test inputs): ``auto`` when a compared strategy trains against an attack (at
    its budget), ``always`` (at that budget, else 8/255), ``never``.
    """

    strategy: str = "closest"
    strategies: list[str] = field(
        default_factory=lambda: ["closest", "random", "entropy", "deepgini"]
    )
    budget: int = 0
    quota_factor: float = 2.0
    balance: bool = True
    seeds: int = 5
    epochs: int = 5
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    select_by: str = "val"
    from_scratch: bool = False
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    robust: str = "auto"
    robust_n: int = 500

    def train_config(self, threads: int = 0) -> TrainConfig:
        """The training hyper-parameters of one retraining run."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            select_by=self.select_by,
            threads=threads,
        )


@dataclass
class ComputeConfig:
    """Where pool-scale steps run (METHOD.md §11; :mod:`dnnsafety.compute`).

    ``scheduler`` is ``local`` (this process), a Dask scheduler (``threads``, ``processes``,
    ``synchronous``) or the address of a ``distributed`` scheduler (``tcp://host:8786``).
    ``workers`` is the number of local Dask threads or processes (0: one per core).
    ``chunk_size`` is the number of pool images per task; it does not change the results.
    ``tune_allocator`` lets glibc keep large freed blocks in the process (and in every Dask
    worker that runs a chunk), which makes CPU inference much faster
    (:func:`dnnsafety.compute.tune_allocator`); it does not change the results.
    """

    scheduler: str = "local"
    workers: int = 0
    chunk_size: int = 8192
    tune_allocator: bool = True


@dataclass
class RunConfig:
    """Everything that determines a run's results."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        """One section as a plain dict (used to fingerprint stages).

        A plug-in with default parameters appears as its bare name, as before plug-ins took
        parameters, so that the fingerprints of older runs still match.
        """
        value = getattr(self, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            data = dataclasses.asdict(value)
            for f in dataclasses.fields(value):
                item = getattr(value, f.name)
                if isinstance(item, PluginConfig) and not item.params:
                    data[f.name] = item.name
            return data
        return {name: value}


T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:  # plug-in parameters: the plug-in validates them
        return value
    if hint is PluginConfig and isinstance(value, str):  # the older, name-only form
        return PluginConfig(name=value)
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
    """Apply dotted-key overrides such as ``{"train.epochs": 3}``; ``None`` values are ignored.

    Plug-in parameters (``analysis.cluster.params.min_cluster_size``) are applied after the
    other keys, so they go to the plug-in chosen in the same overrides (``analysis.cluster``),
    whichever comes first. Choosing another plug-in by name drops the old one's parameters.
    """
    data = config.to_dict()
    ordered = sorted(overrides.items(), key=lambda item: ".params." in f".{item[0]}.")
    for key, value in ordered:
        if value is None:
            continue
        node = data
        parts = key.split(".")
        for part, below in itertools.pairwise(parts):
            if isinstance(node.get(part), str) and below in ("name", "params"):
                node[part] = {"name": node[part], "params": {}}  # a plug-in given by name
            node = node[part]
        last = parts[-1]
        current: Any = node.get(last) if isinstance(node, dict) else None
        if isinstance(value, str) and _is_plugin_table(current):
            # a plug-in chosen by name keeps its parameters only if it stays the same plug-in
            params = current["params"] if current["name"] == value else {}
            node[last] = {"name": value, "params": params}
        else:
            node[last] = value
    return from_dict(RunConfig, data)


_INT = re.compile(r"[+-]?(?:0|[1-9](?:_?[0-9])*)")
_FLOAT = re.compile(
    r"[+-]?(?:(?:0|[1-9](?:_?[0-9])*)(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?"
    r"|inf|nan)"
)
_QUOTES = ('"', "'")


def _split_top_level(text: str) -> list[str]:
    """Split ``text`` at the commas outside quotes, brackets and braces."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def parse_value(raw: str) -> Any:
    """Type a command-line value the way TOML would, without TOML's string escapes.

    ``true``/``false`` are booleans, ``3`` an int, ``0.01``/``1e-3`` a float, ``[a, b]`` a list
    and ``{k = v}`` a table (items typed the same way), ``"x"`` or ``'x'`` the text inside the
    quotes; anything else is kept as the string given, character for character (so a Windows
    path such as ``C:\\data`` keeps its backslashes).
    """
    text = raw.strip()
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text.replace("_", ""))
    if _FLOAT.fullmatch(text):
        return float(text.replace("_", ""))
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
        return text[1:-1]
    if text.startswith("[") and text.endswith("]"):
        return [parse_value(item) for item in _split_top_level(text[1:-1])]
    if text.startswith("{") and text.endswith("}"):
        table: dict[str, Any] = {}
        for item in _split_top_level(text[1:-1]):
            key, sep, value = item.partition("=")
            if not sep:
                return text
            table[str(parse_value(key))] = parse_value(value)
        return table
    return text


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--set``) as a dict of dotted keys to typed values.

    Raises
    ------
    ConfigError
        When an item has no ``=`` or an empty key.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}.")
        overrides[key.strip()] = parse_value(raw)
    return overrides


def _is_plugin_table(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"name", "params"}
