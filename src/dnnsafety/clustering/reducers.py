"""Dimensionality reduction before black-box (SAFE) clustering (METHOD.md §3).

SAFE clusters backbone features of the error-inducing inputs after an optional reduction:
``none`` (the features as they are), ``pca`` (SAFE) or ``umap`` (the best pipeline of the
2024 study). Every reducer follows the scikit-learn estimator contract:

* ``__init__`` only stores its keyword arguments (all have defaults, ``random_state``
  included); reducers are scikit-learn ``BaseEstimator`` s (``get_params``, ``clone``);
* ``fit(X)`` validates ``X`` (2-D, finite, at least 2 rows) and returns ``self``;
* learned state ends in ``_``; reading it, or calling :meth:`~Reducer.transform`, before
  ``fit`` raises :class:`~dnnsafety.exceptions.NotFittedError`;
* ``transform`` maps *new* rows into the fitted space, so that unlabeled pool inputs can be
  projected next to the error-inducing inputs later (unsafe-set selection);
* ``params_`` holds the parameters actually used (after defaults and clamping), as a
  JSON-serialisable dict;
* identical rows get identical outputs: ``transform`` maps each distinct row once and copies
  the result (:mod:`.duplicates`). PCA is fitted on all rows (a repeated row weighs as often
  as it occurs); UMAP, which takes no weights, is fitted on the distinct rows, each once.

Look reducers up by name in :data:`REDUCERS`::

    reducer = REDUCERS.get("umap")(random_state=3)
    z = reducer.fit_transform(features)
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, ClassVar, Self

import numpy as np
from sklearn.base import BaseEstimator

from dnnsafety._validation import (
    FittedStateMixin,
    check_features,
    check_n_features,
    check_random_state,
)
from dnnsafety._validation import check_float_param as check_float
from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.duplicates import identical_rows
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.registry import Registry
from dnnsafety.types import JSONValue

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- base class


class Reducer(FittedStateMixin, BaseEstimator):
    """Base class of the reducers: ``fit`` / ``transform`` / ``fit_transform``.

    Subclasses implement :meth:`_fit` and :meth:`_transform` on validated float64 arrays; the
    base validates the input and ``random_state`` (template methods). As scikit-learn
    estimators, reducers support ``get_params`` / ``set_params`` and ``sklearn.base.clone``.

    Attributes
    ----------
    n_features_in_
        Number of columns seen in ``fit``.
    n_components_
        Number of output columns.
    params_
        Parameters actually used (JSON-serialisable).
    """

    #: Registered name (set by :meth:`~dnnsafety.registry.Registry.register`).
    name: str = "base"
    #: Small, fast parameters for the contract checks (:mod:`dnnsafety.testing.checks`).
    _test_params: ClassVar[dict[str, Any]] = {}
    #: Fewest rows ``fit`` accepts.
    min_rows: int = 2

    n_features_in_: int
    n_components_: int
    params_: dict[str, JSONValue]

    def __init__(self, *, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, x: object) -> Self:
        """Learn the reduction from ``x`` (``n_samples x n_features``) and return ``self``.

        Raises
        ------
        InvalidInputError
            If ``x`` is not a finite 2-D numeric array with at least :attr:`min_rows` rows.
        ConfigError
            If a constructor parameter is invalid.
        """
        self._fit_checked(check_features(x, min_rows=self.min_rows))
        return self

    def _fit_checked(self, arr: np.ndarray) -> None:
        check_random_state(self, self.random_state)
        self._fit(arr)
        self.n_features_in_ = int(arr.shape[1])

    def transform(self, x: object) -> np.ndarray:
        """Map rows (fitted or new ones) into the reduced space.

        Parameters
        ----------
        x
            ``n_samples x n_features_in_`` array; ``n_samples`` may be 0.

        Returns
        -------
        numpy.ndarray
            ``n_samples x n_components_`` float64 array.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        InvalidInputError
            If ``x`` is malformed or has another number of columns than in ``fit``.
        """
        self._require_fitted("transform(X)")
        arr = check_features(x)
        check_n_features(self, arr, self.n_features_in_)
        if arr.shape[0] == 0:
            return np.zeros((0, self.n_components_))
        groups = identical_rows(arr)
        out = np.asarray(self._transform(arr[groups.first]), dtype=np.float64)
        return groups.expand(out)

    def fit_transform(self, x: object) -> np.ndarray:
        """``fit(x)`` then the reduced rows of ``x`` (the fitted embedding for UMAP)."""
        arr = check_features(x, min_rows=self.min_rows)
        self._fit_checked(arr)
        return self._fitted_output(arr)

    def _fitted_output(self, arr: np.ndarray) -> np.ndarray:
        return self.transform(arr)

    def _fit(self, arr: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _transform(self, arr: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


REDUCERS: Registry[type[Reducer]] = Registry("reducer")
"""Reducers by name: ``none``, ``pca``, ``umap``."""


# --------------------------------------------------------------------------- none


@REDUCERS.register("none", help="No reduction: the features as they are (validated).")
class IdentityReducer(Reducer):
    """No reduction: ``transform`` returns the validated features unchanged (as float64).

    Parameters
    ----------
    random_state
        Unused; accepted so that every reducer takes the same arguments.
    """

    def _fit(self, arr: np.ndarray) -> None:
        self.n_components_ = int(arr.shape[1])
        self.params_ = {"n_components": self.n_components_}

    def _transform(self, arr: np.ndarray) -> np.ndarray:
        return arr.copy()


# --------------------------------------------------------------------------- PCA


@REDUCERS.register("pca", help="PCA keeping 95% of the variance (at most 50 components).")
class PCAReducer(Reducer):
    """Principal component analysis (SAFE's reduction), not whitened.

    Parameters
    ----------
    n_components
        An ``int >= 1``: keep that many components; a ``float`` in ``(0, 1]``: keep the
        fewest components whose explained variance reaches that share (default 0.95). Either
        way at most ``max_components`` and at most ``min(n_samples, n_features)`` (clamped
        with a log message).
    max_components
        Upper bound on the number of components.
    random_state
        Random state of the randomized SVD used on large inputs.

    Attributes
    ----------
    mean_
        Per-feature mean of the fitted data.
    components_
        ``n_components_ x n_features_in_`` principal axes (sign fixed by scikit-learn's
        ``svd_flip``).
    explained_variance_ratio_
        Share of the total variance explained by each kept component.
    """

    mean_: np.ndarray
    components_: np.ndarray
    explained_variance_ratio_: np.ndarray

    def __init__(
        self,
        *,
        n_components: int | float = 0.95,
        max_components: int = 50,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.n_components = n_components
        self.max_components = max_components

    def _fit(self, arr: np.ndarray) -> None:
        from sklearn.decomposition import PCA

        cap = check_int(self, "max_components", self.max_components, 1)
        if isinstance(self.n_components, int | np.integer) and not isinstance(
            self.n_components, bool
        ):
            wanted: int | None = check_int(self, "n_components", self.n_components, 1)
            share = None
        else:
            wanted = None
            share = check_float(self, "n_components", self.n_components, 0.0, 1.0, open_low=True)
        n, d = arr.shape
        limit = min(cap, n, d)
        if wanted is not None and wanted > limit:
            logger.info(
                "PCAReducer: n_components=%d clamped to %d (max_components=%d, data %d x %d).",
                wanted,
                limit,
                cap,
                n,
                d,
            )
        fit_k = limit if wanted is None else min(wanted, limit)
        if not np.any(np.ptp(arr, axis=0) > 0):
            logger.info("PCAReducer: all %d inputs are identical; one all-zero component.", n)
            self.mean_ = arr[0].copy()
            self.components_ = np.zeros((1, d))
            self.explained_variance_ratio_ = np.zeros(1)
            self.n_components_ = 1
            self.params_ = {
                "n_components": 1,
                "variance_share": share,
                "explained_variance": 0.0,
                "max_components": cap,
                "whiten": False,
            }
            return
        pca = PCA(n_components=fit_k, whiten=False, random_state=self.random_state)
        pca.fit(arr)
        ratio = np.nan_to_num(np.asarray(pca.explained_variance_ratio_, dtype=np.float64))
        if share is None:
            k = fit_k
        else:
            reached = np.flatnonzero(np.cumsum(ratio) >= share - 1e-12)
            k = int(reached[0]) + 1 if reached.size else fit_k
            if not reached.size:
                logger.info(
                    "PCAReducer: %d components explain %.3f of the variance (< %.3f); keeping %d.",
                    fit_k,
                    float(ratio.sum()),
                    share,
                    fit_k,
                )
        self.mean_ = np.asarray(pca.mean_, dtype=np.float64)
        self.components_ = np.ascontiguousarray(pca.components_[:k], dtype=np.float64)
        self.explained_variance_ratio_ = ratio[:k]
        self.n_components_ = int(k)
        self.params_ = {
            "n_components": self.n_components_,
            "variance_share": share,
            "explained_variance": float(ratio[:k].sum()),
            "max_components": cap,
            "whiten": False,
        }

    def _transform(self, arr: np.ndarray) -> np.ndarray:
        return (arr - self.mean_) @ self.components_.T


# --------------------------------------------------------------------------- UMAP


@REDUCERS.register("umap", help="UMAP to 10 dimensions tuned for clustering (min_dist=0).")
class UMAPReducer(Reducer):
    """UMAP (umap-learn) with settings meant for clustering, not for plotting.

    ``min_dist=0`` packs neighbours tightly, which helps density-based clustering; 10 output
    dimensions keep more structure than the 2 used for plots. With few rows the parameters
    are clamped (and logged): ``n_neighbors <= n_samples - 1`` and
    ``n_components <= n_samples - 2`` (UMAP's spectral initialisation needs it), so UMAP
    needs at least 3 rows. If all rows are identical, UMAP would invent structure; the
    reducer then maps every input to the origin instead (logged). UMAP takes no weights and
    would place copies of one row at different points: it is fitted on the distinct rows
    (``n_samples`` above counts those; at least 3 unless all rows are identical), and
    copies share their row's point.

    Parameters
    ----------
    n_components
        Output dimensions.
    n_neighbors
        Size of the local neighbourhood (>= 2).
    min_dist
        Smallest distance between embedded points (>= 0).
    metric
        Distance in the input space, any metric umap-learn accepts by name.
    random_state
        UMAP's ``random_state``: makes the result reproducible (and UMAP single-threaded).

    Attributes
    ----------
    umap_
        The fitted ``umap.UMAP`` model (``None`` for identical rows).
    embedding_
        ``n_samples x n_components_`` embedding of the fitted rows.
    """

    min_rows = 3

    umap_: Any
    embedding_: np.ndarray

    def __init__(
        self,
        *,
        n_components: int = 10,
        n_neighbors: int = 15,
        min_dist: float = 0.0,
        metric: str = "euclidean",
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric

    def _fit(self, arr: np.ndarray) -> None:
        n_comp = check_int(self, "n_components", self.n_components, 1)
        n_nb = check_int(self, "n_neighbors", self.n_neighbors, 2)
        min_dist = check_float(self, "min_dist", self.min_dist, 0.0, math.inf)
        if not isinstance(self.metric, str):
            raise ConfigError(
                f"The 'metric' parameter of UMAPReducer must be a metric name such as "
                f"'euclidean'. Got {self.metric!r}."
            )
        groups = identical_rows(arr)
        if groups.n_distinct == 2:
            raise InvalidInputError(
                f"UMAP needs at least 3 distinct rows; these {arr.shape[0]} rows hold only 2. "
                "Use the 'none' or 'pca' reducer for them."
            )
        n = arr.shape[0] if groups.n_distinct == 1 else groups.n_distinct
        eff_nb, eff_comp = min(n_nb, n - 1), min(n_comp, n - 2)
        if (eff_nb, eff_comp) != (n_nb, n_comp):
            logger.info(
                "UMAPReducer: %d distinct inputs only; n_neighbors %d -> %d, n_components %d "
                "-> %d.",
                n,
                n_nb,
                eff_nb,
                n_comp,
                eff_comp,
            )
        self.n_components_ = eff_comp
        self.params_ = {
            "n_components": eff_comp,
            "n_neighbors": eff_nb,
            "min_dist": min_dist,
            "metric": self.metric,
            "random_state": int(self.random_state),
            "degenerate": False,
        }
        if groups.n_distinct == 1:
            logger.warning(
                "UMAPReducer: all %d inputs are identical; embedding them at 0.", arr.shape[0]
            )
            self.umap_ = None
            self.embedding_ = np.zeros((arr.shape[0], eff_comp))
            self.params_["degenerate"] = True
            return
        try:
            import umap
        except ImportError as exc:  # pragma: no cover - umap-learn is a dependency
            raise ImportError(
                "The 'umap' reducer needs umap-learn: pip install umap-learn "
                "(or choose the 'pca' reducer)."
            ) from exc
        model = umap.UMAP(
            n_components=eff_comp,
            n_neighbors=eff_nb,
            min_dist=min_dist,
            metric=self.metric,
            random_state=int(self.random_state),
            n_jobs=1,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            model.fit(arr[groups.first])
        self.umap_ = model
        self.embedding_ = groups.expand(np.asarray(model.embedding_, dtype=np.float64))

    def _transform(self, arr: np.ndarray) -> np.ndarray:
        if self.umap_ is None:
            return np.zeros((arr.shape[0], self.n_components_))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            return np.asarray(self.umap_.transform(arr), dtype=np.float64)

    def _fitted_output(self, arr: np.ndarray) -> np.ndarray:
        return self.embedding_.copy()


__all__ = [
    "REDUCERS",
    "FittedStateMixin",
    "IdentityReducer",
    "PCAReducer",
    "Reducer",
    "UMAPReducer",
    "check_features",
]
