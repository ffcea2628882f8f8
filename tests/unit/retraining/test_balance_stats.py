"""Balanced retraining bag (METHOD.md §2.10) and the comparison statistics."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from dnnsafety.evaluation import improved_worsened, mann_whitney, mean_ci, vargha_delaney_a12
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.retraining import bag_for, balanced_bag, bootstrap_weights
from dnnsafety.selection import Selection


def groups() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {
        0: (
            np.array(["a0", "a1", "a2", "a3", "a4", "a5"]),
            np.array([0.5, 0.1, 0.3, 0.2, 0.4, 9.0]),
        ),
        4: (np.array(["b0", "b1", "b2"]), np.array([1.0, 0.0, 3.0])),
        7: (np.array(["c0"]), np.array([2.0])),
    }


def test_every_cluster_contributes_u_b_and_keeps_its_nearest() -> None:
    bag = balanced_bag(groups(), {0: 5, 4: 3, 7: 1}, np.random.default_rng(0))
    assert len(bag) == 3 * 5
    counts = Counter(s[0] for s in bag.tolist())
    assert counts == {"a": 5, "b": 5, "c": 5}
    # cluster 0 keeps its 5 nearest (a5 at distance 9 is dropped), each exactly once
    assert bag[:5].tolist() == ["a1", "a3", "a2", "a4", "a0"]
    # every kept input appears at least once; c0 is repeated
    assert set(bag.tolist()) == {"a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "c0"}
    assert bag.tolist().count("c0") == 5


def test_bag_is_deterministic_per_rng_and_redrawn_per_call() -> None:
    quotas = {0: 6, 4: 3, 7: 1}
    a = balanced_bag(groups(), quotas, np.random.default_rng(1))
    b = balanced_bag(groups(), quotas, np.random.default_rng(1))
    assert a.tolist() == b.tolist()
    rng = np.random.default_rng(1)
    draws = {tuple(balanced_bag(groups(), quotas, rng).tolist()) for _ in range(10)}
    assert len(draws) > 1  # no caching: each call draws again
    others = {tuple(balanced_bag(groups(), quotas, seed).tolist()) for seed in range(10)}
    assert len(others) > 1


def test_weights_favour_near_inputs() -> None:
    d = np.array([0.0, 1.0, 3.0])
    w = bootstrap_weights(d)
    np.testing.assert_allclose(w, np.array([1.0, 0.75, 0.25]) / 2.0)
    np.testing.assert_allclose(bootstrap_weights(np.array([0.0, 0.0])), [0.5, 0.5])
    np.testing.assert_allclose(bootstrap_weights(np.array([4.0])), [1.0])
    # oversampling a 3-input cluster to 1003 items: draw frequencies follow the weights
    data = {
        0: (np.array(["n", "m", "f"]), d),
        1: (np.array([f"x{i}" for i in range(1003)]), np.zeros(1003)),
    }
    bag = balanced_bag(data, {0: 3, 1: 1003}, np.random.default_rng(0)).tolist()
    extra = Counter(bag[3:1003])
    assert extra["n"] > extra["m"] > extra["f"]
    assert extra["n"] / 1000 == pytest.approx(0.5, abs=0.05)
    assert extra["f"] / 1000 == pytest.approx(0.125, abs=0.04)


def test_balanced_bag_edge_cases(caplog: pytest.LogCaptureFixture) -> None:
    g = groups()
    # a cluster with a quota but no inputs contributes nothing, with a warning
    bag = balanced_bag({0: g[0]}, {0: 2, 9: 3}, 0)
    assert len(bag) == 2 and "no inputs" in caplog.text
    # fewer inputs than the quota: still oversampled to U_b
    assert len(balanced_bag({4: g[4]}, {4: 6}, 0)) == 6
    assert len(balanced_bag({}, {}, 0)) == 0
    with pytest.raises(InvalidInputError, match="no quota"):
        balanced_bag(g, {0: 2}, 0)
    with pytest.raises(ConfigError, match="quota of cluster 0"):
        balanced_bag({0: g[0]}, {0: -1}, 0)
    with pytest.raises(InvalidInputError, match="equal length"):
        balanced_bag({0: (np.array(["a"]), np.array([1.0, 2.0]))}, {0: 1}, 0)
    with pytest.raises(ConfigError, match="'rng' parameter"):
        balanced_bag(g, {0: 1, 4: 1, 7: 1}, "seed")  # type: ignore[arg-type]


def test_bag_for() -> None:
    closest = Selection(
        ids=np.array(["a", "b", "c", "d"]),
        cost=4,
        cluster=np.array([2, 2, 2, 5]),
        distance=np.array([0.1, 0.2, 0.3, 0.4]),
    )
    bag = bag_for(closest, np.random.default_rng(0))
    assert len(bag) == 6 and bag.tolist().count("d") == 3
    assert bag_for(closest, 0, balance=False).tolist() == ["a", "b", "c", "d"]
    plain = Selection(ids=np.array(["x", "y"]), cost=5)
    assert bag_for(plain, 0).tolist() == ["x", "y"]


# ---------------------------------------------------------------- statistics


def brute_a12(x: list[float], y: list[float]) -> float:
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    return wins / (len(x) * len(y))


def test_a12_against_brute_force_and_known_values() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 6, size=int(rng.integers(1, 12))).astype(float).tolist()
        y = rng.integers(0, 6, size=int(rng.integers(1, 12))).astype(float).tolist()
        assert vargha_delaney_a12(x, y) == pytest.approx(brute_a12(x, y), abs=1e-12)
    assert vargha_delaney_a12([1, 2, 3], [1, 2, 3]) == 0.5
    assert vargha_delaney_a12([5, 6], [1, 2, 3]) == 1.0
    assert vargha_delaney_a12([1, 2], [5, 6, 7]) == 0.0
    with pytest.raises(InvalidInputError, match="non-empty"):
        vargha_delaney_a12([], [1.0])


def test_mann_whitney() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=15), rng.normal(loc=0.3, size=12)
    assert mann_whitney(x, y) == pytest.approx(
        stats.mannwhitneyu(x, y, alternative="two-sided").pvalue
    )
    assert mann_whitney(np.arange(10.0), np.arange(10.0) + 100) < 0.001
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mann_whitney([0.9, 0.9, 0.9], [0.9, 0.9]) == 1.0


def test_mean_ci() -> None:
    values = [0.80, 0.82, 0.79, 0.85, 0.81]
    mean, low, high = mean_ci(values, level=0.9)
    ref = stats.t.interval(0.9, 4, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(ref)
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    single = mean_ci([0.7])
    assert single[0] == 0.7 and math.isnan(single[1]) and math.isnan(single[2])
    with pytest.raises(ConfigError, match="'level'"):
        mean_ci(values, level=95)


def test_improved_worsened() -> None:
    before = np.array([True, True, False, False, True])
    after = np.array([True, False, True, True, True])
    assert improved_worsened(before, after) == (2, 1)
    with pytest.raises(InvalidInputError, match="boolean"):
        improved_worsened(np.array([1, 0]), np.array([1, 1]))
    with pytest.raises(InvalidInputError, match="same shape"):
        improved_worsened(np.array([True]), np.array([True, False]))
