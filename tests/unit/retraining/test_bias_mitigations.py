from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.data.dataset import Split
from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.mitigation import MitigationContext
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.retraining.mitigations.bias import oversample, subclasses


def _context(features=None, probs=None, n=120):
    labels = np.arange(n) % 2
    split = Split(
        "train",
        np.array([f"t{i}" for i in range(n)], dtype=object),
        torch.zeros(n, 1, 4, 4),
        labels.astype(np.int64),
        np.array(["nominal"] * n, dtype=object),
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    return MitigationContext(model, split, None, features, probs)


def _planted_features(n=120, rare=6, seed=0):
    """Two classes; within each, a big blob and (for the first ``rare`` rows of class 0) a
    small far-away subclass."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 5)).astype(np.float32)
    rows = np.flatnonzero(np.arange(n) % 2 == 0)[:rare]
    feats[rows] += 20
    return feats, rows


def test_jtt_upweights_exactly_the_original_models_training_errors():
    n = 120
    probs = np.zeros((n, 2), np.float32)
    labels = np.arange(n) % 2
    probs[np.arange(n), labels] = 1
    wrong = np.array([3, 10, 77])
    probs[wrong] = probs[wrong][:, ::-1]
    plan = MITIGATIONS.create("jtt", {"lambda_up": 7}).plan(_context(probs=probs))
    assert plan.weights is not None
    assert np.flatnonzero(plan.weights == 7).tolist() == wrong.tolist()
    assert set(np.unique(plan.weights)) == {1.0, 7.0} and plan.info == {"error_set": 3}
    with pytest.raises(ConfigError):
        MITIGATIONS.create("jtt", {"lambda_up": 0.5}).plan(_context(probs=probs))


def test_group_reweighting_gives_the_small_planted_group_the_largest_weights():
    feats, rare = _planted_features()
    plan = MITIGATIONS.create("reweight-groups", {"n_groups": 2}).plan(_context(feats))
    w = plan.weights
    assert w is not None and w.mean() == pytest.approx(1.0)
    others = np.setdiff1d(np.arange(len(w)), rare)
    assert w[rare].min() > 5 * w[others].max()
    flat = MITIGATIONS.create("reweight-groups", {"n_groups": 2, "power": 0}).plan(_context(feats))
    assert np.allclose(flat.weights, 1)


def test_george_finds_the_planted_subclass_and_oversamples_it():
    feats, rare = _planted_features()
    labels = np.arange(len(feats)) % 2
    groups = subclasses(feats, labels, max_k=3)
    assert len(np.unique(groups[rare])) == 1
    assert not np.isin(groups[np.setdiff1d(np.flatnonzero(labels == 0), rare)], groups[rare]).any()
    assert not np.isin(groups[labels == 1], groups[labels == 0]).any()  # per class
    plan = MITIGATIONS.create("george", {"max_subclasses": 3, "min_group_size": 20}).plan(
        _context(feats)
    )
    assert plan.groups is not None and len(plan.groups) == len(plan.labels) == len(plan.images)
    counts = np.bincount(plan.groups)
    assert counts[counts > 0].min() >= 20
    assert plan.info["oversampled"] == len(plan.labels) - len(feats) > 0


def test_oversample_cycles_rows_of_small_groups():
    rows = oversample(np.array([0, 0, 0, 1]), 3)
    assert rows.tolist() == [0, 1, 2, 3, 3, 3]
