"""Hybrid selection (root-cause quotas filled by uncertainty) and Cluster-Margin: planted pools."""

from __future__ import annotations

import numpy as np
import pytest

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView
from dnnsafety.selection.hybrid import hybrid_quotas, margin_score, uncertainty_score


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _planted(seed: int = 0) -> tuple[PoolView, ClusterSpace, np.ndarray, np.ndarray]:
    """Three root causes at x = 0, 10, 20 (sizes 20, 10, 10). Around each, 60 pool inputs;
    the nearest 20 of each are confident, the next 20 uncertain. Cluster 2's pool images are
    all more uncertain than the other clusters' (entropy alone spends everything there)."""
    rng = np.random.default_rng(seed)
    centres = np.array([0.0, 10.0, 20.0])
    sizes = [20, 10, 10]
    err = np.concatenate(
        [c + rng.normal(0, 0.3, size=(n, 2)) for c, n in zip(centres, sizes, strict=True)]
    )
    labels = np.repeat(np.arange(3), sizes)
    feats, logits, cluster, rank = [], [], [], []
    for k, c in enumerate(centres):
        radius = np.linspace(0.1, 3.0, 60)
        angle = rng.uniform(0, 2 * np.pi, 60)
        feats.append(np.c_[c + radius * np.cos(angle), c + radius * np.sin(angle)])
        confident = np.arange(60) < 20
        gap = np.where(confident, 8.0, (3.0, 1.0, 0.2)[k])  # cluster 2: smallest gaps
        lg = np.zeros((60, 3))
        lg[:, 0] = gap + rng.uniform(0, 0.05, 60)
        logits.append(lg)
        cluster += [k] * 60
        rank += list(range(60))
    pool = PoolView(
        np.array([f"p{i:03d}" for i in range(180)]),
        _softmax(np.concatenate(logits)),
        features=np.concatenate(feats).astype(np.float32),
    )
    return pool, ClusterSpace(err, labels), np.array(cluster), np.array(rank)


def test_hybrid_fills_each_quota_with_the_uncertain_inputs_of_its_cluster():
    pool, space, truth, rank = _planted()
    sel = SELECTORS.create("hybrid-size", {"neighbourhood": 8.0}).select(pool, 16, clusters=space)
    rows = np.searchsorted(pool.ids, sel.ids)
    # HUDD quotas 40:20:20 scaled to 16 -> 8, 4, 4
    assert sel.info["quotas"] == {"0": 8, "1": 4, "2": 4}
    assert np.bincount(truth[rows], minlength=3).tolist() == [8, 4, 4]
    assert sel.info["assigned"] == {"0": 8, "1": 4, "2": 4} and sel.cluster is None
    balanced = SELECTORS.create("hybrid-size", {"neighbourhood": 8.0, "balance": True}).select(
        pool, 16, clusters=space
    )
    assert (balanced.cluster == truth[rows]).all() and balanced.ids.tolist() == sel.ids.tolist()
    # every chosen input is one of the uncertain ones (rank >= 20), not the nearest
    assert (rank[rows] >= 20).all()
    closest = SELECTORS.create("closest").select(pool, 16, clusters=space)
    near_rows = np.searchsorted(pool.ids, closest.ids)
    assert (rank[near_rows] < 20).all()  # ClosestU takes the nearest, confident ones
    entropy = SELECTORS.create("entropy").select(pool, 16)
    assert set(truth[np.searchsorted(pool.ids, entropy.ids)]) == {2}


def test_hybrid_neighbourhood_limits_how_far_it_looks():
    pool, space, _, rank = _planted()
    # a neighbourhood of one quota is ClosestU-like: the nearest (confident) inputs only
    sel = SELECTORS.create("hybrid-size", {"neighbourhood": 1.0}).select(pool, 16, clusters=space)
    assert (rank[np.searchsorted(pool.ids, sel.ids)] < 20).all()


def test_uncertainty_quota_moves_labels_to_uncertain_root_causes():
    pool, space, truth, _ = _planted()
    sel = SELECTORS.create("hybrid", {"neighbourhood": 8.0}).select(pool, 16, clusters=space)
    counts = np.bincount(truth[np.searchsorted(pool.ids, sel.ids)], minlength=3)
    assert counts.sum() == 16
    u = sel.info["neighbourhood_uncertainty"]
    assert u["2"] > u["1"] > u["0"]
    assert counts[2] > 4 and counts[0] < 8  # away from the size quotas, toward uncertainty


def test_hybrid_spends_the_budget_when_a_neighbourhood_is_too_small():
    pool, space, _, _ = _planted()
    sel = SELECTORS.create("hybrid").select(pool, 170, clusters=space)
    assert len(sel) == 170 and len(set(sel.ids)) == 170
    assert sel.info["filled_outside_quotas"] > 0


def test_hybrid_quotas_and_scores_against_hand_computed_values():
    assert hybrid_quotas(np.array([20, 10, 10]), 16, 2.0, "size").tolist() == [8, 4, 4]
    q = hybrid_quotas(np.array([10, 10]), 10, 2.0, "uncertainty", np.array([0.1, 0.4]))
    assert q.tolist() == [2, 8]
    with pytest.raises(ConfigError):
        hybrid_quotas(np.array([1]), 1, 2.0, "nope")
    p = np.array([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(margin_score(p), [0.2, 1.0])
    np.testing.assert_allclose(uncertainty_score(p, "deepgini"), [1 - 0.38, 0.0])
    with pytest.raises(ConfigError):
        uncertainty_score(p, "variance")
    with pytest.raises(ConfigError):
        SELECTORS.create("hybrid", {"neighbourhood": 0}).select(
            *_planted()[:2][:1], 3, clusters=_planted()[1]
        )


def test_cluster_margin_spreads_labels_over_duplicated_low_margin_inputs():
    rng = np.random.default_rng(1)
    # 5 tight groups of 20 near-duplicates, all with a small margin, plus 100 confident inputs
    centres = rng.normal(0, 10, size=(5, 4))
    feats = np.concatenate(
        [
            np.repeat(centres, 20, axis=0) + rng.normal(0, 0.01, (100, 4)),
            rng.normal(0, 10, (100, 4)),
        ]
    )
    gaps = np.r_[np.linspace(0.01, 0.05, 100)[rng.permutation(100)], np.full(100, 6.0)]
    # group 0 holds the 20 smallest margins: margin ranking takes it alone
    gaps[:20] = np.linspace(0.001, 0.002, 20)
    logits = np.zeros((200, 3))
    logits[:, 0] = gaps
    probs = _softmax(logits)
    pool = PoolView(np.array([f"q{i:03d}" for i in range(200)]), probs, features=feats)
    space = ClusterSpace(feats[:2], np.array([0, 0]))
    group = np.r_[np.repeat(np.arange(5), 20), np.full(100, -1)]
    sel = SELECTORS.create("cluster-margin", {"candidates": 20}).select(
        pool, 5, clusters=space, random_state=0
    )
    assert sorted(group[np.searchsorted(pool.ids, sel.ids)].tolist()) == [0, 1, 2, 3, 4]
    margin = SELECTORS.create("margin").select(pool, 5)
    assert set(group[np.searchsorted(pool.ids, margin.ids)].tolist()) == {0}
    other = SELECTORS.create("cluster-margin", {"candidates": 20}).select(
        pool, 5, clusters=space, random_state=1
    )
    assert sorted(group[np.searchsorted(pool.ids, other.ids)].tolist()) == [0, 1, 2, 3, 4]
    assert other.ids.tolist() != sel.ids.tolist()  # a random member of each cluster


def test_error_quota_follows_expected_errors_of_each_neighbourhood():
    pool, space, truth, _ = _planted()
    sel = SELECTORS.create("hybrid", {"neighbourhood": 8.0, "quota": "errors"}).select(
        pool, 16, clusters=space
    )
    # expected errors = sum of 1 - max p over each cluster's candidates, by hand
    maxp = 1 - pool.probs.max(axis=1)
    by_hand = [maxp[truth == k].sum() for k in range(3)]
    np.testing.assert_allclose(
        [sel.info["neighbourhood_uncertainty"][str(k)] for k in range(3)], by_hand, rtol=1e-9
    )
    expected = hybrid_quotas(np.array([20, 10, 10]), 16, 2.0, "errors", np.array(by_hand))
    assert sel.info["quotas"] == {str(k): int(q) for k, q in enumerate(expected)}
    # cluster 0 is the largest but its pool images are the surest: fewest labels
    assert sel.info["quotas"]["0"] < sel.info["quotas"]["2"]
    # errors ignore cluster size: equal expected errors give equal quotas
    assert hybrid_quotas(np.array([50, 2]), 10, 2.0, "errors", np.array([3.0, 3.0])).tolist() == [
        5,
        5,
    ]


def test_floor_quota_gives_every_root_cause_its_floor_and_the_rest_to_entropy():
    pool, space, truth, rank = _planted()
    sel = SELECTORS.create("hybrid", {"neighbourhood": 20.0, "quota": "floor", "floor": 2}).select(
        pool, 16, clusters=space
    )
    rows = np.searchsorted(pool.ids, sel.ids)
    counts = np.bincount(truth[rows], minlength=3)
    assert sel.info["quotas"] == {"0": 2, "1": 2, "2": 2}
    assert sel.info["filled_outside_quotas"] == 10
    # entropy alone spends all 16 on cluster 2; the floor keeps 2 for each other root cause
    assert counts.tolist() == [2, 2, 12] and (rank[rows] >= 20).all()
    assert sel.info["params"]["floor"] == 2
    # a floor above budget / K is cut to it
    big = SELECTORS.create("hybrid", {"quota": "floor", "floor": 50}).select(
        pool, 9, clusters=space
    )
    assert big.info["quotas"] == {"0": 3, "1": 3, "2": 3}
    with pytest.raises(ConfigError):
        SELECTORS.create("hybrid", {"quota": "floor", "floor": -1}).select(pool, 9, clusters=space)


def _look_alikes() -> tuple[PoolView, ClusterSpace, np.ndarray]:
    """Root causes at x = 0 and x = 20 (10 errors each); correctly classified inputs at
    x = -2. Pool: 10 look-alikes at x = -1 (nearer to cause 0 than anything else, but as near
    to the correct inputs), 10 inputs of cause 0 at x = 1.5 (farther from the cause, far from
    the correct inputs), 10 of cause 1 at x = 21. Equal softmax rows: uncertainty ties."""
    rng = np.random.default_rng(0)

    def blob(x: float, n: int) -> np.ndarray:
        return np.c_[x + rng.normal(0, 0.05, n), rng.normal(0, 0.05, n)]

    errors = np.concatenate([blob(0.0, 10), blob(20.0, 10)])
    feats = np.concatenate([blob(-1.0, 10), blob(1.5, 10), blob(21.0, 10)]).astype(np.float32)
    kind = np.repeat([0, 1, 2], 10)  # look-alike, cause 0, cause 1
    pool = PoolView(
        np.array([f"p{i:02d}" for i in range(30)]), np.full((30, 3), 1 / 3), features=feats
    )
    space = ClusterSpace(errors, np.repeat([0, 1], 10), correct=blob(-2.0, 20))
    return pool, space, kind


def test_contrastive_neighbourhoods_skip_look_alikes_of_correct_inputs():
    pool, space, kind = _look_alikes()
    params = {"quota": "size", "neighbourhood": 1.0}
    nearest = SELECTORS.create("hybrid", params).select(pool, 10, clusters=space)
    contrast = SELECTORS.create("hybrid", {**params, "distance": "contrastive"}).select(
        pool, 10, clusters=space
    )
    assert nearest.info["quotas"] == contrast.info["quotas"] == {"0": 5, "1": 5}
    # cause 0's quota: the nearest distance takes the look-alikes, the contrastive one the
    # inputs of the cause itself; cause 1's inputs are chosen either way
    assert np.bincount(kind[np.searchsorted(pool.ids, nearest.ids)], minlength=3).tolist() == [
        5,
        0,
        5,
    ]
    rows = np.searchsorted(pool.ids, contrast.ids)
    assert np.bincount(kind[rows], minlength=3).tolist() == [0, 5, 5]
    assert contrast.info["params"]["distance"] == "contrastive"


def test_contrastive_distance_needs_correct_inputs_and_a_known_name():
    pool, space, _ = _look_alikes()
    without = ClusterSpace(space.features, space.labels)
    with pytest.raises(InvalidInputError, match="correctly classified"):
        SELECTORS.create("hybrid", {"distance": "contrastive"}).select(pool, 10, clusters=without)
    with pytest.raises(ConfigError, match="'distance' parameter of hybrid"):
        SELECTORS.create("hybrid", {"distance": "cosine"}).select(pool, 10, clusters=space)
