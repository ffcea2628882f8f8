"""The bias stage (``dnnsafety bias``, METHOD.md §8): under-represented, high-error groups.

Reads the evaluated run (``samples.parquet``: which test inputs the model gets wrong), embeds
every training and test input with a feature source (the model's own penultimate activations
when its layers can be read, the frozen ImageNet backbone otherwise; cached under
``analysis/features``), clusters them (:func:`dnnsafety.bias.find_groups`), flags the
under-represented, high-error groups, and runs SliceLine over the test split's metadata
(:func:`dnnsafety.bias.find_slices`). Writes ``bias.json``, one contact sheet per group under
``bias/`` and the columns ``bias_group`` (train and test rows; -1 = noise) and
``is_bias_flagged`` of ``samples.parquet``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from dnnsafety.bias import FlagRule, GroupAnalysis, find_groups, find_slices
from dnnsafety.config import PluginConfig
from dnnsafety.data.dataset import Split, known_scenarios
from dnnsafety.exceptions import RunDirError
from dnnsafety.explain.plots import contact_sheet
from dnnsafety.models.support import WHITE_BOX_FEATURES, check_command
from dnnsafety.pipeline.artifacts import BiasReport, write_artifact
from dnnsafety.pipeline.run import Pipeline
from dnnsafety.runs import fingerprint

log = logging.getLogger(__name__)

BIAS_DIR = "bias"
SHEET_SIZE = 12
"""Test members shown per group (its errors first)."""


@dataclass
class BiasSettings:
    """How ``dnnsafety bias`` finds groups and slices.

    Attributes
    ----------
    features
        A feature source (``activations``, ``backbone``, ...); empty: ``activations`` for a
        model whose layers can be read, ``backbone`` otherwise.
    reduce, cluster
        Reducer and clusterer ``{name, params}`` (:data:`~dnnsafety.clustering.REDUCERS`,
        :data:`~dnnsafety.clustering.CLUSTERERS`); default PCA then k-means with 50 clusters.
    rule
        The flagging rule.
    slices, max_l, min_sup, n_bins
        SliceLine: slices kept, predicates per slice, smallest slice, quantile bins.
    """

    features: str = ""
    reduce: PluginConfig = field(default_factory=lambda: PluginConfig("pca"))
    cluster: PluginConfig = field(
        default_factory=lambda: PluginConfig("kmeans-fixed", {"n_clusters": 50})
    )
    rule: FlagRule = field(default_factory=FlagRule)
    slices: int = 5
    max_l: int = 2
    min_sup: int = 20
    n_bins: int = 8


def feature_source_name(pipeline: Pipeline, settings: BiasSettings) -> str:
    """The feature source to group in: the one asked for, else by the model's access."""
    if settings.features:
        return settings.features
    return "activations" if pipeline.support.white_box else "backbone"


def _features(pipeline: Pipeline, name: str, split: Split) -> np.ndarray:
    from dnnsafety.pipeline.analyze.safe import cached_features, fit_source, source_params

    cfg = dataclasses.replace(pipeline.config.analysis, features=name)
    seed = pipeline.config.seed
    model = pipeline.model()
    source = fit_source(cfg, model, pipeline.dataset, pipeline.run, seed)
    key = fingerprint(pipeline.model_key, name, source_params(cfg), seed)
    ids = split.ids.astype(str).tolist()
    return cached_features(pipeline.run, source, split.images, ids, key, f"{split.name} {name}")


def run_bias(pipeline: Pipeline, settings: BiasSettings | None = None) -> BiasReport:
    """Find the groups and slices of an evaluated run; write ``bias.json`` and the columns.

    Raises
    ------
    RunDirError
        When the run has not been evaluated (``dnnsafety evaluate`` first).
    ConfigError
        On a bad setting or a feature source the model cannot serve.
    """
    settings = settings or BiasSettings()
    run = pipeline.run
    t0 = time.perf_counter()
    if run.stage_key("evaluate") is None or not (run / "samples.parquet").is_file():
        raise RunDirError(
            f"{str(run.path)!r} has no evaluated predictions: run `dnnsafety evaluate "
            f"{run.path}` first."
        )
    samples = run.read_samples().set_index("sample_id")
    name = feature_source_name(pipeline, settings)
    if name in WHITE_BOX_FEATURES:
        check_command(pipeline.support, "bias", ("white_box",))
    train, test = pipeline.dataset["train"], pipeline.dataset["test"]
    feats = np.concatenate([_features(pipeline, name, train), _features(pipeline, name, test)])
    is_test = np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)]
    correct = samples.loc[test.ids.astype(str), "correct"].to_numpy(dtype=bool)
    errors = np.r_[np.zeros(len(train), bool), ~correct]
    reduce, cluster = PluginConfig.of(settings.reduce), PluginConfig.of(settings.cluster)
    result = find_groups(
        feats,
        is_test,
        errors,
        reduce=reduce.name,
        reduce_params=reduce.params,
        cluster=cluster.name,
        cluster_params=cluster.params,
        rule=settings.rule,
        random_state=pipeline.config.seed,
    )
    test_labels = result.labels[len(train) :]
    records = _group_records(pipeline, result, test, test_labels, ~correct)
    found = []
    if test.metadata is not None and len(test.metadata.columns):
        found = find_slices(
            test.metadata,
            ~correct,
            k=settings.slices,
            max_l=settings.max_l,
            min_sup=settings.min_sup,
            n_bins=settings.n_bins,
        )
    report = BiasReport(
        features=name,
        reduce={"name": reduce.name, "params": reduce.params},
        cluster={"name": cluster.name, "params": cluster.params},
        rule={**dataclasses.asdict(result.rule), "text": result.rule.describe()},
        baseline_error=result.baseline_error,
        n_train=len(train),
        n_test=len(test),
        groups=records,
        slices=[s.to_json() for s in found],
        params=result.params,
        slice_settings={
            "k": settings.slices,
            "max_l": settings.max_l,
            "min_sup": settings.min_sup,
            "n_bins": settings.n_bins,
        },
    )
    write_artifact(run, report)
    flagged = set(result.flagged)
    ids = np.concatenate([train.ids, test.ids]).astype(str)
    run.add_columns(
        pd.DataFrame(
            {
                "bias_group": pd.array(result.labels, dtype="Int64"),
                "is_bias_flagged": pd.array(
                    [int(g) in flagged for g in result.labels], dtype="boolean"
                ),
            },
            index=ids,
        )
    )
    key = fingerprint(pipeline.eval_key, name, dataclasses.asdict(settings), "bias-v1")
    run.mark_done("bias", key, (BiasReport.FILE,), seconds=time.perf_counter() - t0)
    log.info(
        "bias: %d groups, %d flagged (%s); %d metadata slices",
        len(result.groups),
        len(flagged),
        result.rule.describe(),
        len(found),
    )
    return report


def _group_records(
    pipeline: Pipeline,
    result: GroupAnalysis,
    test: Split,
    test_labels: np.ndarray,
    wrong: np.ndarray,
) -> list[dict[str, Any]]:
    """The groups as JSON, with the dominant class and scenario counts of their test members
    and a contact sheet of up to :data:`SHEET_SIZE` of them (errors first)."""
    names = pipeline.dataset.class_names
    labels = np.asarray(test.labels)
    scenarios = test.scenarios.astype(str)
    has_truth = bool(known_scenarios(scenarios).any())
    out = []
    for group in result.groups:
        record: dict[str, Any] = group.to_json()
        members = np.flatnonzero(test_labels == group.id)
        if len(members):
            counts = np.bincount(labels[members], minlength=len(names))
            record["dominant_class"] = names[int(counts.argmax())]
            if has_truth:
                tags, n = np.unique(scenarios[members], return_counts=True)
                order = np.argsort(-n, kind="stable")
                record["scenarios"] = {str(tags[i]): int(n[i]) for i in order}
            shown = np.concatenate([members[wrong[members]], members[~wrong[members]]])
            shown = shown[:SHEET_SIZE]
            path = pipeline.run / BIAS_DIR / f"group_{group.id:03d}.png"
            captions = ["error" if wrong[i] else "" for i in shown]
            contact_sheet(test.images[torch.from_numpy(shown)], path, None, captions, 48, 6)
            record["thumbnails"] = f"{BIAS_DIR}/{path.name}"
        out.append(record)
    return out
