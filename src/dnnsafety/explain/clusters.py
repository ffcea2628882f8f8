"""Per-cluster summaries: members, medoid, representatives, labels, metadata statistics and
interval rules over the metadata (:mod:`dnnsafety.explain.rules`).

The metadata check is HUDD's RQ1 criterion (METHOD.md §5): a cluster "captures a cause" when
some parameter's variance inside it is below half of that parameter's variance over all
error-inducing inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dnnsafety.explain.rules import cluster_rules

VARIANCE_RATIO_THRESHOLD = 0.5
DISTINCT_SHIFT = 1.0


def _medoid(d: np.ndarray, members: np.ndarray) -> int:
    block = d[np.ix_(members, members)]
    return int(members[np.argmin(block.sum(axis=1))])


def _distribution(values: Iterable[Any], names: Sequence[str] | None = None) -> dict[str, int]:
    counts = pd.Series(list(values)).value_counts()
    out: dict[str, int] = {}
    for key, n in counts.items():
        label = names[int(str(key))] if names is not None else str(key)
        out[label] = int(n)
    return out


def confusions(
    true: Sequence[int], predicted: Sequence[int], names: Sequence[str], limit: int = 5
) -> list[dict[str, Any]]:
    """The most common (true, predicted) pairs of a cluster's members, most common first.

    The two label distributions alone can mislead: their two most common values need not
    occur together in any member (e.g. most members are coats, most predictions are bags,
    yet no coat was called a bag). Ties go to the lower true, then predicted, class index.

    Parameters
    ----------
    true, predicted
        Class index per member.
    names
        Class names.
    limit
        Number of pairs kept.

    Returns
    -------
    list of dict
        ``{"true", "predicted", "count", "share"}`` per pair; ``share`` is of the members.
    """
    pairs = list(zip((int(t) for t in true), (int(p) for p in predicted), strict=True))
    ranked = sorted(Counter(pairs).items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [
        {"true": names[t], "predicted": names[p], "count": n, "share": n / len(pairs)}
        for (t, p), n in ranked
    ]


def variance_ratios(meta: pd.DataFrame, members: np.ndarray) -> dict[str, float]:
    """Variance of each numeric metadata column inside ``members`` / over all rows."""
    out: dict[str, float] = {}
    if len(members) < 2 or len(meta) < 2:
        return out
    numeric = meta.select_dtypes(include=[np.number])
    for col in numeric.columns:
        values = numeric[col].to_numpy(dtype=np.float64)
        inside = values[members]
        if np.isfinite(values).sum() < 2 or np.isfinite(inside).sum() < 2:
            continue
        total = np.nanvar(values)
        if total <= 0:
            continue
        out[str(col)] = float(np.nanvar(inside) / total)
    return out


def distinctive_parameters(
    meta: pd.DataFrame, members: np.ndarray, ratios: dict[str, float]
) -> list[dict[str, float | str]]:
    """Parameters that set a cluster apart: low variance inside it *and* a shifted mean.

    HUDD's variance check alone flags parameters that are merely constant in most images
    (e.g. fog in every non-foggy cluster). Here a parameter also needs its cluster mean at
    least :data:`DISTINCT_SHIFT` standard deviations (over all errors) away from the mean of the
    other errors. Sorted by that shift, largest first. A parameter that is extreme in both
    directions inside a cluster (e.g. tilt either way) has no shifted mean and is not listed.
    """
    out: list[dict[str, float | str]] = []
    for param, ratio in ratios.items():
        if ratio >= VARIANCE_RATIO_THRESHOLD:
            continue
        values = meta[param].to_numpy(dtype=np.float64)
        rest = np.ones(len(values), dtype=bool)
        rest[members] = False
        if not np.isfinite(values[rest]).any():
            continue
        mean_all, std_all = float(np.nanmean(values)), float(np.nanstd(values))
        mean_c, mean_rest = float(np.nanmean(values[members])), float(np.nanmean(values[rest]))
        shift = (mean_c - mean_rest) / std_all if std_all > 0 else 0.0
        if abs(shift) >= DISTINCT_SHIFT:
            out.append(
                {
                    "parameter": param,
                    "direction": "high" if shift > 0 else "low",
                    "cluster_mean": mean_c,
                    "all_errors_mean": mean_all,
                    "shift_in_std": shift,
                    "variance_ratio": ratio,
                }
            )
    return sorted(out, key=lambda d: -abs(float(d["shift_in_std"])))


def _meta_summary(meta: pd.DataFrame, members: np.ndarray) -> dict[str, Any]:
    part = meta.iloc[members]
    summary: dict[str, Any] = {}
    for col in meta.columns:
        values = part[col]
        if pd.api.types.is_numeric_dtype(values):
            v = values.to_numpy(dtype=np.float64)
            if np.isnan(v).all():
                continue
            summary[str(col)] = {
                "mean": float(np.nanmean(v)),
                "std": float(np.nanstd(v)),
                "min": float(np.nanmin(v)),
                "max": float(np.nanmax(v)),
            }
        else:
            counts = values.astype(str).value_counts()
            summary[str(col)] = {
                "top": str(counts.index[0]),
                "share": float(counts.iloc[0] / len(values)),
            }
    return summary


def describe_clusters(
    labels: np.ndarray,
    distances: np.ndarray,
    errors: pd.DataFrame,
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """One JSON-ready summary per cluster.

    Parameters
    ----------
    labels
        Cluster id per error-inducing input (``0..K-1``).
    distances
        Raw ``N x N`` distances at the layer the clusters come from.
    errors
        The error rows of ``samples.parquet`` in the same order (``sample_id``, ``label``,
        ``pred``, ``scenario`` and ``meta.*`` columns).
    class_names
        Names of the classes, for the label distributions.
    """
    n = len(labels)
    meta_cols = [c for c in errors.columns if c.startswith("meta.")]
    meta = errors[meta_cols].rename(columns=lambda c: c[5:]) if meta_cols else None
    ids = errors["sample_id"].astype(str).to_numpy()
    rules = cluster_rules(meta, labels) if meta is not None and n else {}
    out = []
    for cid in range(int(labels.max()) + 1 if n else 0):
        members = np.flatnonzero(labels == cid)
        medoid = _medoid(distances, members)
        to_medoid = distances[medoid, members]
        order = members[np.argsort(to_medoid, kind="stable")]
        nearest = [int(i) for i in order if i != medoid][:3]
        farthest = [int(i) for i in order[::-1] if i != medoid][:3]
        entry: dict[str, Any] = {
            "id": cid,
            "size": len(members),
            "share_of_errors": len(members) / n,
            "members": ids[members].tolist(),
            "medoid": str(ids[medoid]),
            "representatives": {
                "medoid": str(ids[medoid]),
                "nearest": ids[nearest].tolist(),
                "farthest": ids[farthest].tolist(),
            },
            "mean_distance_to_medoid": float(to_medoid.mean()),
            "true_labels": _distribution(errors["label"].iloc[members], class_names),
            "predicted_labels": _distribution(errors["pred"].iloc[members], class_names),
            "confusions": confusions(
                errors["label"].iloc[members].tolist(),
                errors["pred"].iloc[members].tolist(),
                class_names,
            ),
            "scenarios": _distribution(errors["scenario"].iloc[members]),
        }
        if meta is not None:
            ratios = variance_ratios(meta, members)
            entry["metadata"] = _meta_summary(meta, members)
            entry["variance_ratio"] = ratios
            low = sorted((r, p) for p, r in ratios.items() if r < VARIANCE_RATIO_THRESHOLD)
            entry["captures_cause"] = bool(low)
            entry["shared_parameters"] = [p for _, p in low]
            entry["distinctive_parameters"] = distinctive_parameters(meta, members, ratios)
            entry["rules"] = [rule.to_dict() for rule in rules.get(cid, [])]
        out.append(entry)
    return out
