"""Class-conditional clustering and the collapse guard (clustering.conditional, .guard).

Planted structure: a class whose errors hold two visual subtypes must give two clusters; a
dense mass holding most errors, on which the internal index is flat, must not stay one cluster.
"""

from __future__ import annotations

import numpy as np
import pytest

from dnnsafety.clustering import CLUSTERERS
from dnnsafety.clustering.guard import error_groups, group_share, guarded_k_search
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.features import FEATURE_SOURCES, FeatureContext
from dnnsafety.features.sources import combine_blocks


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors of three classes in one dense mass (as all nominal errors can be in a global
    embedding); class 0's errors hold a second subtype, a small blob beside its nominal ones."""
    rng = np.random.default_rng(seed)
    mass = rng.normal(0.0, 1.0, size=(240, 5))
    classes = np.repeat([0, 1, 2], 80)
    sub = rng.normal(0.0, 0.25, size=(25, 5)) + np.array([4.5, 0, 0, 0, 0])
    x = np.vstack([mass, sub])
    cls = np.concatenate([classes, np.zeros(25, dtype=np.int64)])
    subtype = np.r_[np.zeros(240, dtype=bool), np.ones(25, dtype=bool)]
    return x, cls, subtype


def _purity_of(labels: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Recall and precision of the cluster holding most of ``mask``."""
    best = np.bincount(labels[mask & (labels >= 0)]).argmax()
    inside = labels == best
    return (inside & mask).sum() / mask.sum(), (inside & mask).sum() / inside.sum()


def test_conditional_finds_the_planted_subtype_within_its_class():
    x, cls, subtype = _planted()
    est = CLUSTERERS.create("conditional", {"by": "true"}, random_state=0)
    labels = est.fit_predict(x, cls)
    recall, precision = _purity_of(labels, subtype)
    assert recall >= 0.95 and precision >= 0.9
    # the subtype's cluster and class 0's other errors are two clusters
    assert len(np.unique(labels[cls == 0])) >= 2
    # no cluster mixes classes
    for c in np.unique(labels):
        assert len(np.unique(cls[labels == c])) == 1
    assert {row["group"] for row in est.search_} == {"0", "1", "2"}


def test_conditional_without_groups_is_one_group():
    x, _, _ = _planted()
    labels = CLUSTERERS.create("conditional", {"max_k": 3}, random_state=0).fit_predict(x)
    assert labels.min() >= 0 and len(np.unique(labels)) >= 2


def test_guard_splits_a_dominant_cluster_by_class():
    """DBSCAN puts the dense mass (and the subtype beside it) into few clusters, one of them
    holding most errors; the guard splits it per class and finds the subtype."""
    x, cls, subtype = _planted()
    plain = CLUSTERERS.create("dbscan", {}, random_state=0).fit_predict(x)
    assert np.bincount(plain[plain >= 0]).max() / len(x) > 0.5  # the collapse, unguarded
    guarded = CLUSTERERS.create("guarded", {"by": "true"}, random_state=0)
    labels = guarded.fit_predict(x, cls)
    kept = labels[labels >= 0]
    assert np.bincount(kept).max() / len(x) <= 0.5
    recall, precision = _purity_of(labels, subtype)
    assert recall >= 0.9 and precision >= 0.9
    assert guarded.params_["splits"] >= 1


def _footwear(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mass of classes 0-2 (most errors), a far corruption blob holding 20% of each of their
    errors, and a smaller far cluster holding every error of classes 3 and 4, with a subtype
    of class 3 beside its nominal errors (as footwear errors in Fashion-MNIST)."""
    rng = np.random.default_rng(seed)
    x = np.vstack(
        [
            rng.normal(0.0, 1.0, (240, 5)),
            rng.normal(0.0, 0.3, (60, 5)) + np.array([0, 10, 0, 0, 0]),
            rng.normal(0.0, 0.5, (80, 5)) + np.array([10, 0, 0, 0, 0]),
            rng.normal(0.0, 0.3, (30, 5)) + np.array([10, 3, 0, 0, 0]),
        ]
    )
    cls = np.concatenate(
        [np.repeat([0, 1, 2], 80), np.repeat([0, 1, 2], 20), np.repeat([3, 4], 40)]
    )
    cls = np.concatenate([cls, np.full(30, 3)])
    cause = np.array(["nominal"] * 240 + ["corruption"] * 60 + ["nominal"] * 80 + ["subtype"] * 30)
    return x, cls, cause


def test_guard_splits_a_cluster_holding_most_errors_of_its_classes():
    """The footwear cluster holds 27% of the errors (below max_share) but all of its classes'
    errors: split per class, the subtype is found; the corruption blob, which spans classes
    and holds a fifth of each one's errors, stays one cluster."""
    x, cls, cause = _footwear(0)
    est = CLUSTERERS.create("guarded", {}, random_state=0)
    labels = est.fit_predict(x, cls)
    assert _purity_of(labels, cause == "subtype") == (1.0, 1.0)
    assert _purity_of(labels, cause == "corruption") == (1.0, 1.0)
    assert any("group_share" in row for row in est.search_)
    old = CLUSTERERS.create("guarded", {"group_share": 1.0}, random_state=0).fit_predict(x, cls)
    recall, precision = _purity_of(old, cause == "subtype")
    assert recall == 1.0 and precision < 0.3  # only the dominant cluster split: not found


def test_group_share_is_the_mean_share_of_their_groups_held():
    groups = np.array([0, 0, 0, 1, 1, 2])
    weights = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 1.0])
    members = np.array([True, True, False, True, False, False])
    # rows 0, 1 hold 2 of group 0's 4 inputs; row 3 holds 1 of group 1's 2
    assert group_share(weights, members, groups) == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    members = np.array([True, True, True, True, True, False])
    assert group_share(weights, members, groups) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="group_share"):
        CLUSTERERS.create("guarded", {"group_share": 1.5}).fit(np.eye(4))


def test_flat_index_does_not_leave_most_errors_in_one_cluster():
    """One structureless Gaussian mass (flat silhouette curve) plus a small far blob: the
    silhouette's best cut is mass vs blob (one cluster of 85%); the guard splits further."""
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (170, 2)), rng.normal(12, 0.3, (30, 2))])
    fast = {"max_k": 5, "n_init": 2}
    params = {"inner": "kmeans", "inner_params": fast, "by": "", "max_k": 5}
    labels = CLUSTERERS.create("guarded", params, random_state=0).fit_predict(x)
    assert np.bincount(labels[labels >= 0]).max() / len(x) <= 0.5
    plain = CLUSTERERS.create("kmeans", fast, random_state=0).fit_predict(x)
    assert np.bincount(plain).max() / len(x) > 0.8  # what the silhouette alone gives


def test_k_search_takes_the_next_k_only_when_the_curve_is_flat():
    rng = np.random.default_rng(2)
    mass = rng.uniform(-1, 1, (160, 2))
    far = rng.normal(10, 0.2, (40, 2))
    x, w = np.vstack([mass, far]), np.ones(200)
    _, info = guarded_k_search(x, w, flat_tol=0.0, max_share=0.5, max_k=6)
    assert info["k"] == 2 and info["reason"] == "silhouette"  # not flat: best k kept
    loose, info = guarded_k_search(x, w, flat_tol=1.0, max_share=0.5, max_k=6)
    assert info["reason"] == "guard: next k" and np.bincount(loose).max() <= 100
    none, info = guarded_k_search(x[:160], w[:160], min_silhouette=0.9, max_k=4)
    assert info["k"] == 1 and (none == 0).all()


def test_error_groups_and_bad_parameters():
    true, pred = np.array([0, 1, 1, 2]), np.array([1, 0, 2, 0])
    assert error_groups("", true, pred) is None
    assert error_groups("true", true, pred).tolist() == [0, 1, 1, 2]
    assert error_groups("pred", true, pred).tolist() == [1, 0, 2, 0]
    pairs = error_groups("pair", true, pred)
    assert len(set(pairs.tolist())) == 4
    with pytest.raises(ConfigError):
        error_groups("label", true, pred)
    with pytest.raises(ConfigError, match="'by'"):
        CLUSTERERS.create("conditional", {"by": "x"}).fit(np.eye(4))
    with pytest.raises(ConfigError, match="'inner'"):
        CLUSTERERS.create("guarded", {"inner": "guarded"}).fit(np.eye(4))
    with pytest.raises(InvalidInputError, match="one key per row"):
        CLUSTERERS.create("guarded", {}).fit(np.eye(4), groups=[0, 1])


def test_combined_blocks_weigh_equally():
    wide = np.full((3, 100), 5.0, dtype=np.float32)
    narrow = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    out = combine_blocks([wide, narrow])
    assert out.shape == (3, 102)
    np.testing.assert_allclose(np.linalg.norm(out[:, :100], axis=1), np.sqrt(0.5), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out[:2, 100:], axis=1), np.sqrt(0.5), rtol=1e-6)
    assert (out[2, 100:] == 0).all()  # a zero row stays zero
    assert FEATURE_SOURCES.get("combined").requires == frozenset({"model", "image_shape"})
    with pytest.raises(ConfigError, match="unlabeled"):
        FEATURE_SOURCES.get("combined")(sources=("autoencoder", "pixels")).fit(FeatureContext())
