"""Interval rules over metadata per root-cause cluster: planted clusters, reference values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.explain import Condition, Rule, cluster_rules, describe_clusters, rules_for


def _planted(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Cluster 0 = fog > 0.62 and brightness < 0.4; cluster 1 = |rotation| > 30 (tilt either
    way); the rest is cluster 2; plus a categorical column the rules must ignore."""
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame(
        {
            "fog": rng.random(n),
            "brightness": rng.random(n),
            "rotation": rng.uniform(-60, 60, n),
            "side": rng.choice(["top", "none"], n),
        }
    )
    labels = np.full(n, 2)
    labels[(meta.fog > 0.62) & (meta.brightness < 0.4)] = 0
    labels[(meta.rotation.abs() > 30) & (labels == 2)] = 1
    return meta, labels


def test_tree_rules_recover_a_planted_conjunction_of_intervals():
    meta, labels = _planted()
    best = rules_for(meta, labels == 0)[0]
    assert {c.parameter for c in best.conditions} == {"fog", "brightness"}
    fog = next(c for c in best.conditions if c.parameter == "fog")
    bright = next(c for c in best.conditions if c.parameter == "brightness")
    assert fog.low == pytest.approx(0.62, abs=0.03) and fog.high is None
    assert bright.high == pytest.approx(0.4, abs=0.03) and bright.low is None
    assert best.precision > 0.95 and best.recall > 0.95
    # precision / recall / support recomputed by hand
    covered = best.holds(meta)
    members = labels == 0
    assert best.support == int((covered & members).sum())
    assert best.precision == pytest.approx((covered & members).sum() / covered.sum())
    assert best.recall == pytest.approx((covered & members).sum() / members.sum())
    assert "fog > 0.6" in best.text() and "brightness <= 0.4" in best.text()


def test_a_cluster_on_both_sides_of_a_parameter_gets_one_rule_per_side():
    meta, labels = _planted()
    rules = cluster_rules(meta, labels)[1]
    sides = sorted(
        ("low" if c.high is not None and c.high < 0 else "high")
        for r in rules[:2]
        for c in r.conditions
        if c.parameter == "rotation"
    )
    assert sides == ["high", "low"]
    assert all(r.precision > 0.95 for r in rules) and sum(r.recall for r in rules) > 0.8


def test_ripper_rules_are_read_as_intervals_and_best_picks_the_better_learner():
    meta, labels = _planted()
    ripper = rules_for(meta, labels == 0, method="ripper")
    assert ripper and all(r.method == "ripper" for r in ripper)
    assert all(c.parameter in {"fog", "brightness", "rotation"} for c in ripper[0].conditions)
    tree = rules_for(meta, labels == 0, method="tree")
    best = rules_for(meta, labels == 0, method="best")
    assert best[0].f1 == pytest.approx(max(tree[0].f1, ripper[0].f1))


def test_rules_round_trip_and_bad_arguments():
    rule = Rule((Condition("fog", 0.5, None), Condition("noise", None, 0.1)), 0.9, 0.8, 8, 9)
    assert Rule.from_dict(rule.to_dict()) == rule
    assert str(rule) == "fog > 0.5 and noise <= 0.1: precision 0.90, recall 0.80 (support 8)"
    assert str(Condition("x", -1.0, 2.0)) == "-1 < x <= 2"
    meta, labels = _planted(50)
    with pytest.raises(ConfigError):
        rules_for(meta, labels == 0, method="part")
    with pytest.raises(ConfigError):
        rules_for(meta, labels == 0, max_depth=0)
    with pytest.raises(InvalidInputError):
        rules_for(meta, np.array([60]))
    assert rules_for(meta[["side"]], labels == 0) == []  # no numeric metadata


def test_describe_clusters_stores_the_rules():
    meta, labels = _planted(200)
    errors = pd.DataFrame(
        {
            "sample_id": [f"e{i}" for i in range(200)],
            "label": 0,
            "pred": 1,
            "scenario": "nominal",
            **{f"meta.{c}": meta[c] for c in meta.columns},
        }
    )
    rng = np.random.default_rng(0)
    d = rng.random((200, 200))
    d = d + d.T
    records = describe_clusters(labels, d, errors, ["a", "b"])
    assert records[0]["rules"][0]["precision"] > 0.9
    assert {c["parameter"] for c in records[0]["rules"][0]["conditions"]} == {
        "fog",
        "brightness",
    }
