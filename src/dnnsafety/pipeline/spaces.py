"""The feature space an analysis clustered in, with the unlabeled pool projected into it.

ClosestU (METHOD.md §2.8, and its SAFE counterpart) measures the distance of pool inputs to
the root-cause clusters in the space the clusters were found in. Each analysis of
:data:`~dnnsafety.pipeline.analyze.ANALYSES` declares that space
(:meth:`~dnnsafety.pipeline.analyze.Analysis.space`): LRP heatmaps at the selected layer for
HUDD, the feature source's vectors before the reduction for SAFE (see
:mod:`dnnsafety.pipeline.analyze.hudd` and :mod:`dnnsafety.pipeline.analyze.safe`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from dnnsafety.exceptions import RunDirError
from dnnsafety.pipeline.analyze import (
    CLUSTERS_FILE,
    AnalysisSpace,
    analysis_of,
    cluster_labels,
)
from dnnsafety.pipeline.analyze.base import rows_of
from dnnsafety.pipeline.analyze.hudd import CORRECT_HEATMAPS, POOL_HEATMAPS
from dnnsafety.pipeline.artifacts import Clusters, read_artifact
from dnnsafety.runs import fingerprint

if TYPE_CHECKING:
    from dnnsafety.pipeline.run import Pipeline

log = logging.getLogger(__name__)

__all__ = [
    "CORRECT_HEATMAPS",
    "CORRECT_REFERENCE_SIZE",
    "POOL_HEATMAPS",
    "AnalysisSpace",
    "activation_reference",
    "analysis_space",
    "cluster_labels",
    "correct_reference",
    "load_clusters",
    "pool_features",
    "read_clusters",
    "train_features",
]

CORRECT_REFERENCE_SIZE = 2000
"""Correctly classified inputs of the analysed split that the contrastive ClosestU compares
with (a seeded random subset when there are more): on signs, 2,000 MobileNetV2 feature
vectors take about a minute on 2 CPU cores, once per run (cached)."""


def load_clusters(pipeline: Pipeline) -> Clusters:
    """The run's ``clusters.json`` with its cluster records checked, or a clear error when the
    analysis has not run or the file cannot be read (:class:`ArtifactError`)."""
    path = pipeline.run / CLUSTERS_FILE
    if not path.is_file():
        raise RunDirError(
            f"{str(pipeline.run.path)!r} has no clusters.json: run `dnnsafety analyze "
            f"{pipeline.run.path}` first (selection works on its root-cause clusters)."
        )
    clusters = read_artifact(Clusters, pipeline.run)
    clusters.sizes()  # every record has its id and members
    return clusters


def read_clusters(pipeline: Pipeline) -> dict[str, Any]:
    """The run's ``clusters.json`` as a JSON object (:func:`load_clusters`'s checks)."""
    return load_clusters(pipeline).to_json()


def analysis_space(pipeline: Pipeline) -> AnalysisSpace:
    """The clustered errors and the pool in the analysis's feature space (see module doc)."""
    data = read_clusters(pipeline)
    pool_ids = pipeline.dataset["pool"].ids.astype(str).tolist()
    return analysis_of(data).space(pipeline, data, pool_ids)


def correct_reference(pipeline: Pipeline, n: int | None = None) -> Any:
    """Features, in the analysis space, of up to ``n`` (default
    :data:`CORRECT_REFERENCE_SIZE`) correctly classified inputs of the analysed split (a
    subset drawn with the run's seed), for the contrastive ClosestU.

    The analysed split is the one the root-cause clusters come from (the test split by
    default): as with ClosestU itself, its inputs decide which pool images get labelled, never
    what the model trains on. Black-box runs use the analysis's feature source (cached under
    ``analysis/features``); white-box runs compute LRP heatmaps at the selected layer
    (predicted class, as for the pool) under ``analysis/correct_heatmaps``.
    """
    n = CORRECT_REFERENCE_SIZE if n is None else n
    data = read_clusters(pipeline)
    split_name = data["split"]
    samples = pipeline.run.read_samples()
    part = samples[samples["split"] == split_name]
    ok = sorted(part.loc[part["correct"].astype(bool), "sample_id"].astype(str).tolist())
    if not ok:
        raise RunDirError(
            f"The model classifies no input of the {split_name!r} split correctly, so the "
            "contrastive distance has nothing to compare with; use the closest strategy."
        )
    if len(ok) > n:
        rng = np.random.default_rng(pipeline.config.seed)
        ok = sorted(rng.choice(ok, n, replace=False).tolist())
    split = pipeline.dataset[split_name]
    images = split.images[rows_of(split, ok)]
    return analysis_of(data).reference_features(pipeline, data, images, ok, split_name)


def activation_reference(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penultimate activations of the training set (with labels) and of the pool, for DSA."""
    from dnnsafety.features import FeatureContext, make_source
    from dnnsafety.pipeline.analyze.safe import cached_features

    source = make_source("activations").fit(FeatureContext(model=pipeline.model()))
    key = fingerprint(pipeline.model_key, "activations")
    train = pipeline.dataset["train"]
    pool = pipeline.dataset["pool"]
    train_feats = cached_features(
        pipeline.run, source, train.images, train.ids.astype(str).tolist(), key, "train activations"
    )
    pool_feats = cached_features(
        pipeline.run, source, pool.images, pool.ids.astype(str).tolist(), key, "pool activations"
    )
    return train_feats, train.labels, pool_feats


def train_features(pipeline: Pipeline) -> np.ndarray:
    """Features of the training split, ``(N_train, D)``, for mitigations that group or weight
    training inputs: the model's penultimate activations when its layers can be read (white-box),
    the frozen backbone's embeddings otherwise. Cached under ``analysis/features``."""
    from dnnsafety.features import FeatureContext, make_source
    from dnnsafety.pipeline.analyze.safe import cached_features

    name = "activations" if pipeline.support.white_box else "backbone"
    source = make_source(name).fit(FeatureContext(model=pipeline.model()))
    key = fingerprint(pipeline.model_key if name == "activations" else "", name)
    train = pipeline.dataset["train"]
    return cached_features(
        pipeline.run, source, train.images, train.ids.astype(str).tolist(), key, f"train {name}"
    )


def pool_features(pipeline: Pipeline) -> np.ndarray:
    """Features of the unlabelled pool, ``(N_pool, D)``, in the space of
    :func:`train_features` (same source, same cache)."""
    from dnnsafety.features import FeatureContext, make_source
    from dnnsafety.pipeline.analyze.safe import cached_features

    name = "activations" if pipeline.support.white_box else "backbone"
    source = make_source(name).fit(FeatureContext(model=pipeline.model()))
    key = fingerprint(pipeline.model_key if name == "activations" else "", name)
    pool = pipeline.dataset["pool"]
    return cached_features(
        pipeline.run, source, pool.images, pool.ids.astype(str).tolist(), key, f"pool {name}"
    )
