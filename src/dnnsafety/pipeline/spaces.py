"""The feature space an analysis clustered in, with the unlabeled pool projected into it.

ClosestU (METHOD.md §2.8, and its SAFE counterpart) measures the distance of pool inputs to
the root-cause clusters in the space the clusters were found in:

- white-box (``clusters.json`` ``method = "hudd"``): LRP heatmaps at the selected layer,
  computed for the pool too (predicted class, no label needed) and stored on disk beside the
  error heatmaps, then read as a memory map in batches;
- black-box (``method = "safe"``): the feature source's vectors (cached), *before* the
  reduction. The reducer only serves the clustering: UMAP's ``transform`` of a pool image
  places it among the error inputs it was fitted on however far it really is (the embedding
  holds nothing else), so distances to the clusters would lose their meaning. Measured on
  signs (MobileNetV2 features, 300 labels): in the UMAP space ClosestU picked 74 nominal pool
  images, in the feature space 23.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dnnsafety.analysis import CLUSTERS_FILE
from dnnsafety.exceptions import RunDirError
from dnnsafety.runs import fingerprint, safe_name

if TYPE_CHECKING:
    from dnnsafety.pipeline import Pipeline

log = logging.getLogger(__name__)

POOL_HEATMAPS = "analysis/pool_heatmaps"
CORRECT_HEATMAPS = "analysis/correct_heatmaps"
CORRECT_REFERENCE_SIZE = 2000
"""Correctly classified inputs of the analysed split that the contrastive ClosestU compares
with (a seeded random subset when there are more): on signs, 2,000 MobileNetV2 feature
vectors take about a minute on 2 CPU cores, once per run (cached)."""


@dataclass(frozen=True)
class AnalysisSpace:
    """Clustered error inputs and pool inputs in one feature space.

    Attributes
    ----------
    error_ids
        Ids of the analysed error inputs.
    error_features
        Their features (``M x D``; may be a memory map).
    labels
        Their cluster ids (``-1``: noise).
    pool_ids
        Ids of the pool inputs.
    pool_features
        Their features in the same space (``P x D``; may be a memory map).
    method
        ``"hudd"`` or ``"safe"``.
    """

    error_ids: list[str]
    error_features: Any
    labels: np.ndarray
    pool_ids: list[str]
    pool_features: Any
    method: str


def read_clusters(pipeline: Pipeline) -> dict[str, Any]:
    """The run's ``clusters.json``, or a clear error when the analysis has not run."""
    path = pipeline.run / CLUSTERS_FILE
    if not path.is_file():
        raise RunDirError(
            f"{str(pipeline.run.path)!r} has no clusters.json: run `dnnsafety analyze "
            f"{pipeline.run.path}` first (selection works on its root-cause clusters)."
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def cluster_labels(data: dict[str, Any], ids: list[str]) -> np.ndarray:
    """Cluster id per error id from ``clusters.json`` (``-1`` for noise)."""
    of = {sid: int(c["id"]) for c in data["clusters"] for sid in c["members"]}
    return np.array([of.get(s, -1) for s in ids], dtype=np.int64)


def analysis_space(pipeline: Pipeline) -> AnalysisSpace:
    """The clustered errors and the pool in the analysis's feature space (see module doc)."""
    data = read_clusters(pipeline)
    pool = pipeline.dataset["pool"]
    pool_ids = pool.ids.astype(str).tolist()
    if data.get("method") == "safe":
        return _safe_space(pipeline, data, pool_ids)
    return _hudd_space(pipeline, data, pool_ids)


def _hudd_space(pipeline: Pipeline, data: dict[str, Any], pool_ids: list[str]) -> AnalysisSpace:
    from dnnsafety.features import HeatmapStore

    layer = _selected_layer(data)
    errors = HeatmapStore.open(pipeline.run / "analysis" / "heatmaps")
    error_ids = [str(s) for s in errors.ids]
    pool = pipeline.dataset["pool"]
    pool_maps = _layer_heatmaps(pipeline, data, pool.images, pool_ids, POOL_HEATMAPS, "pool")
    return AnalysisSpace(
        error_ids,
        errors.flat(layer),
        cluster_labels(data, error_ids),
        pool_ids,
        pool_maps,
        "hudd",
    )


def _safe_space(pipeline: Pipeline, data: dict[str, Any], pool_ids: list[str]) -> AnalysisSpace:
    from dnnsafety.failures import error_inputs

    errors = error_inputs(pipeline.run.read_samples(), data["split"])
    error_ids = errors["sample_id"].astype(str).tolist()
    split = pipeline.dataset[data["split"]]
    feats = _backbone_features(pipeline, split.images[_rows(split, error_ids)], error_ids)
    pool_feats = _backbone_features(
        pipeline, pipeline.dataset["pool"].images, pool_ids, "pool features"
    )
    return AnalysisSpace(
        error_ids, feats, cluster_labels(data, error_ids), pool_ids, pool_feats, "safe"
    )


def _rows(split: Any, ids: list[str]) -> torch.Tensor:
    """Row positions of ``ids`` in ``split``."""
    pos = {str(sid): i for i, sid in enumerate(split.ids.tolist())}
    return torch.tensor([pos[s] for s in ids], dtype=torch.long)


def _selected_layer(data: dict[str, Any]) -> str:
    layer: str = data["layer"]
    if not layer:
        raise RunDirError("clusters.json names no selected layer; rerun `dnnsafety analyze`.")
    return layer


def _backbone_features(
    pipeline: Pipeline, images: torch.Tensor, ids: list[str], desc: str = "features"
) -> np.ndarray:
    """The black-box analysis's features of ``images`` (cached under ``analysis/features``)."""
    from dnnsafety.blackbox import cached_features, fit_source, source_params

    cfg = pipeline.config.analysis
    seed = pipeline.config.seed
    source = fit_source(cfg, pipeline.model(), pipeline.dataset, pipeline.run, seed)
    key = fingerprint(pipeline.model_key, cfg.features, source_params(cfg), seed)
    return cached_features(pipeline.run, source, images, ids, key, desc=desc)


def _layer_heatmaps(
    pipeline: Pipeline,
    data: dict[str, Any],
    images: Any,
    ids: list[str],
    root: str,
    *tag: Any,
) -> Any:
    """LRP heatmaps (predicted class) of ``images`` at the analysis's selected layer, flat.

    Stored under ``root/<ruleset>_<layer>_<fingerprint of model and tag>``: a retrained model
    or another subset gets its own folder instead of a clash with the previous heatmaps.
    """
    from dnnsafety.features import compute_heatmaps

    layer = _selected_layer(data)
    ruleset = data["settings"]["ruleset"]
    tag_key = fingerprint(pipeline.model_key, *tag)[:12]
    folder = f"{ruleset}_{safe_name(layer, keep='-_.')}_{tag_key}"
    store = compute_heatmaps(
        pipeline.model(),
        images,
        ids,
        pipeline.run / root / folder,
        layers=[layer],
        ruleset=ruleset,
        batch_size=pipeline.config.analysis.batch_size,
    )
    return store.flat(layer)


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
    images = split.images[_rows(split, ok)]
    if data.get("method") == "safe":
        return _backbone_features(pipeline, images, ok, "correct-input features")
    return _layer_heatmaps(pipeline, data, images, ok, CORRECT_HEATMAPS, split_name, ok)


def activation_reference(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penultimate activations of the training set (with labels) and of the pool, for DSA."""
    from dnnsafety.blackbox import cached_features
    from dnnsafety.features import FeatureContext, make_source

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
