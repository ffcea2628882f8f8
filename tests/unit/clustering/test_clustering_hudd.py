"""HUDD clustering numerics: distances, Ward cuts, WICD, gradient, Kneedle, k, layer choice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, fcluster
from scipy.spatial.distance import cdist, pdist
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, silhouette_score

from dnnsafety.clustering import (
    LayerClustering,
    canonical_labels,
    check_distance_matrix,
    cluster_indices,
    cluster_layer,
    condensed_distances,
    fourth_order_gradient,
    kneedle,
    max_k,
    pairwise_distances,
    row_max_normalise,
    select_layer,
    silhouette_curve,
    ward_tree,
    wicd_curve,
    wicd_of_labels,
)
from dnnsafety.clustering.hudd import symmetric_pairs
from dnnsafety.exceptions import ConfigError, InvalidInputError


def blobs(
    rng: np.random.Generator,
    sizes: tuple[int, ...] = (40, 25, 15, 10),
    dim: int = 50,
    spread: float = 6.0,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(len(sizes), dim)) * spread
    x = np.concatenate([c + rng.normal(size=(s, dim)) for c, s in zip(centres, sizes, strict=True)])
    return (x * scale).astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def brute_wicd(pair_value: np.ndarray, labels: np.ndarray) -> float:
    """The formula of METHOD.md §2 step 5, as a double loop over i < j."""
    n = len(labels)
    clusters = sorted(set(labels.tolist()))
    total = 0.0
    for c in clusters:
        members = [i for i in range(n) if labels[i] == c]
        if len(members) < 2:
            continue
        values = [pair_value[i, j] for a, i in enumerate(members) for j in members[a + 1 :]]
        total += len(members) / n * sum(values) / len(values)
    return total / len(clusters)


# --------------------------------------------------------------------------- distances


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_pairwise_distances_match_cdist(rng: np.random.Generator, chunk: int | None) -> None:
    x = rng.normal(size=(23, 40)) * 3 + 5
    d = pairwise_distances(x, chunk_rows=chunk)
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, cdist(x, x), rtol=1e-9, atol=1e-9)
    assert np.array_equal(d, d.T)
    assert np.all(np.diagonal(d) == 0) and d.min() >= 0
    np.testing.assert_allclose(condensed_distances(x, chunk_rows=chunk), pdist(x), rtol=1e-9)


def test_pairwise_distances_stream_a_memmap(rng: np.random.Generator, tmp_path: Path) -> None:
    x = rng.normal(size=(37, 4100)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    d = pairwise_distances(ro, chunk_rows=10)  # 10 does not divide 37
    np.testing.assert_allclose(d, cdist(x.astype(np.float64), x.astype(np.float64)), rtol=1e-9)


def test_identical_rows_are_exactly_zero_and_heatmaps_are_flattened(
    rng: np.random.Generator,
) -> None:
    x = rng.normal(size=(6, 2, 4, 4)).astype(np.float32) * 100
    x[3] = x[1]
    d = pairwise_distances(x, chunk_rows=4)
    assert d[1, 3] == 0.0 and d[3, 1] == 0.0
    flat = x.reshape(6, -1).astype(np.float64)
    np.testing.assert_allclose(d, cdist(flat, flat), rtol=1e-7, atol=1e-9)
    same = np.repeat(x[:1], 9, axis=0)
    assert pairwise_distances(same).max() == 0.0


@pytest.mark.parametrize(
    "bad",
    [np.zeros(5), np.array([["a", "b"]]), np.array([[1.0, np.nan], [0.0, 1.0]])],
)
def test_pairwise_distances_reject_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        pairwise_distances(bad)


def test_pairwise_distances_empty_and_bad_chunk() -> None:
    assert pairwise_distances(np.zeros((0, 3))).shape == (0, 0)
    with pytest.raises(InvalidInputError, match="chunk_rows"):
        pairwise_distances(np.zeros((2, 3)), chunk_rows=0)


def test_check_distance_matrix_rejects_non_metrics() -> None:
    good = cdist(np.eye(3), np.eye(3))
    assert check_distance_matrix(good) is good
    for bad, match in [
        (np.zeros((2, 3)), "square"),
        (good - 2.0, "negative"),
        (good + np.triu(np.ones((3, 3)), 1), "symmetric"),
        (good + np.eye(3), "diagonal"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            check_distance_matrix(bad)


def test_row_max_normalise() -> None:
    d = np.array([[0.0, 2.0, 4.0], [2.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    dh = row_max_normalise(d)
    np.testing.assert_allclose(dh.max(axis=1), 1.0)
    np.testing.assert_allclose(dh[1], [1.0, 0.0, 0.5])
    assert np.array_equal(row_max_normalise(np.zeros((3, 3))), np.zeros((3, 3)))
    with pytest.raises(InvalidInputError):
        row_max_normalise(np.zeros((2, 3)))


# --------------------------------------------------------------------------- gradient, knee


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("n", [5, 6, 12])
def test_fourth_order_gradient_exact_on_polynomials(degree: int, n: int) -> None:
    coef = np.arange(1.0, degree + 2.0)[::-1]  # x^d + 2 x^(d-1) + ...
    h = 4.0
    x = 3.0 + h * np.arange(n)
    y = np.polyval(coef, x)
    expected = np.polyval(np.polyder(coef), x) if degree else np.zeros(n)
    np.testing.assert_allclose(fourth_order_gradient(y, step=h), expected, rtol=1e-9, atol=1e-8)


def test_fourth_order_gradient_stencils_match_taylor_weights() -> None:
    """Weights from solving the Vandermonde system for each point's 5 offsets."""
    n = 9
    matrix = np.zeros((n, n))
    for i in range(n):
        lo = min(max(i - 2, 0), n - 5)
        offsets = np.arange(lo, lo + 5) - i
        vander = np.vander(offsets.astype(float), 5, increasing=True).T
        rhs = np.zeros(5)
        rhs[1] = 1.0
        matrix[i, lo : lo + 5] = np.linalg.solve(vander, rhs)
    y = np.random.default_rng(3).normal(size=n)
    np.testing.assert_allclose(fourth_order_gradient(y, step=1.0), matrix @ y, atol=1e-12)
    np.testing.assert_allclose(fourth_order_gradient(y, step=4.0), matrix @ y / 4, atol=1e-12)


def test_fourth_order_gradient_needs_five_points() -> None:
    with pytest.raises(InvalidInputError, match="at least 5"):
        fourth_order_gradient(np.arange(4.0))
    with pytest.raises(ConfigError):
        fourth_order_gradient(np.arange(6.0), step=0.0)


def test_kneedle_piecewise_linear_corner() -> None:
    x = np.arange(101.0)
    assert kneedle(x, np.minimum(x, 30.0)) == 30
    assert kneedle(x, np.maximum(x - 70.0, 0.0), curve="convex") == 70
    assert kneedle(x, np.minimum(0.0, 70.0 - x), direction="decreasing") == 70
    assert kneedle(x, np.maximum(30.0 - x, 0.0), curve="convex", direction="decreasing") == 30


def test_kneedle_saturating_exponential_matches_analytic_knee() -> None:
    # y = 1 - exp(-a x) on [0, 1]: the normalised slope is 1 at x* = ln(a / (1 - e^-a)) / a.
    a = 10.0
    x = np.linspace(0.0, 1.0, 101)
    x_star = math.log(a / (1 - math.exp(-a))) / a
    assert kneedle(x, 1 - np.exp(-a * x)) == round(x_star * 100)


def test_kneedle_logistic_knee_is_in_the_concave_part() -> None:
    x = np.arange(101.0)
    y = 1 / (1 + np.exp(-(x - 50) / 5))
    knee = kneedle(x, y)
    # analytic: normalised slope 1 => sigma(u)(1 - sigma(u)) = 5 / 100 * (range of y)
    yn_range = y[-1] - y[0]
    p = (1 + math.sqrt(1 - 4 * 0.05 * yn_range)) / 2
    x_star = 50 + 5 * math.log(p / (1 - p))
    assert knee is not None and abs(knee - x_star) <= 1


def test_kneedle_no_knee() -> None:
    x = np.arange(50.0)
    assert kneedle(x, 2 * x + 1) is None  # straight line
    assert kneedle(x, np.ones(50)) is None  # flat
    assert kneedle(x, x**2) is None  # convex, looked at as concave
    assert kneedle(x[:2], x[:2]) is None  # too short


def test_kneedle_sensitivity_and_validation() -> None:
    x = np.arange(41.0)
    y = np.minimum(x, 20.0) + 0.9 * np.maximum(x - 20.0, 0.0)  # slope 1 then 0.9
    assert kneedle(x, y, sensitivity=0.1) == 20
    assert kneedle(x, y, sensitivity=5.0) is None
    with pytest.raises(InvalidInputError):
        kneedle(x[::-1], y)
    with pytest.raises(ConfigError):
        kneedle(x, y, curve="wavy")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Ward cuts, WICD


def test_max_k() -> None:
    assert [max_k(n) for n in (0, 1, 2, 3, 4, 11, 1000, 1001, 5000)] == [
        0,
        1,
        2,
        2,
        2,
        5,
        500,
        500,
        500,
    ]
    assert max_k(100, cap=10) == 10


def test_cuts_match_cut_tree_without_ties(rng: np.random.Generator) -> None:
    x = rng.normal(size=(30, 5))
    tree = ward_tree(row_max_normalise(pairwise_distances(x)))
    for k in range(1, 31):
        labels = tree.labels(k)
        assert labels.max() + 1 == k
        reference = cut_tree(tree.linkage, n_clusters=[k])[:, 0]
        assert np.array_equal(labels, canonical_labels(reference))
    sizes = np.bincount(tree.labels(5))
    assert np.all(np.diff(sizes) <= 0)  # id 0 is the largest cluster


def test_cuts_have_exactly_k_nested_clusters_with_tied_heights(rng: np.random.Generator) -> None:
    x = rng.normal(size=(30, 5))
    x[10:16] = x[10]  # six identical inputs: five merges at height 0
    x[20:23] = x[21]
    tree = ward_tree(row_max_normalise(pairwise_distances(x)))
    fewer = []
    for k in range(1, 31):
        labels = tree.labels(k)
        assert labels.max() + 1 == k
        if k > 1:  # each cut refines the next coarser one
            coarse = tree.labels(k - 1)
            assert all(len(set(coarse[labels == c].tolist())) == 1 for c in range(k))
        fewer.append(fcluster(tree.linkage, k, criterion="maxclust").max() < k)
    assert any(fewer)  # what the cut avoids: fcluster gives fewer clusters on ties


@pytest.mark.parametrize("rule", ["mean", "upper"])
def test_wicd_curve_matches_brute_force(rng: np.random.Generator, rule: str) -> None:
    x = rng.normal(size=(27, 6))
    d = pairwise_distances(x)
    dh = row_max_normalise(d)
    assert not np.allclose(dh, dh.T)
    # "upper" is the literal formula: D^[i, j] for i < j in input order
    value = (dh + dh.T) / 2 if rule == "mean" else dh
    tree = ward_tree(dh)
    ks = np.arange(1, 28)
    curve = wicd_curve(tree, symmetric_pairs(dh.copy(), rule, chunk_rows=5), ks)  # type: ignore[arg-type]
    for k in (1, 2, 3, 5, 8, 13, 27):
        labels = tree.labels(k)
        assert curve[k - 1] == pytest.approx(brute_wicd(value, labels), rel=1e-12, abs=1e-15)
    assert wicd_of_labels(d, tree.labels(4)) == pytest.approx(brute_wicd(d, tree.labels(4)))


def test_silhouette_curve_matches_sklearn(rng: np.random.Generator) -> None:
    x, _ = blobs(rng, sizes=(12, 9, 7), dim=4, spread=2.0)
    d = pairwise_distances(x)
    tree = ward_tree(row_max_normalise(d))
    ks = np.arange(2, 15)
    curve = silhouette_curve(tree, d, ks, chunk_rows=8)
    for k, value in zip(ks, curve, strict=True):
        expected = silhouette_score(d, tree.labels(int(k)), metric="precomputed")
        assert value == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- indices


def test_indices_match_references(rng: np.random.Generator) -> None:
    x, truth = blobs(rng, sizes=(11, 8, 5, 1), dim=7, spread=3.0)
    x64 = x.astype(np.float64)
    d = pairwise_distances(x64)
    idx = cluster_indices(d, truth * 7 + 3, chunk_rows=6)  # arbitrary label values
    assert idx["silhouette"] == pytest.approx(silhouette_score(d, truth, metric="precomputed"))
    assert idx["davies_bouldin"] == pytest.approx(davies_bouldin_score(x64, truth), rel=1e-9)
    same = truth[:, None] == truth[None, :]
    assert idx["dunn"] == pytest.approx(d[~same].min() / d[same].max())
    assert idx["wicd"] == pytest.approx(brute_wicd(d, truth))
    icd = [
        d[np.ix_(truth == c, truth == c)].sum() / ((truth == c).sum() ** 2 - (truth == c).sum())
        for c in range(3)
    ]
    assert idx["icd"] == pytest.approx(np.mean(icd))
    assert idx["n_clusters"] == 4 and idx["n_singletons"] == 1
    one = cluster_indices(d, np.zeros(len(truth), dtype=int))
    assert math.isnan(one["silhouette"]) and math.isnan(one["dunn"])


# --------------------------------------------------------------------------- cluster_layer


def test_planted_blobs(rng: np.random.Generator) -> None:
    x, truth = blobs(rng)
    res = cluster_layer(x, layer="conv3")
    # The tree separates the blobs exactly ...
    tree_labels = ward_tree(row_max_normalise(pairwise_distances(x))).labels(4)
    assert adjusted_rand_score(truth, tree_labels) == 1.0
    # ... HUDD's gradient knee over-splits a sharp elbow by one (documented); clusters stay pure.
    assert res.k_reason == "knee" and res.k == res.knee_k == 5
    for c in range(res.k):
        assert len(set(truth[res.labels == c].tolist())) == 1
    assert res.ks[0] == 2 and res.ks[-1] == max_k(len(x))
    assert res.wicd.shape == res.gradient.shape == res.ks.shape
    # silhouette picks the planted k and recovers the blobs exactly
    sil = cluster_layer(x, k_rule="silhouette")
    assert sil.k == 4 and sil.k_reason == "silhouette"
    assert adjusted_rand_score(truth, sil.labels) == 1.0
    assert np.array_equal(sil.sizes, [40, 25, 15, 10])
    assert sil.indices["silhouette"] > 0.8


def test_precomputed_equals_features_and_is_deterministic(rng: np.random.Generator) -> None:
    x, _ = blobs(rng, sizes=(20, 14, 9), dim=30)
    a = cluster_layer(x)
    b = cluster_layer(pairwise_distances(x), precomputed=True)
    c = cluster_layer(x)
    for other in (b, c):
        assert np.array_equal(a.labels, other.labels)
        assert np.array_equal(a.wicd, other.wicd)
        assert np.array_equal(a.linkage, other.linkage)
        assert a.k == other.k and a.indices == other.indices
    with pytest.raises(ValueError):
        a.labels[0] = 3  # results are read-only


def test_default_pair_rule_does_not_depend_on_input_order(rng: np.random.Generator) -> None:
    x, _ = blobs(rng, sizes=(20, 14, 9), dim=30, spread=1.5)
    perm = rng.permutation(len(x))
    a = cluster_layer(x)
    b = cluster_layer(x[perm])
    np.testing.assert_allclose(a.wicd, b.wicd, rtol=1e-10)
    assert a.k == b.k
    assert np.array_equal(a.labels[perm], b.labels)


def test_edge_cases_have_clear_outcomes() -> None:
    empty = cluster_layer(np.zeros((0, 8)))
    assert (empty.k, empty.k_reason, empty.labels.shape) == (0, "empty", (0,))
    one = cluster_layer(np.ones((1, 8)))
    assert (one.k, one.k_reason, one.labels.tolist()) == (1, "single-input", [0])
    two = cluster_layer(np.eye(2, 8))
    assert (two.k, two.k_reason, two.labels.tolist()) == (1, "two-inputs", [0, 0])
    same = cluster_layer(np.tile(np.arange(8.0), (20, 1)))
    assert (same.k, same.k_reason) == (1, "identical-inputs")
    assert np.all(same.labels == 0) and same.indices["wicd"] == 0.0


@pytest.mark.parametrize("n", [3, 4, 5, 6, 11])
def test_small_n_uses_the_silhouette_fallback(rng: np.random.Generator, n: int) -> None:
    res = cluster_layer(rng.normal(size=(n, 5)))
    assert res.k_reason == "few-k-silhouette"
    assert res.knee_k is None and res.gradient.size == 0
    assert res.k in res.ks and res.labels.max() + 1 == res.k
    assert res.k == int(res.ks[np.argmax(res.silhouette_curve)])


def test_twelve_inputs_use_the_gradient(rng: np.random.Generator) -> None:
    res = cluster_layer(rng.normal(size=(12, 5)))
    assert res.ks.tolist() == [2, 3, 4, 5, 6]
    assert res.gradient.size == 5
    assert res.k_reason in ("knee", "no-knee-silhouette")


def test_no_knee_falls_back_to_silhouette(rng: np.random.Generator) -> None:
    res = cluster_layer(rng.normal(size=(40, 3)), sensitivity=1e6)  # no drop is ever enough
    assert res.knee_k is None and res.k_reason == "no-knee-silhouette"
    assert res.k == int(res.ks[np.nanargmax(res.silhouette_curve)])


def test_cluster_layer_rejects_bad_options(rng: np.random.Generator) -> None:
    x = rng.normal(size=(10, 3))
    for kwargs in (
        {"max_k_cap": 1},
        {"pair_rule": "lower"},
        {"gradient_step": -1.0},
        {"sensitivity": -1.0},
        {"k_rule": "elbow"},
    ):
        with pytest.raises(ConfigError):
            cluster_layer(x, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        cluster_layer(np.zeros((3, 4)), precomputed=True)


# --------------------------------------------------------------------------- layer selection


def test_select_layer_compat_prefers_small_scale_default_prefers_separation() -> None:
    rng = np.random.default_rng(1)
    mixed, _ = blobs(rng, sizes=(30, 30), dim=20, spread=0.3, scale=0.01)  # tiny, overlapping
    clear, _ = blobs(rng, sizes=(30, 30), dim=20, spread=6.0, scale=100.0)  # big, separated
    results: dict[str, LayerClustering] = {
        "input": cluster_layer(clear * 1e-5, layer="input", is_input=True),
        "mixed": cluster_layer(mixed, layer="mixed"),
        "clear": cluster_layer(clear, layer="clear"),
    }
    assert results["mixed"].indices["wicd"] < results["clear"].indices["wicd"]
    assert select_layer(results, "compat") == "mixed"
    assert select_layer(results, "default") == "clear"
    assert select_layer(results, "default", exclude={"clear"}) == "mixed"
    # the input layer is never selected even though its raw WICD is the lowest
    assert results["input"].indices["wicd"] < results["mixed"].indices["wicd"]
    with pytest.raises(InvalidInputError):
        select_layer({"input": results["input"]})
    with pytest.raises(ConfigError):
        select_layer(results, "best")  # type: ignore[arg-type]


def test_select_layer_skips_degenerate_layers() -> None:
    flat = cluster_layer(np.zeros((10, 4)), layer="flat")
    rng = np.random.default_rng(2)
    real = cluster_layer(blobs(rng, sizes=(10, 10), dim=5)[0] * 1e3, layer="real")
    assert flat.indices["wicd"] == 0.0
    assert select_layer({"flat": flat, "real": real}, "compat") == "real"
    assert select_layer({"flat": flat}, "compat") == "flat"


# --------------------------------------------------------------------------- identical inputs


def test_copies_share_their_cluster(rng: np.random.Generator) -> None:
    # six distinct heatmaps, eight copies each: the knee used to pick k = 7 and split copies
    distinct = rng.normal(size=(6, 50))
    x = np.repeat(distinct, 8, axis=0)
    source = np.repeat(np.arange(6), 8)
    res = cluster_layer(x, layer="l")
    assert all(np.unique(res.labels[source == s]).size == 1 for s in range(6))
    assert res.ks.max() == 6  # no cut finer than the distinct inputs
    # the same through a precomputed D whose copies differ by rounding, as the HUDD analysis
    # (pipeline/analyze/hudd.py) calls it
    d = pairwise_distances(x)
    assert np.count_nonzero(d == 0) == 6 * 8 * 8
    assert cluster_layer(d, precomputed=True).labels.tolist() == res.labels.tolist()


def test_copies_among_distinct_inputs_weigh_as_often_as_they_occur(
    rng: np.random.Generator,
) -> None:
    x, y = blobs(rng, sizes=(30, 25, 20))
    copied = np.array([0, 5, 31, 47, 70])
    times = np.array([3, 1, 4, 2, 6])
    full = np.concatenate([x, np.repeat(x[copied], times, axis=0)])
    source = np.concatenate([np.arange(len(x)), np.repeat(copied, times)])
    res = cluster_layer(full)
    assert all(np.unique(res.labels[source == s]).size == 1 for s in copied)
    truth = y[source]
    assert all(np.unique(truth[res.labels == c]).size == 1 for c in range(res.k))  # pure
    assert res.sizes.sum() == len(full)  # every copy is a member


def test_two_distinct_inputs_among_many_are_one_cluster() -> None:
    x = np.array([[0.0, 0.0]] * 4 + [[3.0, 1.0]] * 5)
    res = cluster_layer(x)
    assert (res.k, res.k_reason, res.labels.tolist()) == (1, "two-inputs", [0] * 9)


def test_zero_distance_groups() -> None:
    from dnnsafety.clustering import zero_distance_groups

    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [0.0, 1.0]])
    groups = zero_distance_groups(pairwise_distances(x), chunk_rows=2)
    assert groups.inverse.tolist() == [0, 1, 0, 2, 1]
    assert groups.counts.tolist() == [2, 2, 1]
    assert not zero_distance_groups(pairwise_distances(x[:2])).has_duplicates
