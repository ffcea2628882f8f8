"""The chunked distance engine (dnnsafety.distances) against scipy's cdist, metric by metric.

The engine computes Euclidean distances among reference rows (HUDD's distance matrices) and
squared Euclidean distances from query rows to reference rows (the selectors' nearest-neighbour
searches); both are compared with ``scipy.spatial.distance.cdist`` in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from dnnsafety.clustering.distances import condensed_distances, pairwise_distances
from dnnsafety.distances import Reference, self_distance_blocks
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.selection._nearest import group_min_distances, nearest_in_class


def _data(seed: int, n: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # an offset far from 0: the centring must keep the identity ||a-b||^2 = ... accurate
    return rng.normal(size=(n, dim)) * 2.0 + 10.0


@pytest.mark.parametrize(
    ("n", "dim", "chunk"), [(1, 3, None), (23, 5, 4), (40, 17, 40), (57, 9, 8)]
)
@pytest.mark.parametrize("cache", [None, False])
def test_self_distance_blocks_match_cdist_euclidean(
    n: int, dim: int, chunk: int | None, cache: bool | None
) -> None:
    x = _data(n, n, dim)
    x[-1] = x[0]  # an exact duplicate: distance exactly 0
    d = np.full((n, n), np.nan)
    for r0, r1, c0, c1, block in self_distance_blocks(Reference(x, "x", chunk, cache=cache)):
        assert c0 >= r0
        d[r0:r1, c0:c1] = block
        d[c0:c1, r0:r1] = block.T
    assert not np.isnan(d).any(), "the blocks must cover the whole matrix"
    np.testing.assert_allclose(d, cdist(x, x, "euclidean"), rtol=1e-9, atol=1e-9)
    assert np.all(np.diagonal(d) == 0.0)
    if n > 1:
        assert d[0, -1] == 0.0 and d[-1, 0] == 0.0


def test_pairwise_and_condensed_distances_are_the_engine_blocks() -> None:
    x = _data(1, 31, 6).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(pairwise_distances(x, chunk_rows=5), cdist(x64, x64), rtol=1e-9)
    full = pairwise_distances(x, chunk_rows=5)
    iu = np.triu_indices(31, k=1)
    assert np.array_equal(condensed_distances(x, chunk_rows=5), full[iu])


@pytest.mark.parametrize(("chunk", "cache"), [(None, None), (3, None), (3, False)])
def test_reference_sq_distances_match_cdist_sqeuclidean(
    chunk: int | None, cache: bool | None
) -> None:
    ref_rows = _data(2, 29, 7)
    query_rows = _data(3, 11, 7)
    ref = Reference(ref_rows, "ref", chunk, cache=cache)
    query, query_sq = ref.centre(query_rows)
    got = np.hstack(
        [ref.sq_distances(query, query_sq, block, c0, c1) for c0, c1, block in ref.chunks()]
    )
    np.testing.assert_allclose(
        got, cdist(query_rows, ref_rows, "sqeuclidean"), rtol=1e-9, atol=1e-9
    )
    assert got.min() >= 0.0


def test_nearest_searches_match_cdist_brute_force() -> None:
    rng = np.random.default_rng(4)
    ref_rows = _data(5, 40, 8)
    pool = _data(6, 70, 8)
    pool[3] = ref_rows[7]  # a pool row equal to a reference row: distance exactly 0
    groups = rng.integers(0, 3, size=40)  # group 3 of 4 stays empty
    pool_labels = rng.integers(0, 3, size=70)
    full = cdist(pool, ref_rows)
    ref = Reference(ref_rows, "ref", 6)

    got = group_min_distances(pool, ref, groups, 4, batch_size=9, what="pool")
    want = np.stack([full[:, groups == g].min(axis=1) for g in range(3)], axis=1)
    np.testing.assert_allclose(got[:, :3], want, rtol=1e-9, atol=1e-9)
    assert np.all(got[:, 3] == np.inf)
    assert got[3, groups[7]] == 0.0

    for same in (True, False):
        dist, index = nearest_in_class(
            pool, ref, groups, pool_labels, same=same, batch_size=9, what="pool"
        )
        allowed = (groups[None, :] == pool_labels[:, None]) == same
        masked = np.where(allowed, full, np.inf)
        np.testing.assert_allclose(dist, masked.min(axis=1), rtol=1e-9, atol=1e-9)
        assert np.array_equal(index, masked.argmin(axis=1))


def test_engine_rejects_bad_rows() -> None:
    with pytest.raises(InvalidInputError, match="is empty"):
        Reference(np.zeros((0, 3)), "ref")
    bad = np.ones((5, 2))
    bad[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="row 3 contains NaN"):
        Reference(bad, "ref")
    ref = Reference(np.ones((4, 2)), "ref")
    with pytest.raises(InvalidInputError, match="3 values per row but the reference has 2"):
        group_min_distances(
            np.ones((2, 3)), ref, np.zeros(4, dtype=int), 1, batch_size=None, what="q"
        )
