"""The selector contract: what a selector reads, what it returns, and the registry.

A selector chooses, from a large *unlabeled* pool, the inputs to label and add to the
training data (METHOD.md §2 steps 8 and 12). Selectors work on plain arrays only; loading
models, computing features and running the retraining loop happen elsewhere.

* :class:`PoolView` - the pool: sample ids, the model's softmax outputs, the pool's features
  (any row source, e.g. a :class:`numpy.memmap`, read in batches), optional activation traces
  and an optional training :class:`ReferenceSet` (for surprise adequacy).
* :class:`ClusterSpace` - the root-cause clusters of the test errors in the same feature space.
* :class:`Selection` - the chosen ids, the labelling cost and per-input details.
* :data:`SELECTORS` - name -> selector class. Every selector is a scikit-learn
  ``BaseEstimator`` (``get_params``, ``set_params``, ``clone``): ``__init__`` only stores
  keyword parameters; :meth:`Selector.select` validates (budget, ``random_state``, what the
  selector ``requires``) and calls the selector's own :meth:`Selector._select`.

Adding a selector means one class in this folder that writes ``_select``, decorated with
``@SELECTORS.register("name", help="...")`` and imported from ``selection/__init__.py``.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeAlias

import numpy as np
from sklearn.base import BaseEstimator

from dnnsafety import _validation
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.registry import Registry
from dnnsafety.types import FeatureRows

logger = logging.getLogger(__name__)

Oracle = Callable[[np.ndarray], np.ndarray]
"""Labels on demand: ``oracle(ids) -> labels`` (one int label per id, same order)."""

RandomState: TypeAlias = int | np.random.Generator | None
"""What ``random_state`` takes: an int seed (>= 0), ``None`` (fresh entropy) or a generator."""

PROBS_TOLERANCE = 1e-3
"""How far a row of ``probs`` may sum from 1 before it is rejected as not being softmax."""


@dataclass(frozen=True, eq=False)
class ReferenceSet:
    """Activation traces of the training set and their classes (for surprise adequacy).

    Attributes
    ----------
    features
        ``R x D`` activation traces of the training inputs (array or memmap).
    labels
        ``(R,)`` int class of each training input. Kim et al.'s tool used the model's
        predictions on the training set; the true labels work as well.
    """

    features: FeatureRows
    labels: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(
                f"ReferenceSet.labels must be a 1-D int array; got shape {labels.shape} and "
                f"dtype {labels.dtype}."
            )
        if len(self.features) != len(labels):
            raise InvalidInputError(
                f"ReferenceSet has {len(self.features)} feature rows but {len(labels)} labels; "
                "pass one label per training input."
            )
        object.__setattr__(self, "labels", labels)


@dataclass(frozen=True, eq=False)
class PoolView:
    """The unlabeled pool as the selectors see it.

    Attributes
    ----------
    ids
        ``(P,)`` sample ids (strings) of the pool inputs.
    probs
        ``(P, C)`` softmax outputs of the model, or ``None``. Needed by the uncertainty
        selectors, ``mispredicted`` and ``dsa`` (predicted class = argmax).
    features
        Pool features in the analysis feature space (``P`` rows; extra trailing axes are
        flattened), or ``None``. Needed by ``closest`` and ``closest-contrast``. Any
        :class:`FeatureRows`.
    activations
        Activation traces of the analysed model for surprise adequacy, or ``None``; ``dsa``
        falls back on ``features`` when this is ``None``.
    reference
        Training activation traces and classes for ``dsa``, in the same space as
        ``activations`` (or ``features``).
    """

    ids: np.ndarray
    probs: np.ndarray | None = None
    features: FeatureRows | None = None
    activations: FeatureRows | None = None
    reference: ReferenceSet | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1:
            raise InvalidInputError(f"PoolView.ids must be 1-D; got shape {ids.shape}.")
        if len(np.unique(ids)) != len(ids):
            raise InvalidInputError("PoolView.ids contains duplicates; sample ids must be unique.")
        object.__setattr__(self, "ids", ids)
        n = len(ids)
        if self.probs is not None:
            object.__setattr__(self, "probs", _check_probs(self.probs, n))
        for name in ("features", "activations"):
            rows = getattr(self, name)
            if rows is not None and len(rows) != n:
                raise InvalidInputError(
                    f"PoolView.{name} has {len(rows)} rows but there are {n} ids; pass one "
                    "row per pool input, in the order of ids."
                )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class of every pool input (argmax of ``probs``)."""
        if self.probs is None:
            raise InvalidInputError("The pool has no probs; pass PoolView(probs=softmax).")
        return np.argmax(self.probs, axis=1)


def _check_probs(probs: object, n: int) -> np.ndarray:
    arr = np.asarray(probs)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise InvalidInputError(
            f"PoolView.probs must be P x C with P = {n} (one row per id); got shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidInputError(f"PoolView.probs must be floats; got dtype {arr.dtype}.")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise InvalidInputError("PoolView.probs must be finite and non-negative.")
    sums = arr.sum(axis=1, dtype=np.float64)
    if n and np.abs(sums - 1.0).max() > PROBS_TOLERANCE:
        raise InvalidInputError(
            "PoolView.probs rows must sum to 1 (softmax outputs); got row sums between "
            f"{sums.min():.4g} and {sums.max():.4g}. Apply a softmax to logits first."
        )
    return arr


@dataclass(frozen=True, eq=False)
class ClusterSpace:
    """Root-cause clusters of the error-inducing test inputs, in the pool's feature space.

    Attributes
    ----------
    features
        ``M x D`` features of the clustered error-inducing test inputs.
    labels
        ``(M,)`` int cluster id of each; negative ids (``-1``) mark noise and are ignored.
    correct
        Optional ``R x D`` features, in the same space, of inputs the model classifies
        correctly (array or memmap). Only the contrastive ClosestU (``closest-contrast``)
        uses them.
    """

    features: np.ndarray
    labels: np.ndarray
    correct: Any = None

    def __post_init__(self) -> None:
        feats = np.asarray(self.features)
        labels = np.asarray(self.labels)
        if feats.ndim < 2:
            raise InvalidInputError(
                f"ClusterSpace.features must be M x D; got shape {feats.shape}."
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(
                f"ClusterSpace.labels must be a 1-D int array; got shape {labels.shape} and "
                f"dtype {labels.dtype}."
            )
        if len(labels) != len(feats):
            raise InvalidInputError(
                f"ClusterSpace has {len(feats)} feature rows but {len(labels)} labels."
            )
        object.__setattr__(self, "features", feats.reshape(len(feats), -1))
        object.__setattr__(self, "labels", labels)
        if self.correct is not None:
            from dnnsafety.selection._nearest import read_block

            if len(self.correct) == 0:
                raise InvalidInputError(
                    "ClusterSpace.correct must hold features of at least one correctly "
                    "classified input; it is empty."
                )
            first = read_block(self.correct, 0, 1, "ClusterSpace.correct")
            if first.shape[1] != self.features.shape[1]:
                raise InvalidInputError(
                    f"ClusterSpace.correct has {first.shape[1]} values per row but the "
                    f"clustered features have {self.features.shape[1]}; both must come from "
                    "the same feature space (same layer, same extractor)."
                )


@dataclass(frozen=True, eq=False)
class Selection:
    """The inputs a selector chose.

    Attributes
    ----------
    ids
        Chosen pool ids, in selection order.
    cost
        Labels spent (the labelling budget consumed). Equal to ``len(ids)`` except for
        ``mispredicted``, which pays for every input it draws.
    cluster
        ClosestU selections only: the root-cause cluster each chosen input is assigned to.
    distance
        ClosestU selections only: its distance to that cluster (to the nearest member), or
        for ``closest-contrast`` its contrastive score in ``[0, 1]``.
    scores
        Ranking selectors: the score each chosen input was ranked by (higher = chosen first).
    info
        JSON-serialisable details (selector name and parameters, quotas, stop reason...).
    """

    ids: np.ndarray
    cost: int
    cluster: np.ndarray | None = None
    distance: np.ndarray | None = None
    scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class Selector(BaseEstimator, ABC):
    """Base class of the selectors (a template method): subclasses write only :meth:`_select`.

    :meth:`select` validates the pool, the budget, ``random_state`` and what the selector
    ``requires``, then calls :meth:`_select` with the budget as an int and a NumPy generator.
    ``get_params``, ``set_params`` and ``repr`` come from scikit-learn's ``BaseEstimator``.

    ``seeded`` says whether ``random_state`` changes the selection; a selector that ignores
    it gives the same selection for every seed, so callers may draw it once. The
    ``Selection.info`` of a seeded selector records the seed (``None`` for a generator).

    ``requires`` names what the selector reads besides the pool ids; the orchestrator builds
    exactly that, and :meth:`select` checks it is there: ``"probs"`` (``PoolView.probs``),
    ``"space"`` (``PoolView.features`` and the root-cause ``clusters`` in the analysis feature
    space; such a selector takes the quota factor ``f``), ``"correct"``
    (``ClusterSpace.correct``: correctly classified inputs in that space) and
    ``"activations"`` (``PoolView.reference`` and the pool's traces: ``PoolView.activations``,
    or ``PoolView.features`` in the same space).
    """

    #: Registered name (set by :meth:`~dnnsafety.registry.Registry.register`).
    name: ClassVar[str] = "base"
    #: Small, fast parameters for the contract checks (:mod:`dnnsafety.testing.checks`).
    _test_params: ClassVar[dict[str, Any]] = {}
    seeded: ClassVar[bool] = False
    requires: ClassVar[frozenset[str]] = frozenset()

    def select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None = None,
        oracle: Oracle | None = None,
        random_state: RandomState = 0,
        seed: int | None = None,
    ) -> Selection:
        """Choose at most ``budget`` pool inputs to label.

        Parameters
        ----------
        pool
            The unlabeled pool.
        budget
            Labels to spend (an int from 1 to the pool size).
        clusters
            The root-cause clusters, for selectors that require ``"space"``.
        oracle
            Labels on demand, for selectors that label while they select (``mispredicted``).
        random_state
            An int seed (>= 0), ``None`` (fresh entropy) or a :class:`numpy.random.Generator`.
            Ignored by selectors whose ``seeded`` is ``False``.
        seed
            Deprecated alias of ``random_state``; will be removed in the next release.

        Raises
        ------
        ConfigError
            A bad ``budget`` or ``random_state``, or a bad selector parameter.
        InvalidInputError
            The pool or clusters lack what the selector ``requires``.
        """
        if seed is not None:
            warnings.warn(
                "select(seed=...) is deprecated and will be removed in the next release; "
                "pass random_state=... instead.",
                FutureWarning,
                stacklevel=2,
            )
            random_state = seed
        if not isinstance(pool, PoolView):
            raise InvalidInputError(
                f"The {self.name} selector takes the pool as a PoolView; got "
                f"{type(pool).__name__}. Wrap the arrays: PoolView(ids, probs, features=...)."
            )
        if clusters is not None and not isinstance(clusters, ClusterSpace):
            raise InvalidInputError(
                f"The {self.name} selector takes clusters as a ClusterSpace; got "
                f"{type(clusters).__name__}."
            )
        budget = _validation.check_budget(budget, self.name, len(pool))
        rng = _validation.check_random_generator(self.name, random_state)
        self._check_requirements(pool, clusters)
        selection = self._select(pool, budget, clusters=clusters, oracle=oracle, rng=rng)
        if self.seeded:
            used = None if isinstance(random_state, np.random.Generator | None) else random_state
            info = {"selector": self.name, "seed": None if used is None else int(used)}
            selection = replace(selection, info={**info, **selection.info})
        return selection

    @property
    def needs(self) -> frozenset[str]:
        """What this selector reads with its parameters: ``requires``, plus what a parameter
        adds (e.g. ``"correct"`` for a contrastive distance)."""
        return self.requires

    def _check_requirements(self, pool: PoolView, clusters: ClusterSpace | None) -> None:
        """Raise :class:`InvalidInputError` saying how to provide what :attr:`needs` lists."""
        needs = self.needs
        if "probs" in needs:
            need_probs(pool, self.name)
        if "space" in needs:
            if clusters is None:
                raise InvalidInputError(
                    f"The {self.name} selector needs the root-cause clusters: pass "
                    "clusters=ClusterSpace(features, labels) in the pool's feature space."
                )
            if pool.features is None:
                raise InvalidInputError(
                    f"The {self.name} selector needs the pool's features in the analysis "
                    "feature space: pass PoolView(features=...) (an array or memmap, one row "
                    "per id)."
                )
        if "correct" in needs and (clusters is None or clusters.correct is None):
            raise InvalidInputError(
                f"The {self.name} selector needs features of correctly classified inputs: "
                "pass ClusterSpace(features, labels, correct=...) in the same feature space."
            )
        if "activations" in needs:
            if pool.activations is None and pool.features is None:
                raise InvalidInputError(
                    f"The {self.name} selector needs the pool's activation traces: pass "
                    "PoolView(activations=...) (or features=... in the same space as the "
                    "reference)."
                )
            if pool.reference is None:
                raise InvalidInputError(
                    f"The {self.name} selector needs the training set's activation traces and "
                    "classes: pass PoolView(reference=ReferenceSet(train_traces, train_labels))."
                )

    @abstractmethod
    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Choose ``budget`` pool inputs; everything :meth:`select` checks is valid here.

        ``budget`` is an int in ``[1, len(pool)]``; ``rng`` is the generator for
        ``random_state`` (unused by selectors that are not ``seeded``).
        """


SELECTORS: Registry[Callable[..., Selector]] = Registry("selector")
"""Selector classes by name: ``SELECTORS.get("closest")(f=2).select(pool, 500, ...)``."""


def check_budget(budget: object, selector: str, pool_size: int) -> int:
    """Validate a labelling budget against the pool size and return it as an int."""
    return _validation.check_budget(budget, selector, pool_size)


def check_int_param(value: object, param: str, selector: str, minimum: int = 1) -> int:
    """Validate an int parameter ``>= minimum`` (:func:`dnnsafety._validation.check_int_param`)."""
    return _validation.check_int_param(selector, param, value, minimum)


def check_batch_size(value: object, selector: str) -> int | None:
    """``None`` (automatic) or an int >= 1."""
    if value is None:
        return None
    return check_int_param(value, "batch_size", selector)


def need_probs(pool: PoolView, selector: str) -> np.ndarray:
    """The pool's softmax outputs, or an error saying how to provide them."""
    if pool.probs is None:
        raise InvalidInputError(
            f"The {selector} selector needs the model's softmax outputs on the pool; pass "
            "PoolView(probs=...) with one row per pool id."
        )
    return pool.probs


def seed_rng(seed: object, selector: str) -> np.random.Generator:
    """A generator for ``seed`` (an int >= 0, ``None`` or a generator)."""
    return _validation.check_random_generator(selector, seed, name="seed")


def top_by_score(scores: np.ndarray, budget: int) -> np.ndarray:
    """Indices of the ``budget`` highest scores, highest first; ties: lower index first."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:budget]
