"""The ``clusters`` context of a generation strategy, built from a run folder.

For every root-cause cluster of ``clusters.json``: its metadata rules (stored by the analysis;
learned here from ``samples.parquet`` for files written before rules were recorded), its
medoid and radius in the analysis feature space; plus that space's feature function for new
images and the dataset's simulator (:data:`dnnsafety.sim.SIMULATORS`, by dataset name).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from dnnsafety.explain.rules import Rule, cluster_rules
from dnnsafety.retraining.rootcauses import RootCause, RootCauses
from dnnsafety.sim import SIMULATORS

if TYPE_CHECKING:
    from dnnsafety.pipeline.run import Pipeline

__all__ = ["medoid_and_radius", "root_causes"]


def medoid_and_radius(features: np.ndarray) -> tuple[np.ndarray, float]:
    """The member with the smallest summed distance to the others, and the median distance
    of the other members to it (the largest distance let almost any render count as inside:
    one far member is enough)."""
    rows = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    sq = (rows**2).sum(axis=1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * rows @ rows.T, 0))
    m = int(np.argmin(d.sum(axis=1)))
    others = np.delete(d[m], m)
    return rows[m], float(np.median(others)) if len(others) else 0.0


def _members_meta(pipeline: Pipeline, data: dict[str, Any]) -> pd.DataFrame | None:
    """Metadata of the clustered errors (``meta.`` prefix dropped), in ``clusters.json``'s
    member order, or ``None`` without metadata."""
    samples = pipeline.run.read_samples()
    part = samples[samples["split"] == data["split"]].set_index("sample_id")
    ids = [str(m) for c in data["clusters"] for m in c["members"]]
    cols = [c for c in part.columns if str(c).startswith("meta.")]
    if not cols or not ids:
        return None
    return part.loc[ids, cols].rename(columns=lambda c: str(c)[5:]).reset_index(drop=True)


def _rules(data: dict[str, Any], meta: pd.DataFrame | None) -> dict[int, tuple[Rule, ...]]:
    records = data["clusters"]
    if all("rules" in c for c in records):
        return {int(c["id"]): tuple(Rule.from_dict(r) for r in c["rules"] or []) for c in records}
    if meta is None:
        return {}
    labels = np.array([int(c["id"]) for c in records for _ in c["members"]])
    return {c: tuple(r) for c, r in cluster_rules(meta, labels).items()}


def root_causes(pipeline: Pipeline) -> RootCauses:
    """The run's root causes, feature function and simulator (module docstring)."""
    from dnnsafety.pipeline.analyze import analysis_of
    from dnnsafety.pipeline.spaces import analysis_space, read_clusters

    data = read_clusters(pipeline)
    space = analysis_space(pipeline)
    meta = _members_meta(pipeline, data)
    rules = _rules(data, meta)
    labels = np.asarray(space.labels)
    clusters = []
    start = 0
    for record in data["clusters"]:
        cid = int(record["id"])
        rows = np.flatnonzero(labels == cid)
        medoid, radius = None, None
        if len(rows) >= 2:
            medoid, radius = medoid_and_radius(np.asarray(space.error_features[rows]))
        size = len(record["members"])
        members = None if meta is None else meta.iloc[start : start + size]
        start += size
        clusters.append(RootCause(cid, size, rules.get(cid, ()), medoid, radius, members))
    analysis = analysis_of(data)

    def features(images: torch.Tensor) -> np.ndarray:
        ids = [
            "generated-" + hashlib.sha256(img.numpy().tobytes()).hexdigest()[:16] for img in images
        ]
        rows = analysis.reference_features(pipeline, data, images, ids, "generated")
        return np.asarray(rows, dtype=np.float64).reshape(len(images), -1)

    simulator = None
    name = pipeline.config.data.name
    if name in SIMULATORS:
        simulator = SIMULATORS.get(name)(size=int(pipeline.dataset["train"].images.shape[-1]))
    return RootCauses(tuple(clusters), simulator=simulator, features=features)
