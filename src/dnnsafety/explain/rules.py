"""Interval rules over metadata that characterise each root-cause cluster (METHOD.md §4, §10).

SEDE (Fahmy, Pastore, Briand, Stifter, TOSEM 2023) describes a root-cause cluster by ranges of
simulator parameters, e.g. ``fog > 0.62 and brightness <= 0.4``. When the inputs carry
metadata (simulator parameters, capture conditions), the same rules can be learned without a
simulator search: for each cluster, a classifier separates its members from the other
error-inducing inputs, and each of its positive branches is read as a conjunction of
intervals.

Two learners:

``tree``
    A bounded-depth CART decision tree (scikit-learn, ``class_weight="balanced"``); every leaf
    that predicts the cluster gives one rule (the intervals along its path, merged per
    parameter).
``ripper``
    RIPPER (Cohen 1995) via ``wittgenstein``; every rule of its rule set, with its bins read
    as intervals.

Each rule carries its precision (members among the inputs it covers), recall (share of the
cluster's members it covers) and support (members covered), measured on the inputs it was
learned from. :func:`cluster_rules` keeps the best rules of every cluster (highest F1 first).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dnnsafety.exceptions import ConfigError, InvalidInputError

__all__ = [
    "RULE_METHODS",
    "Condition",
    "Rule",
    "cluster_rules",
    "rules_for",
]

RULE_METHODS = ("tree", "ripper", "best")
"""``best``: both learners, the better best rule per cluster (by F1)."""


@dataclass(frozen=True)
class Condition:
    """``low < parameter <= high`` (``None``: unbounded on that side)."""

    parameter: str
    low: float | None = None
    high: float | None = None

    def holds(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: the condition on ``values`` (NaN never satisfies a bound)."""
        ok = np.ones(len(values), dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.low is not None:
                ok &= values > self.low
            if self.high is not None:
                ok &= values <= self.high
        return ok

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:.3g} < {self.parameter} <= {self.high:.3g}"
        if self.low is not None:
            return f"{self.parameter} > {self.low:.3g}"
        if self.high is not None:
            return f"{self.parameter} <= {self.high:.3g}"
        return f"any {self.parameter}"

    def to_dict(self) -> dict[str, Any]:
        """``{"parameter", "low", "high"}`` (``None`` for an open side)."""
        return {"parameter": self.parameter, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Rule:
    """A conjunction of intervals, with how well it describes one cluster.

    Attributes
    ----------
    conditions
        The intervals, one per parameter.
    precision
        Members of the cluster among the inputs the rule covers.
    recall
        Share of the cluster's members the rule covers.
    support
        Members covered (``recall * cluster size``).
    covered
        Inputs covered (members or not).
    method
        The learner: ``"tree"`` or ``"ripper"``.
    """

    conditions: tuple[Condition, ...]
    precision: float
    recall: float
    support: int
    covered: int
    method: str = "tree"

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        total = self.precision + self.recall
        return 0.0 if total <= 0 else 2 * self.precision * self.recall / total

    def text(self) -> str:
        """``fog > 0.62 and brightness <= 0.4``."""
        return " and ".join(str(c) for c in self.conditions) or "always"

    def __str__(self) -> str:
        return (
            f"{self.text()}: precision {self.precision:.2f}, recall {self.recall:.2f} "
            f"(support {self.support})"
        )

    def holds(self, meta: pd.DataFrame) -> np.ndarray:
        """``(N,)`` bool: which rows of ``meta`` the rule covers."""
        ok = np.ones(len(meta), dtype=bool)
        for cond in self.conditions:
            ok &= cond.holds(meta[cond.parameter].to_numpy(dtype=np.float64))
        return ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``text``, ``conditions``, ``precision``, ``recall``, ``f1``, ``support``,
        ``covered``, ``method``."""
        return {
            "text": self.text(),
            "conditions": [c.to_dict() for c in self.conditions],
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "covered": self.covered,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Inverse of :meth:`to_dict` (as stored in ``clusters.json``)."""
        conds = tuple(
            Condition(str(c["parameter"]), _opt(c.get("low")), _opt(c.get("high")))
            for c in data.get("conditions", [])
        )
        return cls(
            conds,
            float(data["precision"]),
            float(data["recall"]),
            int(data["support"]),
            int(data.get("covered", data["support"])),
            str(data.get("method", "tree")),
        )


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _numeric(meta: pd.DataFrame) -> pd.DataFrame:
    """Numeric metadata columns with at least two distinct finite values."""
    out = {}
    for col in meta.columns:
        values = meta[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        v = values.to_numpy(dtype=np.float64)
        if len(np.unique(v[np.isfinite(v)])) >= 2:
            out[str(col)] = v
    return pd.DataFrame(out, index=meta.index)


def _score(
    conditions: Sequence[Condition], meta: pd.DataFrame, target: np.ndarray, method: str
) -> Rule:
    ok = np.ones(len(meta), dtype=bool)
    for cond in conditions:
        ok &= cond.holds(meta[cond.parameter].to_numpy(dtype=np.float64))
    covered = int(ok.sum())
    support = int((ok & target).sum())
    members = int(target.sum())
    return Rule(
        tuple(conditions),
        support / covered if covered else 0.0,
        support / members if members else 0.0,
        support,
        covered,
        method,
    )


def _merge(path: Sequence[tuple[str, float | None, float | None]]) -> tuple[Condition, ...]:
    """Intersect the tests along a tree path into one interval per parameter (path order)."""
    bounds: dict[str, list[float | None]] = {}
    for name, low, high in path:
        lo, hi = bounds.setdefault(name, [None, None])
        if low is not None:
            lo = low if lo is None else max(lo, low)
        if high is not None:
            hi = high if hi is None else min(hi, high)
        bounds[name] = [lo, hi]
    return tuple(Condition(n, lo, hi) for n, (lo, hi) in bounds.items())


def _tree_rules(
    x: pd.DataFrame, target: np.ndarray, max_depth: int, min_leaf: int, seed: int
) -> list[tuple[Condition, ...]]:
    from sklearn.tree import DecisionTreeClassifier

    filled = x.fillna(x.median(numeric_only=True)).to_numpy(dtype=np.float64)
    tree = DecisionTreeClassifier(
        max_depth=max_depth,
        min_samples_leaf=min_leaf,
        class_weight="balanced",
        random_state=seed,
    ).fit(filled, target.astype(int))
    t = tree.tree_
    names = list(x.columns)
    out: list[tuple[Condition, ...]] = []

    def walk(node: int, path: list[tuple[str, float | None, float | None]]) -> None:
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == -1:
            value = t.value[node][0]
            if len(value) == 2 and value[1] > value[0] and path:
                out.append(_merge(path))
            return
        name, threshold = names[int(t.feature[node])], float(t.threshold[node])
        walk(left, [*path, (name, None, threshold)])
        walk(right, [*path, (name, threshold, None)])

    if t.node_count > 1:
        walk(0, [])
    return out


_NUM = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _ripper_bin(name: str, val: object) -> Condition | None:
    """A wittgenstein condition value (``'<0.11'``, ``'>0.91'``, ``'0.2 - 0.3'``) as an
    interval; ``None`` for a value it cannot read (a category)."""
    text = str(val).strip()
    if m := re.fullmatch(rf"<\s*({_NUM})", text):
        return Condition(name, None, float(m.group(1)))
    if m := re.fullmatch(rf">\s*({_NUM})", text):
        return Condition(name, float(m.group(1)), None)
    if m := re.fullmatch(rf"({_NUM})\s*-\s*({_NUM})", text):
        return Condition(name, float(m.group(1)), float(m.group(2)))
    return None


def _ripper_rules(
    x: pd.DataFrame, target: np.ndarray, max_rules: int, seed: int
) -> list[tuple[Condition, ...]]:
    import wittgenstein as lw

    frame = x.copy()
    frame["__member__"] = target.astype(int)
    ripper = lw.RIPPER(random_state=seed, max_rules=max_rules)
    ripper.fit(frame, class_feat="__member__", pos_class=1)
    out = []
    for rule in ripper.ruleset_.rules:
        conds = [_ripper_bin(str(c.feature), c.val) for c in rule.conds]
        if conds and all(c is not None for c in conds):
            out.append(_merge([(c.parameter, c.low, c.high) for c in conds if c is not None]))
    return out


def rules_for(
    meta: pd.DataFrame,
    members: np.ndarray,
    *,
    method: str = "tree",
    max_depth: int = 3,
    max_rules: int = 3,
    min_leaf: float = 0.02,
    random_state: int = 0,
) -> list[Rule]:
    """Rules separating the rows ``members`` of ``meta`` from the other rows, best first.

    Parameters
    ----------
    meta
        ``N x P`` metadata of the inputs (numeric columns are used; others are ignored).
    members
        Row positions (ints) or an ``(N,)`` bool mask of the cluster's members.
    method
        ``"tree"``, ``"ripper"`` or ``"best"`` (both; the rules of the one whose best rule
        has the higher F1).
    max_depth
        Depth of the decision tree (rules have at most this many conditions).
    max_rules
        Rules kept (and RIPPER's cap on its rule set).
    min_leaf
        A tree leaf holds at least this share of the rows (and at least 2 rows).
    random_state
        Seed of both learners.

    Returns
    -------
    list of Rule
        Rules covering at least one member, by F1 then precision, best first; empty when
        there is no numeric metadata or no member.

    Raises
    ------
    ConfigError
        An unknown ``method`` or a bad ``max_depth`` / ``max_rules``.
    InvalidInputError
        ``members`` out of range.
    """
    if method not in RULE_METHODS:
        raise ConfigError(f"Rule method must be one of {', '.join(RULE_METHODS)}. Got {method!r}.")
    for name, value in (("max_depth", max_depth), ("max_rules", max_rules)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"The {name!r} of the rules must be an int >= 1. Got {value!r}.")
    n = len(meta)
    target = np.zeros(n, dtype=bool)
    index = np.asarray(members)
    if index.dtype == bool:
        if len(index) != n:
            raise InvalidInputError(f"members has {len(index)} entries for {n} rows.")
        target = index.copy()
    elif len(index):
        if index.min() < 0 or index.max() >= n:
            raise InvalidInputError(f"members holds rows outside 0..{n - 1}.")
        target[index.astype(np.int64)] = True
    x = _numeric(meta.reset_index(drop=True))
    if x.shape[1] == 0 or not target.any() or target.all():
        return []
    min_samples = max(2, math.ceil(min_leaf * n))
    learned: dict[str, list[Rule]] = {}
    if method in ("tree", "best"):
        paths = _tree_rules(x, target, max_depth, min_samples, random_state)
        learned["tree"] = [_score(p, x, target, "tree") for p in paths]
    if method in ("ripper", "best"):
        paths = _ripper_rules(x, target, max_rules, random_state)
        learned["ripper"] = [_score(p, x, target, "ripper") for p in paths]
    for key in learned:
        learned[key] = sorted(
            (r for r in learned[key] if r.support > 0), key=lambda r: (-r.f1, -r.precision)
        )[:max_rules]
    best = max(learned.values(), key=lambda rules: rules[0].f1 if rules else -1.0)
    return best


def cluster_rules(meta: pd.DataFrame, labels: np.ndarray, **kwargs: Any) -> dict[int, list[Rule]]:
    """:func:`rules_for` for every cluster id ``>= 0`` of ``labels``: members of the cluster
    against all other rows (noise included).

    Parameters
    ----------
    meta
        ``N x P`` metadata, one row per clustered input.
    labels
        ``(N,)`` cluster id per row (``-1``: noise).
    **kwargs
        Passed to :func:`rules_for`.
    """
    labels = np.asarray(labels)
    if len(labels) != len(meta):
        raise InvalidInputError(f"{len(labels)} cluster labels for {len(meta)} metadata rows.")
    return {int(c): rules_for(meta, labels == c, **kwargs) for c in np.unique(labels[labels >= 0])}
