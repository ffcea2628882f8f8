"""Unsupervised detectors on any features (or flattened pixels), wrapping PyOD (METHOD.md §6).

PyOD (Zhao et al., JMLR 2019) does the work; these classes add the detector contract, an
optional standardisation of the features and a cap on the training rows for the detectors
whose fit grows faster than linearly. PyOD's contamination-based threshold is not used: the
base class calibrates conformal p-values instead.

``ocsvm``
    One-class SVM, RBF kernel (Schoelkopf et al., 2001).
``iforest``
    Isolation forest (Liu et al., ICDM 2008).
``lof``
    Local outlier factor in novelty mode (Breunig et al., SIGMOD 2000).
``hdbscan``
    HDBSCAN density (Campello et al., 2013): the GLOSH score of a new input (own code on
    scikit-learn's HDBSCAN clusters; outlier = noise or far from its cluster's densest core).

Saving: these detectors keep their (standardised) training rows in ``fit_x_`` and are
refitted from them on load (deterministic under ``random_state``); no pickle is written.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dnnsafety._validation import (
    check_bool_param,
    check_float_param,
    check_int_param,
    check_random_state,
)
from dnnsafety.detection.base import DETECTORS, Detector

__all__ = ["HDBSCANDetector", "IForestDetector", "LOFDetector", "OCSVMDetector", "PyODDetector"]


def _pyod(module: str, name: str) -> Any:
    try:
        mod = __import__(f"pyod.models.{module}", fromlist=[name])
    except ImportError as exc:  # pragma: no cover - pyod is a dependency
        raise ImportError(f"The {name} detector needs PyOD: pip install pyod ({exc}).") from exc
    return getattr(mod, name)


class PyODDetector(Detector):
    """A PyOD model behind the detector contract; subclasses write :meth:`_make`.

    Parameters
    ----------
    standardize
        Scale every feature to zero mean and unit variance (on the training rows) first.
    max_samples
        Fit on at most this many training rows (a random subset; ``None``: all).
    random_state
        Seed of the subset and of the model.

    Attributes
    ----------
    model_
        The fitted PyOD model.
    mean_, scale_
        The standardisation (zeros and ones when off).
    fit_x_
        The (subsampled, standardised) training rows, for saving.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"features"})
    _refit_on_load: ClassVar[bool] = True

    model_: Any
    mean_: np.ndarray
    scale_: np.ndarray
    fit_x_: np.ndarray

    def __init__(
        self, *, standardize: bool = True, max_samples: int | None = 5000, random_state: int = 0
    ) -> None:
        self.standardize = standardize
        self.max_samples = max_samples
        self.random_state = random_state

    def _make(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        seed = check_random_state(self, self.random_state)
        if check_bool_param(self, "standardize", self.standardize):
            mean, scale = x.mean(axis=0), x.std(axis=0)
            scale[scale < 1e-12] = 1.0
        else:
            mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        if self.max_samples is not None:
            cap = check_int_param(self, "max_samples", self.max_samples, 2)
            if len(x) > cap:
                rows = np.random.default_rng(seed).choice(len(x), cap, replace=False)
                x = x[np.sort(rows)]
        self.mean_, self.scale_ = mean, scale
        self.refit((x - mean) / scale)

    def refit(self, fit_x: np.ndarray) -> None:
        """Fit the PyOD model on already standardised rows (also used when loading)."""
        self.fit_x_ = np.ascontiguousarray(fit_x)
        self.model_ = self._make().fit(self.fit_x_)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.decision_function((x - self.mean_) / self.scale_))


@DETECTORS.register("ocsvm", help="one-class SVM, RBF kernel (PyOD)")
class OCSVMDetector(PyODDetector):
    """One-class SVM with an RBF kernel (PyOD's ``OCSVM``); score = minus the SVM margin.

    Parameters
    ----------
    nu
        Upper bound on the fraction of training errors, in ``(0, 1]``.
    gamma
        RBF width; ``"scale"`` = ``1 / (D var(X))``, ``"auto"`` = ``1 / D``, or a number.
    """

    def __init__(
        self,
        *,
        nu: float = 0.1,
        gamma: str | float = "scale",
        standardize: bool = True,
        max_samples: int | None = 5000,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            standardize=standardize, max_samples=max_samples, random_state=random_state
        )
        self.nu = nu
        self.gamma = gamma

    def _make(self) -> Any:
        nu = check_float_param(self, "nu", self.nu, 0.0, 1.0, open_low=True)
        return _pyod("ocsvm", "OCSVM")(nu=nu, gamma=self.gamma)


@DETECTORS.register("iforest", help="isolation forest (PyOD)")
class IForestDetector(PyODDetector):
    """Isolation forest (PyOD's ``IForest``).

    Parameters
    ----------
    n_estimators
        Number of trees.
    """

    _test_params: ClassVar[dict[str, Any]] = {"n_estimators": 50}

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        standardize: bool = False,
        max_samples: int | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            standardize=standardize, max_samples=max_samples, random_state=random_state
        )
        self.n_estimators = n_estimators

    def _make(self) -> Any:
        n = check_int_param(self, "n_estimators", self.n_estimators, 1)
        return _pyod("iforest", "IForest")(n_estimators=n, random_state=int(self.random_state))


@DETECTORS.register("lof", help="local outlier factor, novelty mode (PyOD)")
class LOFDetector(PyODDetector):
    """Local outlier factor in novelty mode (PyOD's ``LOF``).

    Parameters
    ----------
    n_neighbors
        Neighbourhood size (capped below the number of training rows).
    """

    _test_params: ClassVar[dict[str, Any]] = {"n_neighbors": 5}

    def __init__(
        self,
        *,
        n_neighbors: int = 20,
        standardize: bool = True,
        max_samples: int | None = 10000,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            standardize=standardize, max_samples=max_samples, random_state=random_state
        )
        self.n_neighbors = n_neighbors

    def _make(self) -> Any:
        k = check_int_param(self, "n_neighbors", self.n_neighbors, 1)
        k = min(k, len(self.fit_x_) - 1)
        return _pyod("lof", "LOF")(n_neighbors=k, novelty=True)


@DETECTORS.register("hdbscan", help="HDBSCAN density: GLOSH outlier score of new inputs")
class HDBSCANDetector(PyODDetector):
    """HDBSCAN density (Campello et al., 2013; scikit-learn's ``HDBSCAN`` for the clusters).

    The GLOSH score ``1 - lambda(x) / lambda_max(C)`` of a new input: ``lambda(x)`` is one over
    its smallest mutual-reachability distance to its ``min_samples`` nearest training inputs,
    ``C`` the cluster of the nearest one (noise: all training inputs) and ``lambda_max(C)``
    one over the smallest core distance in ``C``. Own code: PyOD's ``HDBSCAN`` interpolates
    the training scores to new inputs, so a far outlier scores no higher than the boundary
    of the training data (tested against this in the contract check).

    Parameters
    ----------
    min_cluster_size
        Smallest cluster HDBSCAN keeps (capped at the number of training rows).
    min_samples
        Neighbours of the core distance (``None``: ``min_cluster_size``).
    """

    _test_params: ClassVar[dict[str, Any]] = {"min_cluster_size": 5}

    core_: np.ndarray
    labels_: np.ndarray
    cluster_core_: np.ndarray

    def __init__(
        self,
        *,
        min_cluster_size: int = 20,
        min_samples: int | None = None,
        standardize: bool = True,
        max_samples: int | None = 10000,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            standardize=standardize, max_samples=max_samples, random_state=random_state
        )
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples

    def refit(self, fit_x: np.ndarray) -> None:
        """Cluster the standardised rows and keep what GLOSH needs (also used on load)."""
        from sklearn.cluster import HDBSCAN
        from sklearn.neighbors import NearestNeighbors

        n = len(fit_x)
        size = min(check_int_param(self, "min_cluster_size", self.min_cluster_size, 2), n)
        k = (
            size
            if self.min_samples is None
            else check_int_param(self, "min_samples", self.min_samples)
        )
        k = min(k, n - 1)
        self.fit_x_ = np.ascontiguousarray(fit_x)
        labels = HDBSCAN(min_cluster_size=size, min_samples=k, copy=True).fit(fit_x).labels_
        self.model_ = NearestNeighbors(n_neighbors=k).fit(self.fit_x_)
        dist, _ = self.model_.kneighbors(n_neighbors=k)  # excludes each point itself
        self.core_ = dist[:, -1]
        self.labels_ = labels
        floor = max(float(self.core_[self.core_ > 0].min(initial=1.0)), 1e-12)
        best = np.full(labels.max() + 2, np.maximum(self.core_.min(), floor))
        for c in range(labels.max() + 1):
            best[c] = max(float(self.core_[labels == c].min()), floor)
        best[-1] = max(float(self.core_.min()), floor)  # noise: the whole training set
        self.cluster_core_ = best

    def _score(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean_) / self.scale_
        dist, idx = self.model_.kneighbors(z)
        core_x = dist[:, -1:]
        reach = np.maximum(np.maximum(dist, core_x), self.core_[idx]).min(axis=1)
        cluster = self.labels_[idx[:, 0]]
        own_core = self.cluster_core_[np.where(cluster >= 0, cluster, -1)]
        return np.asarray(1.0 - own_core / np.maximum(reach, 1e-12))
