"""Detectors on penultimate features (METHOD.md §6): Mahalanobis, relative Mahalanobis,
deep kNN and ViM. Computed in float64 (kNN's similarity search in float32).

``mahalanobis``
    Class-conditional Gaussians with one shared covariance (Lee et al., NeurIPS 2018):
    score ``min_c (z - mu_c)^T Sigma^-1 (z - mu_c)``.
``relative-mahalanobis``
    Minus the class-agnostic Mahalanobis distance (Ren et al., 2021):
    score ``min_c [MD_c(z) - MD_0(z)]``.
``knn``
    Deep kNN (Sun et al., ICML 2022): L2-normalised features, score = distance to the
    ``k``-th nearest training feature.
``vim``
    Virtual-logit matching (Wang et al., CVPR 2022): the norm of the feature's residual
    outside the principal subspace, scaled by ``alpha``, minus the energy of the logits.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp

from dnnsafety._validation import check_int_param
from dnnsafety.detection.base import DETECTORS, Detector, check_head
from dnnsafety.exceptions import InvalidInputError

__all__ = [
    "KNNDetector",
    "MahalanobisDetector",
    "RelativeMahalanobisDetector",
    "ViMDetector",
    "knn_distances",
]

_BLOCK_BYTES = 64 * 2**20
"""Size of the similarity block a kNN query forms at a time."""


def _precision(centred: np.ndarray) -> np.ndarray:
    """Inverse of the covariance ``centred^T centred / N`` with a ridge of ``1e-6`` on the
    unnormalised scatter matrix (pytorch-ood's and Lee et al.'s convention): a feature that
    never varies in training (a dead ReLU unit) gets a large precision, so an input that
    activates it is far."""
    scatter = centred.T @ centred
    scatter[np.diag_indices_from(scatter)] += 1e-6
    try:
        inverse = np.linalg.inv(scatter)
    except np.linalg.LinAlgError:  # pragma: no cover - the ridge makes it invertible
        inverse = np.linalg.pinv(scatter, hermitian=True)
    return np.asarray(inverse * len(centred))


def _class_means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, inverse = np.unique(y, return_inverse=True)
    if len(classes) < 1:  # pragma: no cover - fit checks >= 2 rows
        raise InvalidInputError("No training labels.")
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, inverse, x)
    means /= np.bincount(inverse)[:, None]
    return classes, means


def _squared_mahalanobis(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``(N, K)`` squared distances ``(x - mu_k)^T P (x - mu_k)``."""
    xp = x @ precision
    own = np.einsum("ij,ij->i", xp, x)
    cross = xp @ means.T
    centre = np.einsum("ij,ij->i", means @ precision, means)
    return np.maximum(own[:, None] - 2.0 * cross + centre[None, :], 0.0)


@DETECTORS.register(
    "mahalanobis", help="class-conditional Mahalanobis, shared covariance (Lee et al. 2018)"
)
class MahalanobisDetector(Detector):
    """Minimum Mahalanobis distance to the class means, with one shared covariance.

    ``fit(features, labels)``; the score is the squared distance to the nearest class
    mean (Lee et al., NeurIPS 2018, without input preprocessing or layer ensembles).

    Attributes
    ----------
    classes_
        ``(K,)`` class labels seen in fit.
    means_
        ``(K, D)`` class means.
    precision_
        ``(D, D)`` inverse of the shared (within-class) covariance (ridge 1e-6).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"features", "labels"})

    classes_: np.ndarray
    means_: np.ndarray
    precision_: np.ndarray

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        assert y is not None  # the base checked "labels"
        classes, means = _class_means(x, y)
        index = np.searchsorted(classes, y)
        self.classes_, self.means_ = classes, means
        self.precision_ = _precision(x - means[index])

    def _score(self, x: np.ndarray) -> np.ndarray:
        return _squared_mahalanobis(x, self.means_, self.precision_).min(axis=1)


@DETECTORS.register(
    "relative-mahalanobis", help="Mahalanobis minus the class-agnostic one (Ren et al. 2021)"
)
class RelativeMahalanobisDetector(MahalanobisDetector):
    """Relative Mahalanobis distance ``min_c [MD_c(z) - MD_0(z)]`` (Ren et al., 2021).

    ``MD_0`` is the distance to one Gaussian fitted to all training features.

    Attributes
    ----------
    background_mean_
        ``(D,)`` mean of all training features.
    background_precision_
        ``(D, D)`` inverse of their covariance (ridge 1e-6).
    """

    background_mean_: np.ndarray
    background_precision_: np.ndarray

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        super()._fit(x, y)
        self.background_mean_ = x.mean(axis=0)
        self.background_precision_ = _precision(x - self.background_mean_)

    def _score(self, x: np.ndarray) -> np.ndarray:
        md0 = _squared_mahalanobis(x, self.background_mean_[None, :], self.background_precision_)
        return np.asarray((_squared_mahalanobis(x, self.means_, self.precision_) - md0).min(axis=1))


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12))


def knn_distances(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance from each L2-normalised query to its ``k``-th nearest bank row.

    Both inputs are unit rows; ``||a - b||^2 = 2 - 2 a.b``, computed block by block in float32
    so that no ``N x M`` matrix is formed whole (about 64 MiB at a time).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 distances.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    b = np.ascontiguousarray(bank, dtype=np.float32)
    rows = max(1, _BLOCK_BYTES // (4 * max(len(b), 1)))
    out = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), rows):
        sims = q[start : start + rows] @ b.T
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
        out[start : start + rows] = np.sqrt(np.maximum(2.0 - 2.0 * kth.astype(np.float64), 0.0))
    return out


@DETECTORS.register(
    "knn", help="deep kNN: distance to the k-th nearest normalised training feature"
)
class KNNDetector(Detector):
    """Deep nearest neighbours (Sun et al., ICML 2022).

    Features are L2-normalised; the score is the distance to the ``k``-th nearest normalised
    training feature.

    Parameters
    ----------
    k
        Which neighbour (the paper uses 50 on CIFAR-10 with all 50,000 training inputs; 1000
        on ImageNet). Capped at the number of training inputs.

    Attributes
    ----------
    bank_
        ``(M, D)`` float32 normalised training features.
    k_
        The ``k`` used.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"features"})
    _test_params: ClassVar[dict[str, Any]] = {"k": 3}

    bank_: np.ndarray
    k_: int

    def __init__(self, *, k: int = 50) -> None:
        self.k = k

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        k = check_int_param(self, "k", self.k, 1)
        self.k_ = min(k, len(x))
        self.bank_ = _normalise(x).astype(np.float32)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return knn_distances(_normalise(x), self.bank_, self.k_)


def vim_dim(n_features: int) -> int:
    """ViM's default principal dimension: 1000 for D >= 2048, 512 for D >= 768, else D / 2."""
    if n_features >= 2048:
        return 1000
    if n_features >= 768:
        return 512
    return max(1, n_features // 2)


@DETECTORS.register("vim", help="virtual-logit matching on features + classifier head (Wang 2022)")
class ViMDetector(Detector):
    """ViM (Wang et al., CVPR 2022): residual norm outside the principal subspace vs energy.

    ``fit(features, head=(weight, bias))`` with the classifier's last linear layer. With
    ``u = -pinv(W) b`` the origin, the principal subspace holds the ``dim`` leading
    eigenvectors of the centred features' second moment; the score is
    ``alpha ||P_res (z - u)|| - logsumexp(W z + b)`` with ``alpha`` = mean max logit / mean
    residual norm on the training features.

    Parameters
    ----------
    dim
        Principal dimension ``d``; ``None``: 1000 / 512 / ``D // 2`` by width (the paper's).

    Attributes
    ----------
    weight_, bias_
        The head.
    origin_
        ``(D,)`` the origin ``u``.
    residual_basis_
        ``(D, D - d)`` basis of the residual subspace.
    alpha_
        Scale of the virtual logit.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"features", "head"})

    weight_: np.ndarray
    bias_: np.ndarray
    origin_: np.ndarray
    residual_basis_: np.ndarray
    alpha_: float

    def __init__(self, *, dim: int | None = None) -> None:
        self.dim = dim

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        weight, bias = check_head(fit_params.get("head"), x.shape[1], type(self).__name__)
        n_features = x.shape[1]
        dim = vim_dim(n_features) if self.dim is None else check_int_param(self, "dim", self.dim)
        if dim >= n_features:
            raise InvalidInputError(
                f"ViM's principal dimension ({dim}) must be below the feature width "
                f"({n_features}); lower dim."
            )
        origin = -np.linalg.pinv(weight) @ bias
        centred = x - origin
        _, vecs = np.linalg.eigh(centred.T @ centred / len(x))
        self.weight_, self.bias_, self.origin_ = weight, bias, origin
        self.residual_basis_ = np.ascontiguousarray(vecs[:, : n_features - dim])
        residual = np.linalg.norm(centred @ self.residual_basis_, axis=1)
        max_logit = (x @ weight.T + bias).max(axis=1)
        self.alpha_ = float(max_logit.mean() / max(residual.mean(), 1e-12))

    def _score(self, x: np.ndarray) -> np.ndarray:
        residual = np.linalg.norm((x - self.origin_) @ self.residual_basis_, axis=1)
        energy = logsumexp(x @ self.weight_.T + self.bias_, axis=1)
        return np.asarray(self.alpha_ * residual - energy)
