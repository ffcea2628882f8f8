"""Selection from per-chunk results equals the in-memory selectors on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from dnnsafety.compute import chunk_bounds
from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView
from dnnsafety.selection._nearest import Reference, group_min_distances
from dnnsafety.selection.closest import eligible_clusters
from dnnsafety.selection.selectors import top_by_score
from dnnsafety.selection.streaming import chunk_top_k, closest_from_distances, merge_top_k


def test_streaming_top_k_equals_the_whole_pool_ranking_ties_included(rng):
    scores = rng.integers(0, 20, size=1000).astype(np.float64)  # many ties
    for k in (1, 7, 50, 1000):
        parts = [chunk_top_k(scores[a:b], a, k) for a, b in chunk_bounds(1000, 64)]
        top, rows = merge_top_k(parts, k)
        assert rows.tolist() == top_by_score(scores, k).tolist()
        assert np.array_equal(top, scores[rows])
    # memory: each chunk hands back at most k rows
    assert all(len(p[1]) <= 7 for p in [chunk_top_k(scores[:64], 0, 7)])


@pytest.mark.parametrize("name", ["closest", "closest-contrast"])
def test_closest_from_chunk_distances_equals_closest_selector(rng, name):
    centres = rng.normal(size=(4, 6)) * 4
    members = np.concatenate([c + rng.normal(size=(12, 6)) for c in centres])
    labels = np.repeat([0, 1, 2, 5], 12)
    labels[:3] = -1  # noise
    labels[12] = 9  # a singleton: ignored
    pool = np.concatenate([c + rng.normal(size=(100, 6)) * 1.5 for c in centres])
    ids = np.array([f"p{i:03d}" for i in range(len(pool))])
    correct = rng.normal(size=(30, 6)) * 3
    space = ClusterSpace(members, labels, correct=correct if name != "closest" else None)
    expected = SELECTORS.get(name)(f=1.5).select(PoolView(ids, features=pool), 40, clusters=space)

    keep, _ = eligible_clusters(labels)
    member = np.isin(labels, keep)
    ref = Reference(members[member], "members")
    groups = np.searchsorted(keep, labels[member])
    dist, d_ok = [], []
    for a, b in chunk_bounds(len(pool), 33):
        dist.append(
            group_min_distances(pool[a:b], ref, groups, len(keep), batch_size=None, what="x")
        )
        d_ok.append(
            group_min_distances(
                pool[a:b], Reference(correct, "c"), np.zeros(30, int), 1, batch_size=None, what="x"
            )[:, 0]
        )
    got, rows = closest_from_distances(
        name,
        ids,
        np.concatenate(dist),
        labels,
        40,
        f=1.5,
        d_ok=np.concatenate(d_ok) if name != "closest" else None,
        n_correct=30,
    )
    assert got.ids.tolist() == expected.ids.tolist()
    assert ids[rows].tolist() == got.ids.tolist()
    assert np.array_equal(got.cluster, expected.cluster)
    assert np.allclose(got.distance, expected.distance, rtol=1e-12, atol=0)
    assert got.info == expected.info
