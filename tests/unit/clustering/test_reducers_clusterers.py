"""Reducers and clusterers of the black-box (SAFE) pipeline.

Contract tests run over every registered reducer and clusterer; planted-structure tests check
that well-separated Gaussian blobs are recovered (and background noise left as noise).
UMAP is compiled by numba on first use, so its fitted models are shared via fixtures.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from dnnsafety.clustering.clusterers import (
    CLUSTERERS,
    Clusterer,
    DBSCANClusterer,
    HDBSCANClusterer,
    KMeansClusterer,
    SilhouetteScorer,
    WardClusterer,
    finalize_labels,
    search_k_by_silhouette,
)
from dnnsafety.clustering.reducers import (
    REDUCERS,
    IdentityReducer,
    PCAReducer,
    Reducer,
    UMAPReducer,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError, NotFittedError

N_PER_BLOB = 60
N_BLOBS = 4
DIM = 30
SEPARATION = 12.0


def blobs(
    n_per: int = N_PER_BLOB, *, n_noise: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Four unit-variance Gaussian blobs in 30-D (centres 17 apart), then uniform noise.

    Noise points are drawn uniformly from the blobs' bounding box widened by 15 on each side
    and get the label -1.
    """
    rng = np.random.default_rng(seed)
    centres = np.eye(N_BLOBS, DIM) * SEPARATION
    x = np.vstack([c + rng.normal(size=(n_per, DIM)) for c in centres])
    y = np.repeat(np.arange(N_BLOBS), n_per)
    if n_noise:
        lo, hi = x.min(axis=0) - 15.0, x.max(axis=0) + 15.0
        x = np.vstack([x, rng.uniform(lo, hi, size=(n_noise, DIM))])
        y = np.concatenate([y, np.full(n_noise, -1)])
    return x, y


def small_blobs(seed: int = 0) -> np.ndarray:
    """48 x 8 data with three clusters, for the cheap contract tests."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 10.0
    return np.vstack([c + rng.normal(size=(16, 8)) for c in centres])


@pytest.fixture(scope="module")
def fitted_reducers() -> dict[str, tuple[Reducer, np.ndarray]]:
    """Every reducer fitted once on :func:`small_blobs`, with its fit_transform output."""
    x = small_blobs()
    out: dict[str, tuple[Reducer, np.ndarray]] = {}
    for name in REDUCERS.names():
        reducer = REDUCERS.get(name)(random_state=0)
        out[name] = (reducer, reducer.fit_transform(x))
    return out


@pytest.fixture(scope="module")
def umap_blobs() -> tuple[UMAPReducer, np.ndarray, np.ndarray, np.ndarray]:
    """UMAP fitted on the 4 blobs: reducer, data, labels, embedding."""
    x, y = blobs()
    reducer = UMAPReducer(random_state=0)
    return reducer, x, y, reducer.fit_transform(x)


def sizes_decrease(labels: np.ndarray) -> bool:
    sizes = np.bincount(labels[labels >= 0])
    return bool(np.all(np.diff(sizes) <= 0))


# --------------------------------------------------------------------------- reducer contract


@pytest.mark.parametrize("name", REDUCERS.names())
def test_reducer_shapes_and_new_points(
    name: str, fitted_reducers: dict[str, tuple[Reducer, np.ndarray]]
) -> None:
    reducer, z = fitted_reducers[name]
    x = small_blobs()
    assert z.shape == (x.shape[0], reducer.n_components_)
    assert z.dtype == np.float64 and np.isfinite(z).all()
    assert reducer.n_features_in_ == x.shape[1]
    new = reducer.transform(small_blobs(seed=1)[:5])
    assert new.shape == (5, reducer.n_components_) and np.isfinite(new).all()
    assert reducer.transform(np.zeros((0, x.shape[1]))).shape == (0, reducer.n_components_)
    json.dumps(reducer.params_)


@pytest.mark.parametrize("name", REDUCERS.names())
def test_reducer_deterministic_under_seed(
    name: str, fitted_reducers: dict[str, tuple[Reducer, np.ndarray]]
) -> None:
    _, z = fitted_reducers[name]
    again = REDUCERS.get(name)(random_state=0).fit_transform(small_blobs())
    np.testing.assert_allclose(again, z, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", REDUCERS.names())
def test_reducer_not_fitted(name: str) -> None:
    reducer = REDUCERS.get(name)()
    with pytest.raises(NotFittedError, match="fit"):
        reducer.transform(small_blobs())
    with pytest.raises(NotFittedError):
        _ = reducer.n_components_
    assert not hasattr(reducer, "params_")
    with pytest.raises(AttributeError):
        _ = reducer.no_such_thing  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", REDUCERS.names())
def test_reducer_bad_input(
    name: str, fitted_reducers: dict[str, tuple[Reducer, np.ndarray]]
) -> None:
    x = small_blobs()
    bad = x.copy()
    bad[3, 2] = np.nan
    reducer = REDUCERS.get(name)()
    with pytest.raises(InvalidInputError, match=r"NaN or infinite.*row 3"):
        reducer.fit(bad)
    with pytest.raises(InvalidInputError, match="2-D"):
        reducer.fit(x[:, 0])
    with pytest.raises(InvalidInputError, match="at least"):
        reducer.fit(x[:1])
    with pytest.raises(InvalidInputError, match="numeric"):
        reducer.fit([["a", "b"], ["c", "d"]])
    fitted, _ = fitted_reducers[name]
    with pytest.raises(InvalidInputError, match=r"7 features.*fitted with 8"):
        fitted.transform(x[:, :7])
    with pytest.raises(InvalidInputError, match="NaN"):
        fitted.transform(bad)


@pytest.mark.parametrize("name", REDUCERS.names())
def test_reducer_bad_seed(name: str) -> None:
    with pytest.raises(ConfigError, match=r"'random_state' parameter of .* must be an int >= 0"):
        REDUCERS.get(name)(random_state=-1).fit(small_blobs())


def test_identity_returns_a_copy_of_the_features() -> None:
    x = small_blobs()
    z = IdentityReducer().fit_transform(x)
    np.testing.assert_array_equal(z, x)
    z[0, 0] = 99.0
    assert x[0, 0] != 99.0


# --------------------------------------------------------------------------- PCA


def test_pca_variance_rule_and_sklearn_agreement() -> None:
    from sklearn.decomposition import PCA

    x, _ = blobs()
    reducer = PCAReducer().fit(x)
    ratio = PCA().fit(x).explained_variance_ratio_
    expected = int(np.searchsorted(np.cumsum(ratio), 0.95) + 1)
    assert reducer.n_components_ == expected
    assert reducer.params_["explained_variance"] >= 0.95
    fixed = PCAReducer(n_components=3).fit(x)
    np.testing.assert_allclose(
        np.abs(fixed.transform(x)), np.abs(PCA(n_components=3).fit_transform(x)), atol=1e-8
    )


def test_pca_keeps_blobs_and_maps_new_points_near_them() -> None:
    x, y = blobs()
    reducer = PCAReducer(n_components=3)
    z = reducer.fit_transform(x)
    labels = KMeansClusterer(max_k=8).fit_predict(z)
    assert adjusted_rand_score(y, labels) == 1.0
    new_x, new_y = blobs(n_per=5, seed=7)
    centroids = np.stack([z[y == c].mean(axis=0) for c in range(N_BLOBS)])
    new_z = reducer.transform(new_x)
    nearest = np.argmin(np.linalg.norm(new_z[:, None] - centroids[None], axis=2), axis=1)
    np.testing.assert_array_equal(nearest, new_y)


def test_pca_clamps_components_and_handles_identical_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x = small_blobs()[:5]
    with caplog.at_level(logging.INFO, logger="dnnsafety.clustering.reducers"):
        reducer = PCAReducer(n_components=40).fit(x)
    assert reducer.n_components_ == 5
    assert "clamped" in caplog.text
    assert PCAReducer(max_components=2).fit(x).n_components_ <= 2
    same = PCAReducer().fit(np.ones((6, 4)))
    assert same.n_components_ == 1
    np.testing.assert_array_equal(same.transform(np.ones((2, 4))), np.zeros((2, 1)))


@pytest.mark.parametrize("value", [0, -2, 1.5, 0.0, "all", True])
def test_pca_rejects_bad_n_components(value: object) -> None:
    with pytest.raises(ConfigError, match="'n_components' parameter of PCAReducer"):
        PCAReducer(n_components=value).fit(small_blobs())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- UMAP


def test_umap_keeps_blobs_and_maps_new_points_near_them(
    umap_blobs: tuple[UMAPReducer, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    reducer, _, y, z = umap_blobs
    assert z.shape == (y.size, 10)
    assert reducer.params_["n_neighbors"] == 15 and reducer.params_["min_dist"] == 0.0
    labels = KMeansClusterer(max_k=8).fit_predict(z)
    assert adjusted_rand_score(y, labels) == 1.0
    new_x, new_y = blobs(n_per=5, seed=7)
    centroids = np.stack([z[y == c].mean(axis=0) for c in range(N_BLOBS)])
    new_z = reducer.transform(new_x)
    nearest = np.argmin(np.linalg.norm(new_z[:, None] - centroids[None], axis=2), axis=1)
    np.testing.assert_array_equal(nearest, new_y)


def test_umap_then_dbscan_recovers_blobs(
    umap_blobs: tuple[UMAPReducer, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, _, y, z = umap_blobs
    clusterer = DBSCANClusterer().fit(z)
    keep = clusterer.labels_ >= 0
    assert clusterer.n_clusters_ == N_BLOBS
    assert keep.mean() >= 0.95
    assert adjusted_rand_score(y[keep], clusterer.labels_[keep]) == 1.0


def test_umap_tiny_inputs_are_clamped(caplog: pytest.LogCaptureFixture) -> None:
    x = small_blobs()[:6]
    with caplog.at_level(logging.INFO, logger="dnnsafety.clustering.reducers"):
        reducer = UMAPReducer(random_state=0).fit(x)
    assert reducer.params_["n_neighbors"] == 5
    assert reducer.n_components_ == 4
    assert "n_neighbors 15 -> 5" in caplog.text
    assert reducer.transform(x[:2]).shape == (2, 4)
    with pytest.raises(InvalidInputError, match="at least 3 rows"):
        UMAPReducer().fit(x[:2])


def test_umap_identical_rows_map_to_origin() -> None:
    reducer = UMAPReducer(n_components=3).fit(np.ones((20, 5)))
    assert reducer.params_["degenerate"] is True
    np.testing.assert_array_equal(reducer.embedding_, np.zeros((20, 3)))
    np.testing.assert_array_equal(reducer.transform(np.zeros((2, 5))), np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neighbors": 1}, "'n_neighbors' parameter of UMAPReducer must be an int >= 2"),
        ({"n_components": 0}, "'n_components' parameter of UMAPReducer must be an int >= 1"),
        ({"min_dist": -0.5}, "'min_dist' parameter of UMAPReducer"),
        ({"metric": 3}, "'metric' parameter of UMAPReducer"),
    ],
)
def test_umap_rejects_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        UMAPReducer(**kwargs).fit(small_blobs())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- clusterer contract


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_clusterer_contract(name: str) -> None:
    x = small_blobs()
    clusterer = CLUSTERERS.get(name)(random_state=0)
    assert clusterer.fit(x) is clusterer
    labels = clusterer.labels_
    assert labels.dtype == np.int64 and labels.shape == (x.shape[0],)
    assert labels.min() >= -1
    assert clusterer.n_clusters_ == labels.max() + 1 == len(set(labels.tolist()) - {-1})
    assert clusterer.n_noise_ == int(np.sum(labels == -1))
    assert clusterer.n_features_in_ == 8
    assert sizes_decrease(labels)
    json.dumps(clusterer.params_)
    json.dumps(clusterer.search_)
    assert "reason" in clusterer.params_
    np.testing.assert_array_equal(clusterer.fit_predict(x), labels)


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_clusterer_deterministic_under_seed(name: str) -> None:
    x, _ = blobs(n_per=30, n_noise=10)
    first = CLUSTERERS.get(name)(random_state=3).fit(x)
    second = CLUSTERERS.get(name)(random_state=3).fit(x)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    assert first.params_ == second.params_


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_clusterer_not_fitted(name: str) -> None:
    clusterer = CLUSTERERS.get(name)()
    with pytest.raises(NotFittedError, match="call fit"):
        _ = clusterer.labels_
    with pytest.raises(NotFittedError):
        _ = clusterer.params_
    assert not hasattr(clusterer, "n_clusters_")


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_clusterer_bad_input(name: str) -> None:
    clusterer = CLUSTERERS.get(name)()
    x = small_blobs()
    x[5, 1] = np.inf
    with pytest.raises(InvalidInputError, match=r"NaN or infinite.*row 5"):
        clusterer.fit(x)
    x[5, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        clusterer.fit(x)
    with pytest.raises(InvalidInputError, match="2-D"):
        clusterer.fit(np.arange(10.0))
    with pytest.raises(InvalidInputError, match="no features"):
        clusterer.fit(np.zeros((4, 0)))
    with pytest.raises(ConfigError, match="'random_state' parameter"):
        CLUSTERERS.get(name)(random_state=1.5).fit(small_blobs())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", CLUSTERERS.names())
@pytest.mark.parametrize(
    ("x", "expected", "reason"),
    [
        (np.zeros((0, 3)), [], "empty"),
        (np.array([[1.0, 2.0]]), [0], "single-input"),
        (np.array([[0.0, 0.0], [5.0, 5.0]]), [0, 0], "two-inputs"),
        (np.ones((12, 4)), [0] * 12, "identical-inputs"),
    ],
    ids=["N=0", "N=1", "N=2", "identical"],
)
def test_clusterer_edge_cases(name: str, x: np.ndarray, expected: list[int], reason: str) -> None:
    clusterer = CLUSTERERS.get(name)().fit(x)
    np.testing.assert_array_equal(clusterer.labels_, np.array(expected, dtype=np.int64))
    assert clusterer.labels_.dtype == np.int64
    assert clusterer.n_clusters_ == (1 if expected else 0)
    assert clusterer.params_["reason"] == reason


@pytest.mark.parametrize("name", CLUSTERERS.names())
@pytest.mark.parametrize("n", [3, 4, 7])
def test_clusterer_few_inputs_do_not_crash(name: str, n: int) -> None:
    x = np.random.default_rng(n).normal(size=(n, 3))
    clusterer = CLUSTERERS.get(name)().fit(x)
    assert clusterer.labels_.shape == (n,)
    assert sizes_decrease(clusterer.labels_)


# --------------------------------------------------------------------------- planted structure


@pytest.mark.parametrize("cls", [KMeansClusterer, WardClusterer])
def test_k_search_recovers_blobs_exactly(cls: type[Clusterer]) -> None:
    x, y = blobs()
    clusterer = cls(random_state=0).fit(x)
    assert clusterer.n_clusters_ == N_BLOBS and clusterer.n_noise_ == 0
    assert adjusted_rand_score(y, clusterer.labels_) == 1.0
    assert clusterer.params_["k"] == N_BLOBS
    ks = [row["k"] for row in clusterer.search_]
    assert ks == list(range(2, 31))
    best = max(row["silhouette"] for row in clusterer.search_)
    assert clusterer.params_["silhouette"] == best


@pytest.mark.parametrize("cls", [DBSCANClusterer, HDBSCANClusterer])
def test_density_clusterers_recover_blobs_and_leave_noise(cls: type[Clusterer]) -> None:
    x, y = blobs(n_noise=40)
    clusterer = cls(random_state=0).fit(x)
    labels = clusterer.labels_
    planted = y >= 0
    assert clusterer.n_clusters_ == N_BLOBS
    kept = planted & (labels >= 0)
    assert kept.sum() >= 0.95 * planted.sum()
    assert adjusted_rand_score(y[kept], labels[kept]) >= 0.95
    assert np.mean(labels[~planted] == -1) >= 0.9


def test_dbscan_search_table_and_choice() -> None:
    x, _ = blobs(n_noise=40)
    clusterer = DBSCANClusterer().fit(x)
    table = clusterer.search_
    assert {row["min_samples"] for row in table} == {3, 5, 10}
    assert any(row["eps_source"] == "knee" for row in table)
    scored = [row for row in table if row["score"] is not None and row["silhouette"] > 0]
    best = max(scored, key=lambda row: row["score"])
    assert clusterer.params_["score"] == best["score"]
    assert clusterer.params_["eps"] == best["eps"]
    assert clusterer.params_["min_samples"] == best["min_samples"]
    for row in table:
        if row["score"] is not None:
            assert math.isclose(row["score"], row["silhouette"] * (1 - row["noise_share"]))


def test_dbscan_single_blob_is_one_cluster() -> None:
    x = np.random.default_rng(0).normal(size=(80, 5))
    clusterer = DBSCANClusterer().fit(x)
    assert clusterer.params_["reason"] in ("single-cluster", "silhouette")
    if clusterer.params_["reason"] == "single-cluster":
        assert clusterer.n_clusters_ == 1


def test_silhouette_subsample_still_recovers_blobs() -> None:
    x, y = blobs()
    clusterer = KMeansClusterer(max_k=6, silhouette_sample_size=60, random_state=1).fit(x)
    assert adjusted_rand_score(y, clusterer.labels_) == 1.0


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (KMeansClusterer, {"max_k": 1}, "'max_k' parameter of KMeansClusterer"),
        (KMeansClusterer, {"n_init": 0}, "'n_init'"),
        (WardClusterer, {"silhouette_sample_size": 2}, "'silhouette_sample_size'"),
        (DBSCANClusterer, {"min_samples_grid": []}, "'min_samples_grid'"),
        (DBSCANClusterer, {"min_samples_grid": [1]}, "'min_samples_grid'"),
        (DBSCANClusterer, {"quantiles": [1.5]}, "'quantiles'"),
        (HDBSCANClusterer, {"min_cluster_size": 1}, "'min_cluster_size'"),
        (HDBSCANClusterer, {"allow_single_cluster": "yes"}, "'allow_single_cluster'"),
    ],
)
def test_clusterer_rejects_bad_parameters(
    cls: type[Clusterer], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs).fit(small_blobs())


# --------------------------------------------------------------------------- helpers


def test_finalize_labels_orders_by_size_and_keeps_noise() -> None:
    labels = finalize_labels(np.array([7, 7, -1, 3, 3, 3, -2, 9]))
    np.testing.assert_array_equal(labels, [1, 1, -1, 0, 0, 0, -1, 2])
    assert labels.dtype == np.int64
    assert finalize_labels(np.array([-1, -1])).tolist() == [-1, -1]


def test_search_k_prefers_smallest_k_on_ties() -> None:
    x = small_blobs()
    scorer = SilhouetteScorer(x, sample_size=100, seed=0)
    same = np.repeat([0, 1, 2], 16)
    k, labels, table, scored = search_k_by_silhouette(lambda k: same, [2, 3, 4], scorer)
    assert (k, scored) == (2, True)
    np.testing.assert_array_equal(labels, same)
    assert [row["k"] for row in table] == [2, 3, 4]


def test_silhouette_scorer_matches_sklearn_and_ignores_noise() -> None:
    from sklearn.metrics import silhouette_score

    x = small_blobs()
    labels = np.repeat([0, 1, 2], 16)
    scorer = SilhouetteScorer(x, sample_size=1000, seed=0)
    assert math.isclose(scorer(labels), silhouette_score(x, labels))
    noisy = labels.copy()
    noisy[:16] = -1
    assert math.isclose(scorer(noisy), silhouette_score(x[16:], labels[16:]))
    assert math.isnan(scorer(np.zeros(48, dtype=np.int64)))


# --------------------------------------------------------------------------- identical inputs


def with_copies(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six loose Gaussian blobs (300 x 64) plus 1-3 extra copies of 60 of their rows.

    Returns the data, the original row of each row and the rows that were copied. Under the
    UMAP + HDBSCAN pipeline without deduplication a copied row and its copies were split.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 64)) * 1.5
    base = np.concatenate([c + rng.normal(size=(50, 64)) for c in centres])
    copied = rng.choice(len(base), 60, replace=False)
    times = rng.integers(1, 4, size=60)
    x = np.concatenate([base, np.repeat(base[copied], times, axis=0)]).astype(np.float32)
    source = np.concatenate([np.arange(len(base)), np.repeat(copied, times)])
    return x, source, copied


def split_copies(labels: np.ndarray, source: np.ndarray, copied: np.ndarray) -> list[int]:
    """Rows whose copies got more than one label (noise counts as a label)."""
    return [int(r) for r in copied if np.unique(labels[source == r]).size > 1]


def test_umap_maps_identical_rows_to_one_point() -> None:
    x, source, copied = with_copies()
    reducer = UMAPReducer(random_state=0)
    z = reducer.fit_transform(x)
    for row in copied:
        assert np.ptp(z[source == row], axis=0).max() == 0.0
    again = reducer.transform(x[:5])  # new rows: copies of one row map to one point too
    np.testing.assert_array_equal(reducer.transform(np.repeat(x[:1], 4, axis=0)), again[[0] * 4])


@pytest.mark.parametrize("reduce", ["umap", "pca", "none"])
@pytest.mark.parametrize("cluster", ["dbscan", "hdbscan", "kmeans", "ward"])
def test_copies_share_their_cluster_in_every_pipeline(reduce: str, cluster: str) -> None:
    from dnnsafety.pipeline.analyze.safe import reduce_and_cluster

    x, source, copied = with_copies()
    labels, reduced, params = reduce_and_cluster(x, reduce, cluster, 0)
    assert split_copies(labels, source, copied) == []
    for row in copied:  # the reduced points the error map shows coincide as well
        assert np.ptp(reduced[source == row], axis=0).max() == 0.0
    assert params["cluster"]["n_distinct"] == 300


def test_umap_dbscan_recovers_the_planted_blobs_with_copies() -> None:
    from dnnsafety.pipeline.analyze.safe import reduce_and_cluster

    x, source, _ = with_copies()
    labels, _, _ = reduce_and_cluster(x, "umap", "dbscan", 0)
    truth = np.repeat(np.arange(6), 50)[source]
    assert adjusted_rand_score(truth, labels) == 1.0


def test_dbscan_k_distances_and_silhouette_count_every_copy() -> None:
    from sklearn.metrics import pairwise_distances, silhouette_score

    from dnnsafety.clustering.dbscan import _k_distances, _neighbours

    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(40, 5))
    weights = rng.integers(1, 5, size=40)
    full = np.repeat(distinct, weights, axis=0)
    d_full = pairwise_distances(full)
    d = pairwise_distances(distinct)
    for ms in (2, 3, 5, 10):
        nd, nw = _neighbours(distinct, d, weights, ms)
        # k-distance curve of all rows (sklearn puts copies ~1e-8 apart, not 0)
        brute = np.sort(np.sort(d_full, axis=1)[:, ms - 1])
        np.testing.assert_allclose(_k_distances(nd, nw, weights, ms), brute, atol=1e-6)
        nd, nw = _neighbours(distinct, None, weights, ms)  # the nearest-neighbour path
        np.testing.assert_allclose(_k_distances(nd, nw, weights, ms), brute, atol=1e-6)
    labels = KMeansClusterer(random_state=0).fit(distinct).labels_
    scorer = SilhouetteScorer(distinct, sample_size=1000, seed=0, weights=weights)
    expected = silhouette_score(full, np.repeat(labels, weights))
    assert scorer(labels) == pytest.approx(expected, rel=1e-7)


def test_dbscan_on_copies_is_dbscan_on_all_rows() -> None:
    from sklearn.cluster import DBSCAN

    x, _, _ = with_copies()
    clusterer = DBSCANClusterer().fit(x)
    params = clusterer.params_
    plain = DBSCAN(eps=params["eps"], min_samples=params["min_samples"]).fit_predict(x)
    assert adjusted_rand_score(plain, clusterer.labels_) == 1.0
    assert clusterer.n_noise_ == int(np.sum(plain < 0))


@pytest.mark.parametrize("name", CLUSTERERS.names())
def test_two_distinct_rows_among_many_are_one_cluster(name: str) -> None:
    x = np.array([[0.0, 0.0]] * 5 + [[5.0, 5.0]] * 3)
    clusterer = CLUSTERERS.get(name)().fit(x)
    assert clusterer.labels_.tolist() == [0] * 8
    assert clusterer.params_["reason"] == "two-inputs"
    assert clusterer.params_["n_distinct"] == 2


def test_umap_needs_three_distinct_rows() -> None:
    x = np.array([[0.0, 1.0]] * 4 + [[2.0, 3.0]] * 4)
    with pytest.raises(InvalidInputError, match="at least 3 distinct rows"):
        UMAPReducer().fit(x)


def test_identical_rows_groups_in_order_of_first_appearance() -> None:
    from dnnsafety.clustering import identical_rows

    x = np.array([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0], [-0.0, 0.0], [3.0, 3.0]])
    groups = identical_rows(x)
    assert groups.first.tolist() == [0, 1, 4]
    assert groups.inverse.tolist() == [0, 1, 0, 1, 2]
    assert groups.counts.tolist() == [2, 2, 1]
    assert groups.representative().tolist() == [0, 1, 0, 1, 4]
    assert identical_rows(np.zeros((0, 3))).n_distinct == 0
