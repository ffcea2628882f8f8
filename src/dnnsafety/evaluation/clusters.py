"""How well root-cause clusters match the ground-truth scenarios (METHOD.md §5).

* purity of a cluster: share of its members from its dominant scenario; reported as the
  unweighted mean over clusters and weighted by cluster size;
* coverage: share of the scenarios present among the errors that are the dominant scenario of
  at least one cluster;
* ARI / NMI against the scenario labels (secondary);
* variance-ratio share: share of clusters with some metadata parameter whose variance inside
  the cluster is below half its variance over all errors (HUDD's RQ1 check).

Noise points (label -1) are left out of purity and coverage and reported as ``noise_share``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dnnsafety.explain.clusters import VARIANCE_RATIO_THRESHOLD, variance_ratios


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        The scenarios coverage is computed over (default: every scenario among the errors).
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
    )
