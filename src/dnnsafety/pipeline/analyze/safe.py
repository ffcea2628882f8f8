"""The black-box root-cause analysis stage (SAFE, METHOD.md §3).

Error-inducing inputs -> features from a source in :data:`~dnnsafety.features.FEATURE_SOURCES`
(a frozen ImageNet backbone by default) -> a reducer from
:data:`~dnnsafety.clustering.REDUCERS` -> a clusterer from
:data:`~dnnsafety.clustering.CLUSTERERS`. Noise points stay noise (cluster ``-1``). The outputs
have the same shape as the white-box stage's (``clusters.json``, the ``cluster`` column,
contact sheets, the error map), so selection, retraining and the report work on either.

Features are cached in ``analysis/features/`` keyed by the model, the source and its settings,
so trying another reducer or clusterer does not recompute them.

Identical error images (repeated frames) always share their cluster: they get their first
copy's features exactly (a backbone can differ in the last bits between batch positions),
and the reducers and clusterers treat identical rows as one row that occurs several times
(:mod:`dnnsafety.clustering.duplicates`).

Its feature space for selection: the feature source's vectors (cached), *before* the
reduction. The reducer only serves the clustering: UMAP's ``transform`` of a pool image
places it among the error inputs it was fitted on however far it really is (the embedding
holds nothing else), so distances to the clusters would lose their meaning. Measured on signs
(MobileNetV2 features, 300 labels): in the UMAP space ClosestU picked 74 nominal pool images,
in the feature space 23.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.clustering import CLUSTERERS, REDUCERS, identical_rows, pairwise_distances
from dnnsafety.clustering.guard import GroupedClusterer, error_groups
from dnnsafety.config import AnalysisConfig, PluginConfig
from dnnsafety.data.dataset import Dataset
from dnnsafety.explain import describe_clusters
from dnnsafety.explain.gallery import cluster_gallery, error_map
from dnnsafety.failures import error_inputs
from dnnsafety.features import FEATURE_SOURCES, FeatureContext, FeatureSource
from dnnsafety.pipeline.analyze.base import (
    ANALYSES,
    ANALYSIS_DIR,
    CLUSTERS_FILE,
    Analysis,
    AnalysisSpace,
    ChunkedSpace,
    RunContext,
    cluster_labels,
    rows_of,
)
from dnnsafety.pipeline.artifacts import Clusters, write_artifact
from dnnsafety.runs import RunDir, fingerprint

log = logging.getLogger(__name__)

FEATURES_DIR = f"{ANALYSIS_DIR}/features"


@dataclass(frozen=True)
class BlackBoxResult:
    """What the black-box analysis found."""

    n_errors: int
    n_noise: int
    clusters: list[dict[str, Any]]
    params: dict[str, Any]
    seconds: dict[str, float]


#: Analysis-wide settings (the flat ``analysis.backbone`` ... keys of older config files),
#: offered to the feature source under its constructor's parameter names. A source gets those
#: its constructor takes; ``analysis.features.params`` override them.
OFFERED_SOURCE_PARAMS: dict[str, Callable[[AnalysisConfig], Any]] = {
    "arch": lambda config: config.backbone,
    "weights": lambda config: config.backbone_weights,
    "image_size": lambda config: config.image_size,
    "layer": lambda config: config.feature_layer,
    "ruleset": lambda config: config.resolved()["ruleset"],
}


def source_spec(config: AnalysisConfig) -> PluginConfig:
    """The configured feature source as ``{name, params}``, with the parameters it is built
    with: the offered analysis-wide settings it takes (:data:`OFFERED_SOURCE_PARAMS`), then
    ``analysis.features.params``."""
    spec = PluginConfig.of(config.features)
    accepted = inspect.signature(FEATURE_SOURCES.get(spec.name)).parameters
    offered = {k: get(config) for k, get in OFFERED_SOURCE_PARAMS.items() if k in accepted}
    return PluginConfig(spec.name, {**offered, **spec.params})


def source_params(config: AnalysisConfig) -> dict[str, Any]:
    """Constructor parameters of the configured feature source (:func:`source_spec`)."""
    return source_spec(config).params


def fit_source(
    config: AnalysisConfig, model: nn.Module | None, dataset: Dataset, run: RunDir, seed: int
) -> FeatureSource:
    """The configured feature source, fitted on what it ``requires`` (the model, unlabeled
    train + pool images, the image shape) and nothing else."""
    spec = source_spec(config)
    source: FeatureSource = FEATURE_SOURCES.create(spec.name, spec.params)
    needs = source.requires
    unlabeled = None
    if "unlabeled" in needs:
        unlabeled = _unlabeled_sample(dataset, source.unlabeled_limit(), seed)
    context = FeatureContext(
        model=model if "model" in needs else None,
        unlabeled=unlabeled,
        work_dir=run / FEATURES_DIR,
        seed=seed,
        extra={"image_shape": dataset.image_shape} if "image_shape" in needs else {},
    )
    return source.fit(context)


def _unlabeled_sample(dataset: Dataset, limit: int | None, seed: int) -> torch.Tensor | None:
    """At most ``limit`` (``None``: all) train + pool images, drawn at random without
    copying the rest."""
    parts = [dataset[s].images for s in ("train", "pool") if s in dataset.splits]
    total = sum(len(p) for p in parts)
    if not total:
        return None
    size = total if limit is None else min(limit, total)
    pick = np.sort(np.random.default_rng(seed).permutation(total)[:size])
    out, offset = [], 0
    for images in parts:
        mine = pick[(pick >= offset) & (pick < offset + len(images))] - offset
        out.append(images[torch.from_numpy(mine)])
        offset += len(images)
    return torch.cat(out)


def cached_features(
    run: RunDir,
    source: FeatureSource,
    images: torch.Tensor,
    ids: list[str],
    key: str,
    desc: str = "features",
) -> np.ndarray:
    """Features of ``images``, computed once per input and kept under ``analysis/features``.

    The cache folder is named by ``key`` (what the caller adds: model, seed) and the source's
    identity (every parameter, defaults included, and the weights it loaded), so a changed
    option computes afresh; inside it each input is kept by id and pixel digest
    (:mod:`dnnsafety.features.cache`): the errors, the correct reference, the pool and the
    training set are each embedded once, whichever command asks first.
    """
    from dnnsafety.features.cache import cached_transform, source_identity

    folder = run / FEATURES_DIR / f"{source.name}_{fingerprint(key, source_identity(source))}"
    return cached_transform(folder, source, images, ids, desc=desc)


def run_blackbox(
    run: RunDir,
    model: nn.Module | None,
    dataset: Dataset,
    config: AnalysisConfig,
    model_key: str,
    seed: int = 0,
) -> BlackBoxResult:
    """Cluster the errors of ``config.split`` by black-box features; write the outputs."""
    samples = run.read_samples()
    errors = error_inputs(samples, config.split)
    split = dataset[config.split]
    position = {sid: i for i, sid in enumerate(split.ids.tolist())}
    idx = np.array([position[s] for s in errors["sample_id"]], dtype=np.int64)
    images = split.images[torch.from_numpy(idx)]
    ids = errors["sample_id"].astype(str).tolist()
    n = len(ids)
    log.info(
        "black-box analysis of %d errors: %s -> %s -> %s",
        n,
        config.features,
        config.reduce,
        config.cluster,
    )
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    source = fit_source(config, model, dataset, run, seed)
    key = fingerprint(model_key, str(config.features), source_params(config), seed)
    feats = cached_features(run, source, images, ids, key, desc="error features")
    same = identical_rows(images.numpy())
    if same.has_duplicates:
        log.info(
            "%d of the %d error images are copies of others; copies share their cluster",
            same.n_rows - same.n_distinct,
            n,
        )
        feats = feats[same.representative()]
    seconds["features"] = time.perf_counter() - t0
    classes = (errors["label"].to_numpy(dtype=np.int64), errors["pred"].to_numpy(dtype=np.int64))
    labels, reduced, params = reduce_and_cluster(
        feats, config.reduce, config.cluster, seed, classes=classes
    )
    seconds["clustering"] = time.perf_counter() - t0 - seconds["features"]
    out_dir = run / ANALYSIS_DIR
    clusters: list[dict[str, Any]] = []
    if n:
        d = pairwise_distances(reduced)
        clusters = describe_clusters(labels, d, errors, dataset.class_names)
        cluster_gallery(out_dir, images, labels, clusters, errors, dataset.class_names)
        error_map(out_dir, reduced, labels, ids, images, seed=seed)
    n_noise = int((labels < 0).sum())
    write_artifact(
        run,
        Clusters(
            method="safe",
            split=config.split,
            layer="",
            features=str(config.features),
            reduce=str(config.reduce),
            cluster=str(config.cluster),
            params=params,
            settings={"features": source_params(config), "seed": seed},
            n_errors=n,
            n_noise=n_noise,
            clusters=clusters,
        ),
    )
    column = pd.DataFrame(
        {"cluster": pd.array(labels, dtype="Int64")}, index=errors["sample_id"].astype(str)
    )
    run.add_columns(column)
    return BlackBoxResult(n, n_noise, clusters, params, seconds)


class _Passthrough:
    """Stands in for a reducer when there are too few inputs to fit one."""

    def __init__(self) -> None:
        self.params_: dict[str, Any] = {"skipped": True}

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)


def make_reducer(reduce: str | PluginConfig, n: int, seed: int) -> Any:
    """The configured reducer; no reduction when there are too few distinct inputs (``n``)."""
    spec = PluginConfig.of(reduce)
    reducer = REDUCERS.create(spec.name, spec.params, random_state=seed)
    if n < reducer.min_rows:
        log.info("only %d distinct error inputs: clustering them without %s reduction", n, reduce)
        return _Passthrough()
    return reducer


def reduce_and_cluster(
    features: np.ndarray,
    reduce: str | PluginConfig,
    cluster: str | PluginConfig,
    seed: int,
    classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Reduce then cluster ``features``; returns labels (-1 noise), reduced data, parameters.

    ``classes``: true and predicted class per row, passed as group keys to a clusterer that
    takes them (``conditional``, ``guarded``: its ``by`` parameter says which key).
    """
    n = len(features)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32), {}
    reducer = make_reducer(reduce, identical_rows(features).n_distinct, seed)
    reduced = np.asarray(reducer.fit_transform(features), dtype=np.float32)
    spec = PluginConfig.of(cluster)
    clusterer = CLUSTERERS.create(spec.name, spec.params, random_state=seed)
    by = str(getattr(clusterer, "by", ""))
    if isinstance(clusterer, GroupedClusterer) and by and classes is not None:
        groups = error_groups(by, *classes)
        labels = np.asarray(clusterer.fit_predict(reduced, groups), dtype=np.int64)
    else:
        labels = np.asarray(clusterer.fit_predict(reduced), dtype=np.int64)
    params = {
        "reduce": {"name": str(reduce), "dims": int(reduced.shape[1]), **reducer.params_},
        "cluster": {"name": spec.name, **dict(getattr(clusterer, "params_", {}))},
        "n_clusters": int(getattr(clusterer, "n_clusters_", labels.max() + 1)),
    }
    return labels, reduced, params


@ANALYSES.register("safe", help="black-box: features -> reducer -> clusterer (SAFE)")
class SafeAnalysis(Analysis):
    """SAFE (METHOD.md §3): the analysis when ``analysis.features`` names a feature source
    (``analysis.mode = "hudd-compat"`` asks for the white-box analysis whatever the source)."""

    name = "safe"
    outputs = (CLUSTERS_FILE,)

    @classmethod
    def handles(cls, config: AnalysisConfig) -> bool:
        return bool(PluginConfig.of(config.features).name) and config.mode != "hudd-compat"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = ctx.config.analysis
        model = ctx.model()
        extra: dict[str, Any] = {}
        if PluginConfig.of(cfg.features).name == "heatmaps":
            from dnnsafety.features.coverage import warn_lrp_coverage

            split = ctx.dataset[cfg.split]
            ruleset = cfg.resolved()["ruleset"]
            extra["lrp_coverage"] = warn_lrp_coverage(model, split.images[:2], ruleset)
        bb = run_blackbox(ctx.run, model, ctx.dataset, cfg, ctx.model_key, seed=ctx.config.seed)
        extra.update(clusters=len(bb.clusters), noise=bb.n_noise)
        return extra

    def space(self, ctx: RunContext, data: dict[str, Any], pool_ids: list[str]) -> AnalysisSpace:
        errors = error_inputs(ctx.run.read_samples(), data["split"])
        error_ids = errors["sample_id"].astype(str).tolist()
        split = ctx.dataset[data["split"]]
        feats = _source_features(ctx, split.images[rows_of(split, error_ids)], error_ids)
        pool_feats = _source_features(ctx, ctx.dataset["pool"].images, pool_ids, "pool features")
        return AnalysisSpace(
            error_ids, feats, cluster_labels(data, error_ids), pool_ids, pool_feats, self.name
        )

    def reference_features(
        self,
        ctx: RunContext,
        data: dict[str, Any],
        images: torch.Tensor,
        ids: list[str],
        split: str,
    ) -> Any:
        """The feature source's vectors (cached under ``analysis/features``)."""
        return _source_features(ctx, images, ids, "correct-input features")

    @staticmethod
    def describe(data: dict[str, Any]) -> str:
        return (
            f"{data['features']} features -> {data['reduce']} -> {data['cluster']}; "
            f"{data['n_noise']} errors in no cluster (noise)"
        )

    def chunked_space(self, ctx: RunContext, data: dict[str, Any]) -> ChunkedSpace:
        """The errors' feature-source vectors; pool chunks go through the same fitted source."""
        from dnnsafety.features.chunks import SourceEmbeddings

        errors = error_inputs(ctx.run.read_samples(), data["split"])
        error_ids = errors["sample_id"].astype(str).tolist()
        split = ctx.dataset[data["split"]]
        feats = _source_features(ctx, split.images[rows_of(split, error_ids)], error_ids)
        cfg = ctx.config.analysis
        source = fit_source(cfg, ctx.model(), ctx.dataset, ctx.run, ctx.config.seed)
        return ChunkedSpace(
            error_ids, feats, cluster_labels(data, error_ids), SourceEmbeddings(source)
        )


def _source_features(
    ctx: RunContext, images: torch.Tensor, ids: list[str], desc: str = "features"
) -> np.ndarray:
    """The black-box analysis's features of ``images`` (cached under ``analysis/features``)."""
    cfg = ctx.config.analysis
    seed = ctx.config.seed
    source = fit_source(cfg, ctx.model(), ctx.dataset, ctx.run, seed)
    key = fingerprint(ctx.model_key, str(cfg.features), source_params(cfg), seed)
    return cached_features(ctx.run, source, images, ids, key, desc=desc)
