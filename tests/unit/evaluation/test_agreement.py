"""Two partitions of the same errors: planted agreement, permutation, independence, noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix

from dnnsafety.evaluation.agreement import compare_partitions


def _partition(labels, prefix="e"):
    return {f"{prefix}{i}": int(c) for i, c in enumerate(labels)}


@pytest.fixture()
def planted():
    # 4 clusters of unequal sizes, 200 errors
    return np.repeat([0, 1, 2, 3], [90, 60, 30, 20])


def test_identical_partitions_agree_fully(planted):
    got = compare_partitions(_partition(planted), _partition(planted))
    assert got.ari == pytest.approx(1.0)
    assert got.n_common == got.n_shared == 200
    assert np.array_equal(got.contingency, np.diag([90, 60, 30, 20]))
    assert [m.jaccard for m in got.matches] == [1.0] * 4
    assert [(m.first, m.second) for m in got.matches] == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_a_permuted_labelling_is_the_same_partition(planted):
    relabel = {0: 7, 1: 3, 2: 0, 3: 12}
    other = np.array([relabel[c] for c in planted])
    got = compare_partitions(_partition(planted), _partition(other))
    assert got.ari == pytest.approx(1.0)
    assert {m.first: m.second for m in got.matches} == relabel
    assert all(m.jaccard == 1.0 and m.shared == m.first_size == m.second_size for m in got.matches)
    assert got.mean_jaccard == 1.0
    assert got.second_ids == [0, 3, 7, 12]


def test_independent_partitions_score_about_zero():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 5, 3000)
    second = rng.integers(0, 4, 3000)
    got = compare_partitions(_partition(first), _partition(second))
    assert abs(got.ari) < 0.01
    # 5 x 4 near-uniform cells: each best Jaccard is far from a match
    assert max(m.jaccard for m in got.matches) < 0.2
    assert got.ari == pytest.approx(adjusted_rand_score(first, second))


def test_contingency_matches_sklearn_and_a_half_match_scores_its_jaccard():
    first = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    second = np.array([5, 5, 6, 6, 6, 6, 7, 7])
    got = compare_partitions(_partition(first), _partition(second))
    assert np.array_equal(got.contingency, contingency_matrix(first, second))
    match = {m.first: m for m in got.matches}
    # cluster 0 (4 members) shares 2 with 5 (2 members) and 2 with 6 (4 members):
    # Jaccard 2/4 = 0.5 against 5, 2/6 against 6
    assert match[0].second == 5 and match[0].jaccard == pytest.approx(0.5)
    assert match[1].second == 6 and match[1].jaccard == pytest.approx(2 / 4)
    assert match[2].jaccard == 1.0


def test_noise_is_its_own_row_and_column_and_left_out_of_the_ari():
    first = {"a": 0, "b": 0, "c": 1, "d": 1, "e": -1, "x": 0}
    second = {"a": 3, "b": 3, "c": 4, "d": -1, "e": 4, "y": 2}  # x, y: analysed by one only
    got = compare_partitions(first, second)
    assert got.n_common == 5 and got.n_shared == 3
    assert got.first_ids == [0, 1, -1] and got.second_ids == [3, 4, -1]
    assert got.contingency.tolist() == [[2, 0, 0], [0, 1, 1], [0, 1, 0]]
    assert got.ari == pytest.approx(1.0)  # a, b | c: the same partition of the shared three
    assert [m.first for m in got.matches] == [0, 1]  # no match row for noise


def test_all_noise_gives_no_ari():
    got = compare_partitions({"a": -1, "b": 0}, {"a": 0, "b": -1})
    assert np.isnan(got.ari) and got.n_shared == 0
    assert got.matches[0].second == -1 and got.matches[0].jaccard == 0.0
