from __future__ import annotations

import numpy as np
import pytest

from dnnsafety.bias.groups import FlagRule, find_groups, group_statistics
from dnnsafety.exceptions import ConfigError, InvalidInputError


def _planted(seed: int = 0):
    """Four blobs: three common ones (two with few errors, one with many errors but as common
    in train as in test) and one rare in train, common in test, with many errors."""
    rng = np.random.default_rng(seed)
    centres = np.eye(4, 8) * 12
    # (train, test, test error rate) per blob
    plan = [(600, 200, 0.05), (600, 200, 0.05), (300, 100, 0.45), (6, 150, 0.7)]
    feats, is_test, errors, blob = [], [], [], []
    for b, (n_tr, n_te, rate) in enumerate(plan):
        for n, test in ((n_tr, False), (n_te, True)):
            feats.append(centres[b] + rng.normal(size=(n, 8)))
            is_test.append(np.full(n, test))
            errors.append(rng.random(n) < rate if test else np.zeros(n, bool))
            blob.append(np.full(n, b))
    return (
        np.concatenate(feats),
        np.concatenate(is_test),
        np.concatenate(errors),
        np.concatenate(blob),
    )


def test_the_planted_rare_high_error_group_is_the_only_one_flagged():
    feats, is_test, errors, blob = _planted()
    result = find_groups(feats, is_test, errors, cluster_params={"n_clusters": 4})
    assert len(result.flagged) == 1
    rare = result.labels[blob == 3]
    assert np.mean(rare == result.flagged[0]) > 0.95
    top = result.groups[0]
    assert top.flagged and top.n_train == 6 and top.n_test == 150
    assert top.representation_ratio > 10
    assert top.ci_low < top.error_rate < top.ci_high
    # the common high-error blob is not under-represented: not flagged, but tested significant
    common_bad = next(g for g in result.groups if g.n_train == 300)
    assert not common_bad.flagged and common_bad.q_value < 0.05
    assert result.params["cluster"]["name"] == "kmeans-fixed"


def test_statistics_of_known_groups():
    labels = np.array([0] * 8 + [1] * 2 + [0] * 4 + [1] * 6)
    is_test = np.array([False] * 10 + [True] * 10)
    errors = np.array([False] * 10 + [False] * 4 + [True] * 3 + [False] * 3)
    res = group_statistics(labels, is_test, errors, FlagRule(min_test=1, min_ratio=0))
    g1 = next(g for g in res.groups if g.id == 1)
    assert (g1.n_train, g1.n_test, g1.n_errors) == (2, 6, 3)
    assert g1.representation_ratio == pytest.approx(0.6 / 0.2)
    assert g1.error_rate == 0.5
    # train-weighted baseline: 0.8 * 0/4 + 0.2 * 3/6
    assert res.baseline_error == pytest.approx(0.1)
    overall = group_statistics(labels, is_test, errors, FlagRule(baseline="overall"))
    assert overall.baseline_error == pytest.approx(0.3)


def test_noise_is_in_no_group_and_bad_input_is_refused():
    res = group_statistics(np.array([-1, 0, -1, 0]), np.array([0, 0, 1, 1], bool), np.ones(4))
    assert [g.id for g in res.groups] == [0]
    with pytest.raises(InvalidInputError):
        group_statistics(np.zeros(3), np.ones(3, bool), np.zeros(3))
    with pytest.raises(InvalidInputError):
        group_statistics(np.zeros(3), np.ones(2, bool), np.zeros(3))
    for bad in (FlagRule(alpha=0), FlagRule(baseline="x"), FlagRule(min_test=0)):
        with pytest.raises(ConfigError):
            group_statistics(np.zeros(2), np.array([0, 1], bool), np.zeros(2), bad)
