"""Unsafe-set selection: ClosestU against a brute-force reference, baselines, uncertainty, DSA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.selection import (
    SELECTORS,
    ClosestSelector,
    ClusterSpace,
    ContrastiveClosestSelector,
    Oracle,
    PoolView,
    ReferenceSet,
    Selection,
    Selector,
    closest_assignment,
    contrastive_scores,
    dsa_scores,
    natural_quotas,
    scale_quotas,
)


def ids_of(n: int) -> np.ndarray:
    return np.array([f"p{i:05d}" for i in range(n)])


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- ClosestU brute force


def brute_closest(
    pool: np.ndarray, members: np.ndarray, labels: np.ndarray, f: float
) -> tuple[list[int], list[int], dict[int, int]]:
    """METHOD.md §2.8 read literally, with explicit loops and float64 norms."""
    clusters = [c for c in sorted(set(labels.tolist())) if c >= 0 and (labels == c).sum() >= 2]
    quota = {c: math.ceil(round(f * int((labels == c).sum()), 9)) for c in clusters}
    dist = {
        (i, c): min(
            float(np.linalg.norm(pool[i].astype(np.float64) - members[j].astype(np.float64)))
            for j in range(len(labels))
            if labels[j] == c
        )
        for i in range(len(pool))
        for c in clusters
    }
    # clusters of each input from nearest to farthest (ties: lower cluster id)
    ranked = {
        i: sorted(clusters, key=lambda c: (dist[(i, c)], clusters.index(c)))
        for i in range(len(pool))
    }
    count = dict.fromkeys(clusters, 0)
    assigned: dict[int, int] = {}
    chosen: list[int] = []
    for r in range(len(clusters)):
        considered: set[int] = set()
        while any(count[c] < quota[c] for c in clusters):
            candidates = [i for i in range(len(pool)) if i not in assigned and i not in considered]
            if not candidates:
                break
            i = min(candidates, key=lambda i: (dist[(i, ranked[i][r])], i))
            considered.add(i)
            c = ranked[i][r]
            if count[c] < quota[c]:
                count[c] += 1
                assigned[i] = c
                chosen.append(i)
    return chosen, [assigned[i] for i in chosen], quota


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_closest_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    members = rng.normal(size=(14, 3)).astype(np.float32)
    labels = rng.integers(-1, 4, size=14)
    labels[:4] = [0, 0, 1, 1]  # at least two clusters with >= 2 members
    labels[4] = 7  # a singleton, ignored
    pool = rng.normal(size=(60, 3)).astype(np.float32)
    f = float(rng.choice([0.5, 1.0, 2.0]))
    chosen, assigned, quota = brute_closest(pool, members, labels, f)
    sel = ClosestSelector(f=f, batch_size=7).select(
        PoolView(ids=ids_of(60), features=pool),
        sum(quota.values()),
        clusters=ClusterSpace(members, labels),
    )
    assert sel.ids.tolist() == ids_of(60)[chosen].tolist()
    assert sel.cluster is not None and sel.cluster.tolist() == assigned
    assert sel.info["quotas"] == {str(c): q for c, q in quota.items()}
    assert 7 in sel.info["ignored_clusters"]
    assert sel.distance is not None
    for i, c, d in zip(chosen, assigned, sel.distance, strict=True):
        ref = np.linalg.norm(pool[i].astype(np.float64) - members[labels == c], axis=1).min()
        assert d == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_closest_assignment_when_more_than_one_rank_needed() -> None:
    # three inputs all nearest to cluster 0, whose quota is 1: two fall through to rank 1
    dist = np.array([[1.0, 5.0], [2.0, 3.0], [3.0, 4.0], [9.0, 9.5]])
    rows, cluster, last_rank = closest_assignment(dist, np.array([1, 2]))
    assert rows.tolist() == [0, 1, 2]
    assert cluster.tolist() == [0, 1, 1]
    assert last_rank == 1


def planted() -> tuple[np.ndarray, ClusterSpace, dict[str, list[int]]]:
    """Clusters A (id 3, 4 members) and B (id 8, 2 members) in 2-D, plus noise and a singleton;
    pool rows near A, near B and far away."""
    members = np.array(
        [[0, 0], [0.2, 0], [0, 0.2], [0.2, 0.2], [10, 10], [10.2, 10], [50, -50], [-30, 30]],
        dtype=np.float32,
    )
    labels = np.array([3, 3, 3, 3, 8, 8, -1, 5])
    near_a = [[0.1 + 0.05 * i, 0.1] for i in range(10)]
    near_b = [[10.1, 10 + 0.05 * i] for i in range(6)]
    far = [[-40, -40], [40, -40], [100, 100], [50, -49.0], [-30, 30.5]]  # two near noise/singleton
    pool = np.array(near_a + near_b + far, dtype=np.float32)
    groups = {"a": list(range(10)), "b": list(range(10, 16)), "far": list(range(16, 21))}
    return pool, ClusterSpace(members, labels), groups


def test_closest_planted_quota_split_noise_and_singletons_ignored() -> None:
    pool, space, groups = planted()
    ids = ids_of(len(pool))
    selector = ClosestSelector()  # f = 2: quotas A 8, B 4
    assert selector.natural_quotas(space) == {3: 8, 8: 4}
    assert selector.natural_budget(space) == 12
    sel = selector.select(PoolView(ids=ids, features=pool), 12, clusters=space)
    assert sel.cost == 12 == len(sel)
    assert sel.cluster is not None
    assert (sel.cluster == 3).sum() == 8 and (sel.cluster == 8).sum() == 4
    chosen = set(sel.ids.tolist())
    assert chosen <= set(ids[groups["a"] + groups["b"]].tolist())
    assert not chosen & set(ids[groups["far"]].tolist())
    near_b = set(ids[groups["b"]].tolist())
    assert all((c == 8) == (i in near_b) for i, c in zip(sel.ids, sel.cluster, strict=True))
    assert sel.info["ignored_clusters"] == [5] and sel.info["n_noise"] == 1
    json.dumps(sel.info)


def test_closest_budget_scales_quotas() -> None:
    pool, space, _ = planted()
    sel = ClosestSelector().select(
        PoolView(ids=ids_of(len(pool)), features=pool), 6, clusters=space
    )
    assert sel.info["quotas"] == {"3": 4, "8": 2}
    assert sel.info["natural_quotas"] == {"3": 8, "8": 4}
    assert sel.cluster is not None and np.bincount(sel.cluster)[[3, 8]].tolist() == [4, 2]


def test_closest_batch_size_and_memmap_do_not_change_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    members = rng.normal(size=(30, 16)).astype(np.float32)
    labels = np.repeat(np.arange(5), 6)
    pool = rng.normal(size=(200, 16)).astype(np.float32)
    path = tmp_path / "pool.npy"
    np.save(path, pool)
    mapped = np.load(path, mmap_mode="r")
    space = ClusterSpace(members, labels)
    results = [
        ClosestSelector(batch_size=bs).select(
            PoolView(ids=ids_of(200), features=x), 40, clusters=space
        )
        for bs, x in [(1, pool), (1000, pool), (None, pool), (17, mapped)]
    ]
    for other in results[1:]:
        assert other.ids.tolist() == results[0].ids.tolist()
        assert other.cluster is not None and results[0].cluster is not None
        assert other.cluster.tolist() == results[0].cluster.tolist()
        np.testing.assert_allclose(other.distance, results[0].distance, rtol=1e-9)  # type: ignore[arg-type]


def test_closest_flattens_heatmap_shaped_features() -> None:
    rng = np.random.default_rng(0)
    members = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    pool = rng.normal(size=(20, 2, 3, 3)).astype(np.float32)
    flat = ClosestSelector().select(
        PoolView(ids=ids_of(20), features=pool.reshape(20, -1)),
        5,
        clusters=ClusterSpace(members.reshape(6, -1), labels),
    )
    shaped = ClosestSelector().select(
        PoolView(ids=ids_of(20), features=pool), 5, clusters=ClusterSpace(members, labels)
    )
    assert flat.ids.tolist() == shaped.ids.tolist()


def test_scale_quotas() -> None:
    natural = np.array([8, 4, 2, 2])
    assert scale_quotas(natural, 16).tolist() == [8, 4, 2, 2]  # the natural budget: unchanged
    assert scale_quotas(natural, 8).tolist() == [4, 2, 1, 1]
    for budget in range(4, 60):
        q = scale_quotas(natural, budget)
        share = budget * natural / natural.sum()
        assert q.sum() == budget and (q >= 1).all()
        assert (np.abs(q - share) < 1 + 1e-9).all()
    # min-1 forces rounding away from the share; the sum still holds
    assert scale_quotas(np.array([100, 1, 1]), 3).tolist() == [1, 1, 1]
    assert scale_quotas(np.array([100, 1, 1]), 10).tolist() == [8, 1, 1]
    # fewer inputs than clusters: the largest clusters get one each
    assert scale_quotas(np.array([2, 9, 4]), 2).tolist() == [0, 1, 1]
    assert natural_quotas(np.array([30, 3]), 0.1).tolist() == [3, 1]


def test_closest_budget_below_cluster_count_warns(caplog: pytest.LogCaptureFixture) -> None:
    pool, space, _ = planted()
    sel = ClosestSelector().select(
        PoolView(ids=ids_of(len(pool)), features=pool), 1, clusters=space
    )
    assert len(sel) == 1 and sel.cluster is not None and sel.cluster.tolist() == [3]
    assert "smaller than the number of clusters" in caplog.text


def test_closest_errors() -> None:
    pool, space, _ = planted()
    view = PoolView(ids=ids_of(len(pool)), features=pool)
    with pytest.raises(
        ConfigError, match=r"The 'budget' parameter of closest must be an int >= 1\. Got 0\."
    ):
        ClosestSelector().select(view, 0, clusters=space)
    with pytest.raises(ConfigError, match="exceeds the pool size"):
        ClosestSelector().select(view, 22, clusters=space)
    with pytest.raises(InvalidInputError, match="clusters=ClusterSpace"):
        ClosestSelector().select(view, 3)
    with pytest.raises(InvalidInputError, match="PoolView\\(features="):
        ClosestSelector().select(PoolView(ids=ids_of(len(pool))), 3, clusters=space)
    with pytest.raises(InvalidInputError, match="2 or more"):
        ClosestSelector().select(view, 3, clusters=ClusterSpace(pool[:3], np.array([-1, 0, 1])))
    with pytest.raises(InvalidInputError, match="same feature space"):
        ClosestSelector().select(
            PoolView(ids=ids_of(len(pool)), features=np.zeros((len(pool), 3))), 3, clusters=space
        )
    with pytest.raises(ConfigError, match="'f' parameter"):
        ClosestSelector(f=0).select(view, 3, clusters=space)
    with pytest.raises(ConfigError, match="'batch_size' parameter"):
        ClosestSelector(batch_size=0).select(view, 3, clusters=space)
    bad = pool.copy()
    bad[4, 1] = np.nan
    with pytest.raises(InvalidInputError, match="row 4"):
        ClosestSelector().select(PoolView(ids=ids_of(len(pool)), features=bad), 3, clusters=space)


def test_poolview_validation() -> None:
    with pytest.raises(InvalidInputError, match="duplicates"):
        PoolView(ids=np.array(["a", "a"]))
    with pytest.raises(InvalidInputError, match="one row per pool input"):
        PoolView(ids=ids_of(3), features=np.zeros((2, 4)))
    with pytest.raises(InvalidInputError, match="softmax"):
        PoolView(ids=ids_of(2), probs=np.array([[2.0, 1.0], [0.1, 0.3]]))
    with pytest.raises(InvalidInputError, match="P x C"):
        PoolView(ids=ids_of(2), probs=np.ones((3, 2)) / 2)


# ---------------------------------------------------------------- baselines


def test_random_is_seeded_and_uniform_without_repeats() -> None:
    view = PoolView(ids=ids_of(100))
    a = SELECTORS.get("random")().select(view, 30, random_state=1)
    b = SELECTORS.get("random")().select(view, 30, random_state=1)
    c = SELECTORS.get("random")().select(view, 30, random_state=2)
    assert a.ids.tolist() == b.ids.tolist() != c.ids.tolist()
    assert len(set(a.ids.tolist())) == 30 and a.cost == 30
    with pytest.raises(ConfigError, match="'budget' parameter of random"):
        SELECTORS.get("random")().select(view, 1.5)  # type: ignore[arg-type]


def test_random_state_takes_a_seed_a_generator_or_none() -> None:
    view = PoolView(ids=ids_of(100))
    random = SELECTORS.get("random")()
    by_seed = random.select(view, 10, random_state=7)
    assert by_seed.info["seed"] == 7
    gen = np.random.default_rng(7)
    first = random.select(view, 10, random_state=gen)
    assert first.ids.tolist() == by_seed.ids.tolist() and first.info["seed"] is None
    # a generator advances: the next draw from it differs
    assert random.select(view, 10, random_state=gen).ids.tolist() != first.ids.tolist()
    assert len(random.select(view, 10, random_state=None)) == 10
    with pytest.raises(ConfigError, match="'random_state' parameter of random must be an int"):
        random.select(view, 10, random_state=-1)


def test_deprecated_seed_keyword_still_selects_the_same() -> None:
    view = PoolView(ids=ids_of(100))
    with pytest.warns(FutureWarning, match="random_state"):
        old = SELECTORS.get("random")().select(view, 10, seed=3)
    assert (
        old.ids.tolist() == SELECTORS.get("random")().select(view, 10, random_state=3).ids.tolist()
    )


def test_a_selector_writes_only_select_and_the_base_validates() -> None:
    class FirstRows(Selector):
        def _select(self, pool, budget, *, clusters, oracle, rng):  # type: ignore[no-untyped-def]
            return Selection(ids=pool.ids[:budget], cost=budget)

    view = PoolView(ids=ids_of(5))
    assert FirstRows().select(view, 2).ids.tolist() == view.ids[:2].tolist()
    with pytest.raises(ConfigError, match="exceeds the pool size"):
        FirstRows().select(view, 6)
    with pytest.raises(InvalidInputError, match="PoolView"):
        FirstRows().select(view.ids, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        type("NoSelect", (Selector,), {})()


def mispredicted_setup() -> tuple[PoolView, dict[str, int], list[int]]:
    n = 50
    ids = ids_of(n)
    predicted = np.zeros(n, dtype=int)
    truth = np.zeros(n, dtype=int)
    truth[::5] = 1  # every 5th input is mispredicted
    probs = softmax(np.eye(2)[predicted] * 3.0)
    calls: list[int] = []
    return (
        PoolView(ids=ids, probs=probs),
        dict(zip(ids.tolist(), truth.tolist(), strict=True)),
        calls,
    )


def test_mispredicted_counts_every_labelled_input() -> None:
    view, truth, calls = mispredicted_setup()

    def oracle(ids: np.ndarray) -> np.ndarray:
        calls.append(len(ids))
        return np.array([truth[i] for i in ids])

    sel = SELECTORS.get("mispredicted")().select(view, 5, oracle=oracle, random_state=3)
    assert len(sel) == 5
    assert all(truth[i] == 1 for i in sel.ids)
    assert sel.cost == sum(calls) > len(sel)
    assert sel.info["labelled"] == sel.cost and sel.info["stopped"] == "budget"
    # the cost is that of drawing one by one until the 5th mispredicted input
    order = np.random.default_rng(3).permutation(50)
    wrong_positions = [p for p, r in enumerate(order) if r % 5 == 0]
    assert sel.cost == wrong_positions[4] + 1
    assert sel.ids.tolist() == ids_of(50)[order[wrong_positions[:5]]].tolist()
    # larger oracle batches: same inputs kept, at least the same cost, fewer calls
    calls.clear()
    big = SELECTORS.get("mispredicted")(oracle_batch=20).select(
        view, 5, oracle=oracle, random_state=3
    )
    assert big.ids.tolist() == sel.ids.tolist() and big.cost >= sel.cost
    assert big.info["oracle_calls"] <= sel.info["oracle_calls"]


def test_mispredicted_stops_at_pool_or_max_cost(caplog: pytest.LogCaptureFixture) -> None:
    view, truth, _ = mispredicted_setup()

    def oracle(ids: np.ndarray) -> np.ndarray:
        return np.array([truth[i] for i in ids])

    sel = SELECTORS.get("mispredicted")().select(view, 20, oracle=oracle)
    assert len(sel) == 10 and sel.cost == 50 and sel.info["stopped"] == "pool exhausted"
    capped = SELECTORS.get("mispredicted")(max_cost=12).select(view, 20, oracle=oracle)
    assert capped.cost == 12 and capped.info["stopped"] == "max_cost"
    assert "only" in caplog.text
    with pytest.raises(InvalidInputError, match="oracle="):
        SELECTORS.get("mispredicted")().select(view, 2)
    with pytest.raises(InvalidInputError, match="one label per id"):
        SELECTORS.get("mispredicted")().select(view, 2, oracle=lambda ids: np.zeros(1, dtype=int))


# ---------------------------------------------------------------- uncertainty


def test_uncertainty_selectors_pick_the_known_most_uncertain_rows() -> None:
    probs = np.array(
        [
            [0.98, 0.01, 0.01],  # confident
            [1 / 3, 1 / 3, 1 / 3],  # most uncertain by every score
            [0.5, 0.5, 0.0],  # top-2 tie
            [0.6, 0.2, 0.2],
            [0.9, 0.05, 0.05],
            [0.5, 0.5, 0.0],  # identical to row 2: ties by pool order
        ],
        dtype=np.float32,
    )
    view = PoolView(ids=ids_of(6), probs=probs)
    p = probs.astype(np.float64)
    expected = {
        "entropy": -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(axis=1),
        "deepgini": 1 - (p**2).sum(axis=1),
        "margin": 1 - p.max(axis=1),
    }
    for name, score in expected.items():
        sel = SELECTORS.get(name)().select(view, 3)
        assert sel.ids[0] == "p00001"
        order = sorted(range(6), key=lambda i: (-score[i], i))[:3]
        assert sel.ids.tolist() == ids_of(6)[order].tolist(), name
        np.testing.assert_allclose(sel.scores, score[order], rtol=1e-12)  # type: ignore[arg-type]
        assert sel.cost == 3
    # row 2 and 5 tie: row 2 first
    margin = SELECTORS.get("margin")().select(view, 6)
    assert margin.ids.tolist().index("p00002") < margin.ids.tolist().index("p00005")
    with pytest.raises(InvalidInputError, match="probs="):
        SELECTORS.get("entropy")().select(PoolView(ids=ids_of(6)), 2)


# ---------------------------------------------------------------- DSA


def brute_dsa(
    pool: np.ndarray, pred: np.ndarray, train: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    out = []
    train = train.astype(np.float64)
    for x, c in zip(pool.astype(np.float64), pred, strict=True):
        same = np.flatnonzero(labels == c)
        d = np.linalg.norm(train[same] - x, axis=1)
        anchor = train[same[np.argmin(d)]]
        dist_b = np.linalg.norm(train[labels != c] - anchor, axis=1).min()
        out.append(d.min() / dist_b)
    return np.array(out)


def test_dsa_planted_and_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    train_labels = np.repeat([0, 1], 30)
    train = (centres[train_labels] + rng.normal(scale=0.5, size=(60, 2))).astype(np.float32)
    pool = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0], [4.5, 0.5]], dtype=np.float32)
    probs = softmax(np.array([[3.0, 0], [1.0, 0], [0, 3.0], [1.0, 0]]))
    path = tmp_path / "train.npy"
    np.save(path, train)
    view = PoolView(
        ids=ids_of(4),
        probs=probs,
        activations=pool,
        reference=ReferenceSet(np.load(path, mmap_mode="r"), train_labels),
    )
    sel = SELECTORS.get("dsa")(batch_size=1).select(view, 2)
    assert set(sel.ids.tolist()) == {"p00001", "p00003"}  # between the classes: surprising
    scores = dsa_scores(pool, np.argmax(probs, axis=1), train, train_labels)
    np.testing.assert_allclose(
        scores, brute_dsa(pool, np.argmax(probs, axis=1), train, train_labels), rtol=1e-9
    )
    assert scores[1] > 3 * scores[0] and scores[1] > 3 * scores[2]
    with pytest.raises(InvalidInputError, match="ReferenceSet"):
        SELECTORS.get("dsa")().select(PoolView(ids=ids_of(4), probs=probs, activations=pool), 2)


def test_dsa_random_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(size=(40, 5))
    labels = rng.integers(0, 3, size=40)
    pool = rng.normal(size=(25, 5))
    pred = rng.integers(0, 3, size=25)
    np.testing.assert_allclose(
        dsa_scores(pool, pred, train, labels, batch_size=4),
        brute_dsa(pool, pred, train, labels),
        rtol=1e-9,
    )


# ---------------------------------------------------------------- contrastive ClosestU


def test_contrastive_scores_reference_values() -> None:
    dist = np.array([[1.0, 3.0], [0.0, 2.0], [0.0, 0.0], [4.0, 4.0]])
    d_ok = np.array([1.0, 0.0, 0.0, 12.0])
    np.testing.assert_allclose(
        contrastive_scores(dist, d_ok),
        [[0.5, 0.75], [0.5, 1.0], [0.5, 0.5], [0.25, 0.25]],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrastive_closest_matches_explicit_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    members = rng.normal(size=(12, 3)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, -1, 3, 0])
    correct = rng.normal(size=(20, 3)).astype(np.float32)
    pool = rng.normal(size=(50, 3)).astype(np.float32)
    clusters = [0, 1, 2]  # cluster 3 is a singleton
    p64 = pool.astype(np.float64)
    score = np.empty((50, 3))
    for i in range(50):
        d_ok = min(np.linalg.norm(p64[i] - c) for c in correct.astype(np.float64))
        for k, c in enumerate(clusters):
            d = min(np.linalg.norm(p64[i] - m) for m in members[labels == c].astype(np.float64))
            score[i, k] = d / (d + d_ok)
    sel = ContrastiveClosestSelector(batch_size=9).select(
        PoolView(ids=ids_of(50), features=pool),
        10,
        clusters=ClusterSpace(members, labels, correct=correct),
    )
    quotas = np.array([sel.info["quotas"][str(c)] for c in clusters])
    rows, position, _ = closest_assignment(score, quotas)
    assert sel.ids.tolist() == ids_of(50)[rows].tolist()
    assert sel.cluster is not None and sel.cluster.tolist() == position.tolist()
    assert sel.distance is not None
    np.testing.assert_allclose(sel.distance, score[rows, position], rtol=1e-9, atol=1e-12)
    assert sel.info["params"]["distance"] == "contrastive"
    assert sel.info["n_correct_reference"] == 20


def test_contrastive_closest_prefers_inputs_away_from_correct_ones() -> None:
    """Planted: the error cluster sits at the edge of a dense region the model gets right.
    Pool inputs inside that region are the nearest to the cluster; the inputs on the far side
    of the cluster, away from every correct input, are the ones the contrastive score picks."""
    members = np.array([[1.0, 0.0], [1.2, 0.0]], dtype=np.float32)
    correct = np.array([[x, y] for x in (-1.0, -0.5, 0.0, 0.5) for y in (-0.2, 0.0, 0.2)])
    dense = [[0.6, 0.05 * i] for i in range(4)]  # 0.4 from the cluster, 0.1 from correct ones
    beyond = [[1.9 + 0.1 * i, 0.0] for i in range(4)]  # 0.7+ from the cluster, far from correct
    pool = np.array(dense + beyond, dtype=np.float32)
    view = PoolView(ids=ids_of(8), features=pool)
    space = ClusterSpace(members, np.array([0, 0]), correct=correct.astype(np.float32))
    nearest = ClosestSelector().select(view, 4, clusters=space)
    contrast = ContrastiveClosestSelector().select(view, 4, clusters=space)
    assert sorted(nearest.ids.tolist()) == ids_of(8)[:4].tolist()
    assert sorted(contrast.ids.tolist()) == ids_of(8)[4:].tolist()
    # the nearest-member variant ignores the correct inputs
    plain = ClosestSelector().select(view, 4, clusters=ClusterSpace(members, np.array([0, 0])))
    assert plain.ids.tolist() == nearest.ids.tolist()


def test_contrastive_closest_errors() -> None:
    pool, space, _ = planted()
    view = PoolView(ids=ids_of(len(pool)), features=pool)
    with pytest.raises(InvalidInputError, match="correct=\\.\\.\\."):
        ContrastiveClosestSelector().select(view, 3, clusters=space)
    with pytest.raises(ConfigError, match="'distance' parameter of closest must be one of"):
        ClosestSelector(distance="cosine").select(view, 3, clusters=space)
    with pytest.raises(InvalidInputError, match=r"ClusterSpace\.correct must have one row"):
        ClusterSpace(space.features, space.labels, correct=np.zeros(3))
    with pytest.raises(InvalidInputError, match=r"ClusterSpace\.correct must hold .* empty"):
        ClusterSpace(space.features, space.labels, correct=np.zeros((0, 2)))
    with pytest.raises(InvalidInputError, match=r"ClusterSpace\.correct has 3 values per row"):
        ClusterSpace(space.features, space.labels, correct=np.zeros((4, 3)))


def test_contrastive_closest_streams_correct_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    members = rng.normal(size=(10, 5)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    correct = rng.normal(size=(40, 5)).astype(np.float32)
    view = PoolView(ids=ids_of(30), features=rng.normal(size=(30, 5)).astype(np.float32))
    path = tmp_path / "correct.npy"
    np.save(path, correct)
    in_memory = ContrastiveClosestSelector().select(
        view, 12, clusters=ClusterSpace(members, labels, correct=correct)
    )
    for source in (np.load(path, mmap_mode="r"), SlicedRows(correct)):
        streamed = ContrastiveClosestSelector(batch_size=4).select(
            view, 12, clusters=ClusterSpace(members, labels, correct=source)
        )
        assert streamed.ids.tolist() == in_memory.ids.tolist()
        assert streamed.distance is not None and in_memory.distance is not None
        np.testing.assert_allclose(streamed.distance, in_memory.distance, rtol=1e-12)


def test_assignment_tiebreak_orders_the_clusters_of_one_input() -> None:
    dist = np.array([[1.0, 1.0, 1.0]])
    rows, cluster, _ = closest_assignment(dist, np.array([1, 1, 1]))
    assert cluster.tolist() == [0]  # without: lowest position
    rows, cluster, _ = closest_assignment(dist, np.array([1, 1, 1]), tiebreak=[[3, 1, 2]])
    assert rows.tolist() == [0] and cluster.tolist() == [1]


def test_contrastive_closest_input_on_a_correct_one_keeps_its_nearest_cluster() -> None:
    """Pool row A coincides with a correct input, so all its scores are 1; it must still
    aim at its nearest cluster (1), not at the lowest id (0)."""
    members = np.array([[0, 0], [0, 0.1], [10, 0], [10, 0.1], [0, 10], [0, 10.1]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    pool = np.array([[9.0, 0.0], [0.0, 10.05]])  # A, then C near cluster 2
    space = ClusterSpace(members, labels, correct=np.array([[9.0, 0.0]]))
    # budget 2 < 3 clusters: clusters 0 and 1 get a quota of 1, cluster 2 none
    sel = ContrastiveClosestSelector().select(
        PoolView(ids=ids_of(2), features=pool), 2, clusters=space
    )
    assert sel.cluster is not None and sel.distance is not None
    got = dict(zip(sel.ids.tolist(), sel.cluster.tolist(), strict=True))
    assert got == {"p00000": 1, "p00001": 0}
    assert sel.distance[sel.ids.tolist().index("p00000")] == 1.0


# ---------------------------------------------------------------- contract over the registry


def contract_inputs() -> tuple[PoolView, ClusterSpace, Oracle]:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 4)).astype(np.float32)
    probs = softmax(rng.normal(size=(40, 3)))
    truth = rng.integers(0, 3, size=40)
    lookup = dict(zip(ids_of(40).tolist(), truth.tolist(), strict=True))
    view = PoolView(
        ids=ids_of(40),
        probs=probs,
        features=feats,
        reference=ReferenceSet(rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)),
    )
    space = ClusterSpace(
        rng.normal(size=(9, 4)),
        np.array([0, 0, 0, 1, 1, 2, 2, 2, -1]),
        correct=rng.normal(size=(12, 4)),
    )
    return view, space, lambda ids: np.array([lookup[i] for i in ids])


@pytest.mark.parametrize("name", SELECTORS.names())
def test_selector_contract(name: str) -> None:
    view, space, oracle = contract_inputs()
    cls = SELECTORS.get(name)
    a = cls().select(view, 6, clusters=space, oracle=oracle, random_state=4)
    b = cls().select(view, 6, clusters=space, oracle=oracle, random_state=4)
    assert isinstance(a, Selection)
    assert a.ids.tolist() == b.ids.tolist() and a.cost == b.cost
    other = cls().select(view, 6, clusters=space, oracle=oracle, random_state=5)
    # a selector that declares it ignores the seed must really give the same selection
    assert cls.seeded or other.ids.tolist() == a.ids.tolist()
    assert len(a) <= 6 and a.cost >= len(a)
    assert set(a.ids.tolist()) <= set(view.ids.tolist()) and len(set(a.ids.tolist())) == len(a)
    json.dumps(a.info)
    with pytest.raises(
        ConfigError, match=rf"The 'budget' parameter of {name} must be an int >= 1\. Got 0\."
    ):
        cls().select(view, 0, clusters=space, oracle=oracle)
    with pytest.raises(ConfigError, match="exceeds the pool size"):
        cls().select(view, 41, clusters=space, oracle=oracle)
    assert "=" in repr(cls()) or repr(cls()).endswith("()")


# ---------------------------------------------------------------- streaming details


class SlicedRows:
    """A row source that supports only ``len`` and ``x[a:b]`` (like a lazy reader)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.reads = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("row slices only")
        self.reads += 1
        return self.data[index]


def test_small_reference_chunks_uncached_and_slice_only_sources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dnnsafety.distances as engine

    rng = np.random.default_rng(2)
    members = rng.normal(size=(25, 6))
    labels = rng.integers(0, 4, size=25)
    pool = rng.normal(size=(50, 6)).astype(np.float32)
    train = rng.normal(size=(33, 6))
    train_labels = rng.integers(0, 3, size=33)
    probs = softmax(rng.normal(size=(50, 3)))
    space = ClusterSpace(members, labels)
    expected = ClosestSelector().select(PoolView(ids=ids_of(50), features=pool), 12, clusters=space)
    expected_dsa = dsa_scores(pool, np.argmax(probs, axis=1), train, train_labels)

    monkeypatch.setattr(engine, "auto_chunk_rows", lambda dim: 4)  # many reference chunks
    monkeypatch.setattr(engine, "_CACHE_BYTES", 0)  # re-read them for every pool batch
    source = SlicedRows(pool)
    got = ClosestSelector().select(PoolView(ids=ids_of(50), features=source), 12, clusters=space)
    assert got.ids.tolist() == expected.ids.tolist()
    np.testing.assert_allclose(got.distance, expected.distance, rtol=1e-9)  # type: ignore[arg-type]
    assert source.reads > 1
    dsa = dsa_scores(SlicedRows(pool), np.argmax(probs, axis=1), SlicedRows(train), train_labels)
    np.testing.assert_allclose(dsa, expected_dsa, rtol=1e-9)


def test_dsa_class_without_training_traces_is_most_surprising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    train = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    scores = dsa_scores(
        np.array([[0.1, 0.0], [3.0, 3.0]]), np.array([0, 2]), train, np.array([0, 0, 1])
    )
    assert np.isfinite(scores[0]) and scores[1] == np.inf
    assert "without training traces" in caplog.text
    with pytest.raises(InvalidInputError, match="two classes"):
        dsa_scores(train, np.zeros(3, dtype=int), train, np.zeros(3, dtype=int))
