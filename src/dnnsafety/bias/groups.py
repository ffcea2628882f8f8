"""Groups without metadata: clusters of ALL training and test inputs in feature space, and
which of them are under-represented in training and make the model err (METHOD.md §8).

Domino (Eyuboglu et al., ICLR 2022), Spotlight and George (Sohoni et al., NeurIPS 2020) look
for hidden groups in a model's feature space rather than in metadata. Here the features of the
training and test inputs are reduced and clustered together (any reducer of
:data:`~dnnsafety.clustering.REDUCERS` and clusterer of :data:`~dnnsafety.clustering.CLUSTERERS`);
for every cluster (a *group*) :func:`group_statistics` reports

* its size in train and test, and its **representation ratio**: share of the test set over
  share of the training set (a group absent from training counts half a training sample, so
  the ratio stays finite);
* its test **error rate** with a Wilson interval;
* a one-sided binomial test of its error rate against a **baseline error rate**, with the
  Benjamini-Hochberg correction over all groups;
* whether it is **flagged**: under-represented *and* high-error by the stated rule
  :class:`FlagRule` (BH-adjusted p-value ``<= alpha``, ratio ``>= min_ratio``, at least
  ``min_test`` test inputs).

The baseline is by default the error rate the model would have on a test set distributed as
its training set (``"train-weighted"``: group error rates weighted by training shares), because
under a distribution shift the plain test error rate is itself inflated by the very groups the
test looks for; ``"overall"`` compares with the plain test error rate instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dnnsafety.bias.stats import benjamini_hochberg, binomial_greater, wilson_interval
from dnnsafety.clustering import CLUSTERERS, REDUCERS
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.types import JSONValue

BASELINES = ("train-weighted", "overall")


@dataclass(frozen=True)
class FlagRule:
    """When a group is flagged as under-represented and high-error.

    Attributes
    ----------
    alpha
        False discovery rate of the Benjamini-Hochberg correction over the groups' one-sided
        binomial tests (group error rate > baseline error rate).
    min_ratio
        Smallest representation ratio (test share / train share) of a flagged group.
    min_test
        Fewest test inputs of a flagged group.
    baseline
        ``"train-weighted"`` (default) or ``"overall"``: the error rate a group is tested
        against (see the module docstring).
    level
        Confidence level of the Wilson intervals.
    """

    alpha: float = 0.05
    min_ratio: float = 2.0
    min_test: int = 10
    baseline: str = "train-weighted"
    level: float = 0.95

    def validate(self) -> FlagRule:
        """Return ``self``; raise :class:`ConfigError` on a bad value."""
        if not 0 < self.alpha < 1:
            raise ConfigError(f"The bias rule's alpha must be in (0, 1). Got {self.alpha!r}.")
        if not self.min_ratio >= 0:
            raise ConfigError(f"The bias rule's min_ratio must be >= 0. Got {self.min_ratio!r}.")
        if (
            isinstance(self.min_test, bool)
            or not isinstance(self.min_test, int)
            or (self.min_test < 1)
        ):
            raise ConfigError(
                f"The bias rule's min_test must be an int >= 1. Got {self.min_test!r}."
            )
        if self.baseline not in BASELINES:
            raise ConfigError(
                f"The bias rule's baseline must be one of {', '.join(BASELINES)}. "
                f"Got {self.baseline!r}."
            )
        if not 0 < self.level < 1:
            raise ConfigError(f"The bias rule's level must be in (0, 1). Got {self.level!r}.")
        return self

    def describe(self) -> str:
        """The rule in words (for logs and the report)."""
        return (
            f"flagged when the error rate exceeds the {self.baseline} baseline (one-sided "
            f"binomial test, Benjamini-Hochberg q <= {self.alpha:g}), the representation "
            f"ratio is >= {self.min_ratio:g} and the group has >= {self.min_test} test inputs"
        )


@dataclass(frozen=True)
class BiasGroup:
    """One group's figures (see the module docstring).

    ``excess_errors`` (errors beyond what the baseline rate predicts for the group's test
    inputs) orders the groups by risk.
    """

    id: int
    n_train: int
    n_test: int
    train_share: float
    test_share: float
    representation_ratio: float
    n_errors: int
    error_rate: float
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    excess_errors: float
    flagged: bool

    def to_json(self) -> dict[str, JSONValue]:
        return asdict(self)


@dataclass(frozen=True)
class GroupAnalysis:
    """The groups of one run.

    Attributes
    ----------
    labels
        ``(N,)`` int64 group id per input (``-1``: left as noise by the clusterer).
    groups
        One :class:`BiasGroup` per group, flagged first, then by decreasing excess errors.
    baseline_error
        The error rate the groups were tested against.
    rule
        The flagging rule.
    params
        The reducer's and clusterer's parameters (JSON).
    """

    labels: np.ndarray
    groups: list[BiasGroup]
    baseline_error: float
    rule: FlagRule
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> list[int]:
        """Ids of the flagged groups, by risk."""
        return [g.id for g in self.groups if g.flagged]


def _check_rows(labels: np.ndarray, is_test: np.ndarray, errors: np.ndarray) -> None:
    n = len(labels)
    if len(is_test) != n or len(errors) != n:
        raise InvalidInputError(
            f"labels, is_test and errors need one entry per input; got {n}, {len(is_test)} "
            f"and {len(errors)}."
        )
    if not is_test.any() or is_test.all():
        raise InvalidInputError("Bias groups need both training and test inputs.")


def group_statistics(
    labels: object, is_test: object, errors: object, rule: FlagRule | None = None
) -> GroupAnalysis:
    """Per-group sizes, representation ratio, error rate, test and flag.

    Parameters
    ----------
    labels
        ``(N,)`` int group id per input, training and test inputs together (``< 0``: noise,
        in no group).
    is_test
        ``(N,)`` bool, True for test inputs, False for training inputs.
    errors
        ``(N,)`` bool, True where the model is wrong; read for test inputs only.
    rule
        The flagging rule (default :class:`FlagRule`).

    Raises
    ------
    InvalidInputError
        If the arrays differ in length or one of the two splits is empty.
    """
    rule = (rule or FlagRule()).validate()
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    test = np.asarray(is_test, dtype=bool).reshape(-1)
    err = np.asarray(errors, dtype=bool).reshape(-1)
    _check_rows(lab, test, err)
    n_train_all, n_test_all = int((~test).sum()), int(test.sum())
    ids = [int(g) for g in np.unique(lab) if g >= 0]
    n_tr = np.array([int(((lab == g) & ~test).sum()) for g in ids])
    n_te = np.array([int(((lab == g) & test).sum()) for g in ids])
    k = np.array([int(((lab == g) & test & err).sum()) for g in ids])
    rate = np.where(n_te > 0, k / np.maximum(n_te, 1), np.nan)
    train_share = n_tr / n_train_all
    test_share = n_te / n_test_all
    ratio = test_share / (np.maximum(n_tr, 0.5) / n_train_all)
    baseline = _baseline(rule.baseline, train_share, rate, err[test])
    low, high = wilson_interval(k, n_te, rule.level)
    p = binomial_greater(k, n_te, baseline)
    q = benjamini_hochberg(p)
    flagged = (q <= rule.alpha) & (ratio >= rule.min_ratio) & (n_te >= rule.min_test)
    excess = k - baseline * n_te
    groups = [
        BiasGroup(
            id=g,
            n_train=int(n_tr[i]),
            n_test=int(n_te[i]),
            train_share=float(train_share[i]),
            test_share=float(test_share[i]),
            representation_ratio=float(ratio[i]),
            n_errors=int(k[i]),
            error_rate=float(rate[i]) if n_te[i] else float("nan"),
            ci_low=float(low[i]),
            ci_high=float(high[i]),
            p_value=float(p[i]),
            q_value=float(q[i]),
            excess_errors=float(excess[i]),
            flagged=bool(flagged[i]),
        )
        for i, g in enumerate(ids)
    ]
    groups.sort(key=lambda g: (not g.flagged, -g.excess_errors, g.id))
    return GroupAnalysis(lab, groups, float(baseline), rule)


def _baseline(
    kind: str, train_share: np.ndarray, rate: np.ndarray, test_errors: np.ndarray
) -> float:
    overall = float(test_errors.mean()) if len(test_errors) else 0.0
    if kind == "overall":
        return overall
    seen = np.isfinite(rate) & (train_share > 0)
    if not seen.any():
        return overall
    w = train_share[seen]
    return float(np.clip((w * rate[seen]).sum() / w.sum(), 0.0, 1.0))


def cluster_features(
    features: object,
    reduce: str = "pca",
    reduce_params: dict[str, Any] | None = None,
    cluster: str = "kmeans-fixed",
    cluster_params: dict[str, Any] | None = None,
    random_state: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reduce and cluster ``features`` (``N x D``): group id per row (``-1`` noise) and the
    parameters used. The reducer is skipped when there are fewer rows than it needs."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise InvalidInputError(f"Features must be N x D with N >= 1; got shape {x.shape}.")
    reducer = REDUCERS.create(reduce, reduce_params or {}, random_state=random_state)
    reduced = x if len(x) < reducer.min_rows else np.asarray(reducer.fit_transform(x))
    clusterer = CLUSTERERS.create(cluster, cluster_params or {}, random_state=random_state)
    labels = np.asarray(clusterer.fit_predict(reduced.astype(np.float32)), dtype=np.int64)
    params = {
        "reduce": {
            "name": reduce,
            "dims": int(reduced.shape[1]),
            **getattr(reducer, "params_", {}),
        },
        "cluster": {"name": cluster, **dict(getattr(clusterer, "params_", {}))},
        "n_groups": int(labels.max()) + 1 if (labels >= 0).any() else 0,
    }
    return labels, params


def find_groups(
    features: object,
    is_test: object,
    errors: object,
    *,
    reduce: str = "pca",
    reduce_params: dict[str, Any] | None = None,
    cluster: str = "kmeans-fixed",
    cluster_params: dict[str, Any] | None = None,
    rule: FlagRule | None = None,
    random_state: int = 0,
) -> GroupAnalysis:
    """Cluster the features of training and test inputs together and score every group.

    Parameters
    ----------
    features
        ``(N, D)`` features of all training and test inputs (a backbone's embeddings for a
        black-box model, the model's penultimate activations for a white-box one).
    is_test, errors, rule
        As in :func:`group_statistics`.
    reduce, reduce_params, cluster, cluster_params
        Names and parameters in :data:`~dnnsafety.clustering.REDUCERS` and
        :data:`~dnnsafety.clustering.CLUSTERERS`.
    random_state
        Seed of the reducer and the clusterer.
    """
    labels, params = cluster_features(
        features, reduce, reduce_params, cluster, cluster_params, random_state
    )
    result = group_statistics(labels, is_test, errors, rule)
    return GroupAnalysis(result.labels, result.groups, result.baseline_error, result.rule, params)
