"""HUDD's compat mode picks the same ``k`` as the released tool on the same heatmaps.

The reference below re-implements the released tool's k selection from its published source
(``clusterModule.HACluster`` with ``selection="KG"``): rows of ``D`` divided by their maximum,
SciPy Ward linkage with optimal leaf ordering, ``fcluster(maxclust)`` cuts for ``k`` in
``2..maxK``, WICD on the upper triangle of ``D^``, ``gradientO4`` (5-point stencil inside,
first differences at both ends, step 4) and the knee of ``kneed.KneeLocator`` (concave,
increasing, S = 1: maxima and minima with ``argrelextrema``, threshold reset at minima).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.signal import argrelextrema
from scipy.spatial.distance import pdist

from dnnsafety.clustering import cluster_layer, pairwise_distances
from dnnsafety.clustering.hudd import fourth_order_gradient


def _planted(n: int, dim: int = 4096, clusters: int = 8, seed: int = 0) -> np.ndarray:
    """Inputs around ``clusters`` centres with sizes ~ 1/rank (benchmarks/bench_hudd_clustering)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, clusters + 1)
    sizes = np.floor(weights / weights.sum() * n).astype(int)
    sizes[0] += n - sizes.sum()
    truth = np.repeat(np.arange(clusters), sizes)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 1000):
        stop = min(start + 1000, n)
        x[start:stop] = centres[truth[start:stop]] + rng.standard_normal(
            (stop - start, dim), dtype=np.float32
        )
    return x


def _tool_gradient(f: np.ndarray, step: float = 4.0) -> np.ndarray:
    out = np.zeros_like(f)
    out[2:-2] = (f[:-4] - 8.0 * f[1:-3] + 8.0 * f[3:-1] - f[4:]) / 12.0
    out[:2] = f[1:3] - f[:2]
    out[-2:] = f[-2:] - f[-3:-1]
    return out / step


def _kneed_knee(x: np.ndarray, y: np.ndarray, s: float = 1.0) -> float | None:
    """``KneeLocator(x, y, curve="concave", direction="increasing", S=s).knee``."""
    xn = (x - x.min()) / (x.max() - x.min())
    yn = (y - y.min()) / (y.max() - y.min())
    yd = yn - xn
    maxima = argrelextrema(yd, np.greater_equal)[0]
    minima = argrelextrema(yd, np.less_equal)[0]
    thresholds = yd[maxima] - s * np.abs(np.diff(xn).mean())
    seen, threshold, at = 0, 0.0, 0
    for i, xi in enumerate(xn):
        if i < maxima[0]:
            continue
        if xi == 1.0:
            break
        if (maxima == i).any():
            threshold, at, seen = thresholds[seen], i, seen + 1
        if (minima == i).any():
            threshold = 0.0
        if yd[i + 1] < threshold:
            return float(x[at])
    return None


def _released_tool_k(d: np.ndarray) -> int:
    dh = d / np.abs(d).max(axis=1, keepdims=True)  # sklearn normalize(norm="max")
    z = linkage(pdist(dh), method="ward", optimal_ordering=True)
    n = len(d)
    iu = np.triu_indices(n, 1)
    ks = np.arange(2, min(max(n // 2, 2), 500) + 1)
    wicd = []
    for k in ks:
        lab = fcluster(z, t=k, criterion="maxclust")
        same = lab[iu[0]] == lab[iu[1]]
        sums = np.bincount(lab[iu[0]][same], weights=dh[iu][same], minlength=k + 1)
        sizes = np.bincount(lab, minlength=k + 1).astype(float)
        pairs = sizes * (sizes - 1) / 2
        ok = pairs > 0
        wicd.append(float(np.sum(sums[ok] / pairs[ok] * sizes[ok] / n)) / lab.max())
    knee = _kneed_knee(ks.astype(float), _tool_gradient(np.asarray(wicd)))
    assert knee is not None
    return int(knee)


def test_first_difference_ends_match_the_tool_gradient() -> None:
    y = np.random.default_rng(0).normal(size=40).cumsum()
    np.testing.assert_allclose(
        fourth_order_gradient(y, 4.0, ends="first-difference"), _tool_gradient(y), atol=1e-12
    )


def test_compat_k_equals_the_released_tool_at_n500() -> None:
    d = pairwise_distances(_planted(500, seed=500))
    tool = _released_tool_k(d)
    compat = cluster_layer(d, precomputed=True, pair_rule="upper", gradient_ends="first-difference")
    default = cluster_layer(d, precomputed=True, pair_rule="upper")
    assert tool == 13  # the released tool's choice (issue 13: 13/16/16 at N = 500/1000/2000)
    assert compat.k == tool
    assert default.k == tool - 1  # the 4th-order end stencils (default) stop one k earlier
