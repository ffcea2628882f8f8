"""How well root-cause clusters match the ground-truth scenarios (METHOD.md §5).

* purity of a cluster: share of its members from its dominant scenario; reported as the
  unweighted mean over clusters and weighted by cluster size;
* coverage: share of the scenarios present among the errors that are the dominant scenario of
  at least one cluster;
* per cause (a scenario to cover), the best-matching cluster's **recall** (share of the
  cause's errors in it), **precision** (share of the cluster that is the cause) and their
  **F1**; the best-matching cluster is the one with the highest F1 (the cluster-level F1 of
  the FMeasure used for clustering evaluation, e.g. Amigo et al., Information Retrieval 2009).
  One cluster holding all errors scores recall 1 but precision = the cause's share, so it
  cannot pass as a good answer;
* ``purity_trivial``: the purity of that one-cluster answer (the largest scenario's share of
  the clustered errors), to read ``purity`` against;
* ARI / NMI against the scenario labels (secondary);
* variance-ratio share: share of clusters with some metadata parameter whose variance inside
  the cluster is below half its variance over all errors (HUDD's RQ1 check).

Noise points (label -1) are left out of purity and coverage and reported as ``noise_share``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dnnsafety.explain.clusters import VARIANCE_RATIO_THRESHOLD, variance_ratios


@dataclass(frozen=True)
class CauseScore:
    """How well one cause (ground-truth scenario) is recovered by its best-matching cluster.

    Attributes
    ----------
    n_errors
        The cause's errors (noise included).
    cluster
        Id of the best-matching cluster (highest F1; ``-1`` when every member is noise).
    recall
        Share of the cause's errors in that cluster (noise counts as missed).
    precision
        Share of that cluster's members that are the cause.
    f1
        Harmonic mean of recall and precision (0 when both are 0).
    """

    n_errors: int
    cluster: int
    recall: float
    precision: float
    f1: float


def cause_scores(
    labels: np.ndarray, scenarios: Sequence[str] | np.ndarray, cause: str
) -> CauseScore:
    """Best-matching cluster of ``cause`` and its recall, precision and F1.

    Parameters
    ----------
    labels
        ``(N,)`` cluster id per error (``-1``: noise, in no cluster).
    scenarios
        ``(N,)`` ground-truth scenario per error.
    cause
        The scenario scored.

    Returns
    -------
    CauseScore
        The cluster with the highest F1 (ties: the larger recall, then the smaller id); all
        zeros with ``cluster = -1`` if the cause has no clustered error.
    """
    lab = np.asarray(labels)
    hit = np.asarray(scenarios, dtype=object) == cause
    n = int(hit.sum())
    best = CauseScore(n, -1, 0.0, 0.0, 0.0)
    if n == 0:
        return best
    for cid in np.unique(lab[hit & (lab >= 0)]):
        members = lab == cid
        tp = int((members & hit).sum())
        recall, precision = tp / n, tp / int(members.sum())
        f1 = 2 * recall * precision / (recall + precision)
        if (f1, recall) > (best.f1, best.recall):
            best = CauseScore(n, int(cid), recall, precision, f1)
    return best


@dataclass(frozen=True)
class ClusterScores:
    """Agreement of a clustering with the ground-truth scenarios."""

    n_errors: int
    n_clusters: int
    purity: float
    purity_weighted: float
    coverage: float
    ari: float
    nmi: float
    noise_share: float
    variance_ratio_share: float
    uncovered: tuple[str, ...]
    purity_trivial: float = float("nan")
    causes: dict[str, CauseScore] = field(default_factory=dict)

    @property
    def min_f1(self) -> float:
        """Lowest per-cause F1 (NaN without causes)."""
        return min((c.f1 for c in self.causes.values()), default=float("nan"))

    @property
    def mean_f1(self) -> float:
        """Mean per-cause F1 (NaN without causes)."""
        f1 = [c.f1 for c in self.causes.values()]
        return float(np.mean(f1)) if f1 else float("nan")

    def table_columns(self, digits: int = 3) -> dict[str, Any]:
        """The scores every benchmark table reports, rounded: clusters, coverage, min and mean
        per-cause F1, purity and the one-cluster purity, noise share."""

        def r(v: float) -> float:
            return round(float(v), digits)

        return {
            "clusters": self.n_clusters,
            "coverage": r(self.coverage),
            "min F1": r(self.min_f1),
            "mean F1": r(self.mean_f1),
            "purity": r(self.purity),
            "purity (1 cluster)": r(self.purity_trivial),
            "noise share": r(self.noise_share),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "min_f1": self.min_f1, "mean_f1": self.mean_f1}


def score_clusters(
    labels: np.ndarray,
    scenarios: Sequence[str],
    metadata: pd.DataFrame | None = None,
    scenarios_to_cover: Sequence[str] | None = None,
) -> ClusterScores:
    """Score cluster ids against scenario tags.

    Parameters
    ----------
    labels
        Cluster id per error-inducing input; ``-1`` marks noise.
    scenarios
        Ground-truth scenario per input.
    metadata
        Optional numeric parameters per input, for the variance-ratio share.
    scenarios_to_cover
        The scenarios coverage and the per-cause scores are computed over (default: every
        scenario among the errors).

    Returns
    -------
    ClusterScores
        With ``causes``: one :class:`CauseScore` per scenario to cover (see
        :func:`cause_scores`), and ``purity_trivial``: the purity of putting every clustered
        error in one cluster.
    """
    labels = np.asarray(labels)
    scen = np.asarray(scenarios, dtype=object)
    n = len(labels)
    clustered = labels >= 0
    ids = np.unique(labels[clustered])
    purities, sizes, dominant = [], [], set()
    vr_hits = 0
    for cid in ids:
        members = np.flatnonzero(labels == cid)
        tags, counts = np.unique(scen[members], return_counts=True)
        purities.append(counts.max() / len(members))
        sizes.append(len(members))
        dominant.add(str(tags[np.argmax(counts)]))
        if metadata is not None:
            ratios = variance_ratios(metadata.reset_index(drop=True), members)
            vr_hits += any(r < VARIANCE_RATIO_THRESHOLD for r in ratios.values())
    wanted = sorted(set(map(str, scen))) if scenarios_to_cover is None else list(scenarios_to_cover)
    covered = [s for s in wanted if s in dominant]
    both = clustered.sum() > 1
    kept = scen[clustered]
    trivial = float(np.unique(kept, return_counts=True)[1].max() / len(kept)) if len(kept) else 0.0
    return ClusterScores(
        n_errors=n,
        n_clusters=len(ids),
        purity=float(np.mean(purities)) if purities else float("nan"),
        purity_weighted=float(np.average(purities, weights=sizes)) if purities else float("nan"),
        coverage=len(covered) / len(wanted) if wanted else float("nan"),
        ari=float(adjusted_rand_score(scen[clustered], labels[clustered]))
        if both
        else float("nan"),
        nmi=float(normalized_mutual_info_score(scen[clustered], labels[clustered]))
        if both
        else float("nan"),
        noise_share=float((~clustered).mean()) if n else 0.0,
        variance_ratio_share=vr_hits / len(ids)
        if len(ids) and metadata is not None
        else float("nan"),
        uncovered=tuple(s for s in wanted if s not in dominant),
        purity_trivial=trivial if len(kept) else float("nan"),
        causes={s: cause_scores(labels, scen, s) for s in wanted},
    )


@dataclass(frozen=True)
class Agreement:
    """How much two analyses of one run agree.

    Attributes
    ----------
    n_shared
        Errors clustered (not noise) by both analyses.
    ari
        Adjusted Rand index (Hubert & Arabie, Journal of Classification 1985) of the two
        partitions of the shared errors: 1 identical, about 0 as by chance; NaN with fewer than
        two shared errors.
    """

    n_shared: int
    ari: float


def cluster_agreement(first: dict[str, int], second: dict[str, int]) -> Agreement:
    """Agreement of two analyses' clusters on the errors both clustered.

    Parameters
    ----------
    first, second
        Cluster id per error id (``-1``: noise, left out), e.g. from two ``clusters.json``.
    """
    shared = sorted(k for k in first.keys() & second.keys() if first[k] >= 0 and second[k] >= 0)
    if len(shared) < 2:
        return Agreement(len(shared), float("nan"))
    a = [first[k] for k in shared]
    b = [second[k] for k in shared]
    return Agreement(len(shared), float(adjusted_rand_score(a, b)))
