"""The clusterer contract of the black-box (SAFE) pipeline (METHOD.md §3) and its registry.

Clusterers group the (optionally reduced) features of the error-inducing inputs into
root-cause clusters. Each lives in its own module (:mod:`.dbscan`, :mod:`.hdbscan`,
:mod:`.kmeans`, :mod:`.ward`) and registers itself in :data:`CLUSTERERS`; importing
:mod:`dnnsafety.clustering.clusterers` imports them all.

Contract (scikit-learn style, :class:`sklearn.base.BaseEstimator`): ``__init__`` stores keyword
arguments (``random_state`` included) and nothing else, so ``get_params``, ``set_params`` and
``sklearn.base.clone`` work; ``fit(X)`` returns ``self``; ``labels_`` (int64; -1 = noise,
clusters ``0..K-1`` by decreasing size, ties by smallest member index), ``n_clusters_``,
``n_noise_``, ``params_`` (the parameters used and ``reason``, how they were chosen;
JSON-serialisable) and ``search_`` (one dict per tried candidate) are set by ``fit``; reading
them earlier raises :class:`~dnnsafety.exceptions.NotFittedError`. ``fit_predict(X)`` returns
``labels_``. Bad parameters raise :class:`~dnnsafety.exceptions.ConfigError` in
:mod:`dnnsafety._validation`'s format when ``fit`` is called.

Identical rows (repeated frames) always get the same label: :meth:`Clusterer.fit` hands
:meth:`Clusterer._fit` the distinct rows with how often each occurs, and maps the labels back
(:mod:`.duplicates`). ``params_["n_distinct"]`` is the number of distinct rows.

Inputs every clusterer handles the same way (``params_["reason"]``): ``N = 0`` gives empty
labels and 0 clusters (``"empty"``); ``N = 1`` one cluster (``"single-input"``); ``N = 2``,
or only two distinct rows, one cluster (``"two-inputs"``: two singletons or two noise points
would be no root cause at all, and nothing distinguishes the cases); all rows identical: one
cluster (``"identical-inputs"``). Non-finite values raise
:class:`~dnnsafety.exceptions.InvalidInputError`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Self

import numpy as np
from sklearn.base import BaseEstimator

from dnnsafety._validation import FittedStateMixin, check_features, check_random_state
from dnnsafety.clustering.duplicates import identical_rows
from dnnsafety.clustering.indices import canonical_labels
from dnnsafety.registry import Registry
from dnnsafety.types import JSONValue

logger = logging.getLogger(__name__)

DEFAULT_SILHOUETTE_SAMPLE = 2000
"""Rows the silhouette-based clusterers score on at most (see :mod:`.silhouette`)."""

REASONS = {
    "empty": "nothing to cluster",
    "single-input": "a single input",
    "two-inputs": "two distinct inputs make one cluster",
    "identical-inputs": "all inputs are identical",
    "silhouette": "parameters chosen by the best silhouette",
    "no-silhouette": "no silhouette defined; the first candidate kept",
    "single-cluster": "no split scored well; the candidate with the least noise kept",
    "all-noise": "every candidate left all inputs as noise",
    "hdbscan": "HDBSCAN's own choice",
    "fixed": "the number of clusters given",
}
"""``params_["reason"]`` in words, for log messages."""


def finalize_labels(labels: np.ndarray) -> np.ndarray:
    """Noise (any negative label) -> -1; clusters renumbered ``0..K-1`` by decreasing size.

    Parameters
    ----------
    labels
        Integer label per input; negative values mean noise.

    Returns
    -------
    numpy.ndarray
        int64 labels; ties in size are ordered by the smallest member index.
    """
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    out = np.full(lab.shape, -1, dtype=np.int64)
    keep = lab >= 0
    if keep.any():
        out[keep] = canonical_labels(lab[keep])
    return out


class Clusterer(FittedStateMixin, BaseEstimator):
    """Base class of the clusterers (template method); subclasses implement :meth:`_fit`.

    :meth:`fit` validates the parameters (:meth:`_checked_params`) and the input, handles the
    trivial inputs and identical rows, calls :meth:`_fit` on the distinct rows, then
    canonicalises the labels and sets the learned attributes. A new clusterer writes
    ``__init__`` (storing its parameters), :meth:`_checked_params` if it has any, and
    :meth:`_fit`.

    Parameters
    ----------
    random_state
        Seed of everything random in the clusterer (``int >= 0``).

    Attributes
    ----------
    labels_
        int64 label per input: -1 = noise, clusters ``0..K-1`` by decreasing size.
    n_clusters_
        Number of clusters ``K`` (noise excluded).
    n_noise_
        Number of inputs labelled -1.
    n_features_in_
        Number of columns seen in ``fit``.
    params_
        Parameters used, plus ``"reason"`` (how they were chosen). JSON-serialisable.
    search_
        One JSON-serialisable dict per candidate tried (empty when nothing was searched).
    """

    #: Registered name (set by :meth:`~dnnsafety.registry.Registry.register`).
    name: str = "base"
    #: Small, fast parameters for the contract checks (:mod:`dnnsafety.testing.checks`).
    _test_params: ClassVar[dict[str, Any]] = {}

    labels_: np.ndarray
    n_clusters_: int
    n_noise_: int
    n_features_in_: int
    params_: dict[str, JSONValue]
    search_: list[dict[str, JSONValue]]

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, x: object) -> Self:
        """Cluster the rows of ``x`` (``n_samples x n_features``) and return ``self``.

        Raises
        ------
        InvalidInputError
            If ``x`` is not a finite 2-D numeric array.
        ConfigError
            If a constructor parameter is invalid.
        """
        check_random_state(self, self.random_state)
        config = self._checked_params()
        arr = check_features(x)
        n = arr.shape[0]
        groups = identical_rows(arr)
        reason = self._trivial_reason(n, groups.n_distinct)
        if reason is not None:
            labels = np.zeros(n, dtype=np.int64)
            params: dict[str, JSONValue] = {**config, "reason": reason}
            search: list[dict[str, JSONValue]] = []
        else:
            distinct, chosen, search = self._fit(arr[groups.first], config, groups.counts)
            labels = groups.expand(distinct)
            params = {**config, **chosen}
        params["n_distinct"] = groups.n_distinct
        self.labels_ = finalize_labels(labels)
        self.n_clusters_ = int(self.labels_.max()) + 1 if n else 0
        self.n_noise_ = int(np.sum(self.labels_ < 0))
        self.n_features_in_ = int(arr.shape[1])
        self.params_ = params
        self.search_ = search
        copies = f" ({groups.n_distinct} distinct)" if groups.has_duplicates else ""
        logger.info(
            "%s: %d inputs%s -> %d clusters, %d noise points (%s).",
            type(self).__name__.removesuffix("Clusterer").lower(),
            n,
            copies,
            self.n_clusters_,
            self.n_noise_,
            REASONS.get(str(params.get("reason")), params.get("reason")),
        )
        return self

    def fit_predict(self, x: object) -> np.ndarray:
        """``fit(x)`` and return a copy of ``labels_``."""
        return self.fit(x).labels_.copy()

    @staticmethod
    def _trivial_reason(n: int, n_distinct: int) -> str | None:
        if n == 0:
            return "empty"
        if n == 1:
            return "single-input"
        if n_distinct == 1:
            return "identical-inputs" if n > 2 else "two-inputs"
        if n_distinct == 2:
            return "two-inputs"
        return None

    def _checked_params(self) -> dict[str, JSONValue]:
        """Validate the constructor parameters; return them as a JSON-serialisable dict."""
        # the key stays "seed": clusters.json files of older runs compare equal
        return {"seed": int(self.random_state)}

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        """Labels (negative = noise), chosen parameters and search table.

        ``arr`` holds the distinct rows (at least 3), ``weights`` how many inputs each stands
        for.
        """
        raise NotImplementedError  # pragma: no cover - abstract


CLUSTERERS: Registry[type[Clusterer]] = Registry("clusterer")
"""Clusterers by name: ``dbscan``, ``hdbscan``, ``kmeans``, ``ward``."""


__all__ = [
    "CLUSTERERS",
    "DEFAULT_SILHOUETTE_SAMPLE",
    "REASONS",
    "Clusterer",
    "finalize_labels",
]
