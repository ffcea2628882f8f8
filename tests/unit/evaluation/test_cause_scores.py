"""Reference tests of the per-cause scores on hand-made partitions (evaluation.clusters)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from dnnsafety.evaluation import cause_scores, score_clusters

# 10 errors: 6 nominal, 2 dark, 2 blur
SCEN = np.array(["nominal"] * 6 + ["dark"] * 2 + ["blur"] * 2, dtype=object)
CAUSES = ["blur", "dark"]


def test_one_big_cluster_cannot_pass():
    """All errors in one cluster: purity equals the one-cluster purity, F1 stays low."""
    s = score_clusters(np.zeros(10, dtype=int), SCEN, scenarios_to_cover=CAUSES)
    assert s.purity == pytest.approx(0.6) and s.purity_trivial == pytest.approx(0.6)
    dark = s.causes["dark"]
    assert (dark.recall, dark.precision) == (1.0, pytest.approx(0.2))
    assert dark.f1 == pytest.approx(2 * 0.2 / 1.2)
    assert s.coverage == 0 and s.min_f1 < 0.34


def test_perfect_partition():
    labels = np.array([0] * 6 + [1, 1, 2, 2])
    s = score_clusters(labels, SCEN, scenarios_to_cover=CAUSES)
    assert s.coverage == 1 and s.min_f1 == 1 and s.mean_f1 == 1 and s.purity == 1
    assert s.causes["blur"].cluster == 2


def test_split_cause_and_mixed_cluster_match_sklearn():
    """A cause split over two clusters and sharing one with nominal errors: the best cluster's
    recall / precision / F1 equal sklearn's on the binary 'in this cluster' vs 'is the cause'."""
    labels = np.array([0, 0, 0, 0, 0, 3, 3, 1, 2, 2])  # dark: {3, 1}; blur: cluster 2 alone
    for cause in CAUSES:
        got = cause_scores(labels, SCEN, cause)
        truth = cause == SCEN
        pred = labels == got.cluster
        assert got.recall == pytest.approx(recall_score(truth, pred))
        assert got.precision == pytest.approx(precision_score(truth, pred))
        assert got.f1 == pytest.approx(f1_score(truth, pred))
    dark = cause_scores(labels, SCEN, "dark")
    # cluster 3 = {nominal, dark}: recall 1/2, precision 1/2; cluster 1 = {dark}: 1/2, 1
    assert dark.cluster == 1 and dark.f1 == pytest.approx(2 / 3)


def test_best_cluster_is_by_f1_not_by_recall():
    # dark: 2 of 3 in a big nominal cluster (recall 2/3, precision 2/8), 1 alone (1/3, 1)
    scen = np.array(["nominal"] * 6 + ["dark"] * 3, dtype=object)
    labels = np.array([0] * 6 + [0, 0, 1])
    got = cause_scores(labels, scen, "dark")
    assert got.cluster == 1 and got.f1 == pytest.approx(0.5)  # 2*(1/3)*1/(4/3)


def test_noise_counts_as_missed_and_absent_cause_scores_zero():
    labels = np.array([0] * 6 + [-1, 1, 2, 2])
    dark = cause_scores(labels, SCEN, "dark")
    assert dark.recall == 0.5 and dark.precision == 1.0
    all_noise = cause_scores(np.full(10, -1), SCEN, "dark")
    assert all_noise.cluster == -1 and all_noise.f1 == 0
    s = score_clusters(labels, SCEN, scenarios_to_cover=["fog"])
    assert s.causes["fog"].n_errors == 0 and s.causes["fog"].f1 == 0


def test_table_columns_and_dict():
    s = score_clusters(np.array([0] * 6 + [1, 1, 2, 2]), SCEN, scenarios_to_cover=CAUSES)
    cols = s.table_columns()
    assert cols["min F1"] == 1 and cols["purity (1 cluster)"] == 0.6 and cols["clusters"] == 3
    d = s.to_dict()
    assert d["causes"]["dark"]["f1"] == 1 and d["min_f1"] == 1


def test_agreement_of_two_analyses_is_ari_on_the_shared_clustered_errors():
    from sklearn.metrics import adjusted_rand_score

    from dnnsafety.evaluation import cluster_agreement

    first = {"a": 0, "b": 0, "c": 1, "d": 1, "e": -1, "f": 2}
    second = {"a": 5, "b": 5, "c": 5, "d": 7, "e": 7, "g": 1}
    got = cluster_agreement(first, second)
    assert got.n_shared == 4  # e is noise in the first, f and g are in one only
    assert got.ari == pytest.approx(adjusted_rand_score([0, 0, 1, 1], [5, 5, 5, 7]))
    same = cluster_agreement(first, {k: v + 10 for k, v in first.items()})
    assert same.ari == pytest.approx(1.0)
    assert np.isnan(cluster_agreement({"a": 0}, {"a": 1}).ari)
