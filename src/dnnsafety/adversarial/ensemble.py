"""More label-free adversarial detectors (METHOD.md §7): consistency, residuals, layers, fusion.

All follow the detector contract of :mod:`dnnsafety.detection.base`: fitted on clean inputs
only (no adversarial example is ever seen at fit time), calibrated with conformal p-values,
higher = more adversarial, ``requires`` names what they read.

``noise``
    Prediction consistency under random noise (Hu et al., NeurIPS 2019, criterion 1): the mean
    L1 distance between the softmax output on the input and on ``draws`` noisy copies. A clean
    input sits deep inside its class; a minimal adversarial one (CW, DeepFool) sits on the
    decision boundary and its prediction moves under small noise.
``residual``
    Noise-residual statistics of the image itself (the steganalysis view of Liu et al., CVPR
    2019, after Fridrich & Kodovsky's rich models, 2012): statistics of ``x - median3x3(x)``
    and of first-order pixel differences per channel, and the Mahalanobis distance of that
    vector to the clean images'. An L-inf attack adds a dense +-eps pattern that clean images
    lack.
``layers``
    Multi-layer Mahalanobis (Lee et al., NeurIPS 2018) without their adversarially trained
    logistic regression: class-conditional Gaussians with a tied covariance on the channel
    means of every ReLU output; the per-layer scores are turned into conformal p-values on a
    held-out part of the clean training inputs and fused (Fisher).
``fusion``
    Conformal p-value fusion of any registered detectors (Fisher's ``-2 sum log p`` or
    Bonferroni's ``-min p``): each member is fitted on one part of the clean training inputs
    and calibrated on the other.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from dnnsafety._validation import check_float_param, check_int_param
from dnnsafety.adversarial.attacks import frozen_eval
from dnnsafety.adversarial.detectors import _check_model, _softmax, _toy_model, median_filter
from dnnsafety.detection.base import DETECTORS, Detector
from dnnsafety.detection.conformal import conformal_p_values
from dnnsafety.exceptions import ConfigError, InvalidInputError

__all__ = [
    "FusionDetector",
    "MultiLayerMahalanobisDetector",
    "NoiseConsistencyDetector",
    "ResidualDetector",
    "fuse_p_values",
    "residual_statistics",
]


def fuse_p_values(p: np.ndarray, method: str = "fisher") -> np.ndarray:
    """Fused score (higher = more anomalous) of ``(N, K)`` p-values, one column per test.

    ``"fisher"``: ``-2 sum_k log p_k`` (Fisher 1925; chi-square with ``2K`` degrees of freedom
    under independent uniform p-values); ``"bonferroni"``: ``-K min_k p_k``.

    Raises
    ------
    ConfigError
        Unknown ``method``.
    """
    arr = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0)
    if method == "fisher":
        return np.asarray(-2.0 * np.log(arr).sum(axis=1))
    if method == "bonferroni":
        return np.asarray(-arr.shape[1] * arr.min(axis=1))
    raise ConfigError(f"The fusion method must be 'fisher' or 'bonferroni'. Got {method!r}.")


def _split(n: int, fraction: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint fit / calibration rows of ``n`` clean inputs (both non-empty)."""
    order = np.random.default_rng(random_state).permutation(n)
    n_cal = min(max(1, round(fraction * n)), n - 1)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


class _Gaussian:
    """Mean, scale and Ledoit-Wolf precision of standardised clean vectors."""

    def __init__(self, x: np.ndarray) -> None:
        from sklearn.covariance import LedoitWolf

        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0) + 1e-9
        self.precision = LedoitWolf().fit((x - self.mean) / self.scale).precision_

    def distance(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, self.precision, z), 0.0))


# --------------------------------------------------------------------------- noise consistency


class _SpreadModel(nn.Module):
    """Two classes by the pixel standard deviation, boundary at 0.29 (uniform noise's): smooth
    images are confidently class 1, uniform-noise images sit on the boundary (the detector
    contract check's planted data)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gap = 20.0 * (0.29 - x.flatten(1).std(dim=1))
        return torch.stack([torch.zeros_like(gap), gap], dim=1)


@DETECTORS.register(
    "noise", help="prediction consistency under random noise (Hu et al. 2019): softmax L1 shift"
)
class NoiseConsistencyDetector(Detector):
    """Softmax shift under random noise (Hu, Yu, Guo, Chao & Weinberger, NeurIPS 2019).

    The score of an image ``x`` is ``mean_r || f(x) - f(clip(x + sigma * n_r)) ||_1`` over
    ``draws`` fixed Gaussian noise images ``n_r`` (drawn once at fit time from
    ``random_state``, the same for every input, so a score does not depend on the batch),
    ``f`` the model's softmax. Nothing else is learned.

    Parameters
    ----------
    model
        The classifier (``N x C x H x W`` in ``[0, 1]`` -> logits); left unchanged.
    sigma
        Noise standard deviation, pixel units of ``[0, 1]`` (default 0.05, about 13/255).
    draws
        Noisy copies per input.
    batch_size
        Images per forward pass.
    random_state
        Seed of the noise.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images"})
    _test_params: ClassVar[dict[str, Any]] = {"model": _SpreadModel(), "sigma": 0.1, "draws": 4}

    def __init__(
        self, model: nn.Module | None = None, sigma: float = 0.05, draws: int = 8,
        batch_size: int = 256, random_state: int = 0,
    ) -> None:  # fmt: skip
        self.model = model
        self.sigma = sigma
        self.draws = draws
        self.batch_size = batch_size
        self.random_state = random_state

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        _check_model(self, self.model)
        sigma = check_float_param(self, "sigma", self.sigma, 0.0, 1.0, open_low=True)
        draws = check_int_param(self, "draws", self.draws, 1)
        check_int_param(self, "batch_size", self.batch_size, 1)
        rng = np.random.default_rng(self.random_state)
        self.noise_ = (sigma * rng.standard_normal((draws, *x.shape[1:]))).astype(np.float32)

    def _score(self, x: np.ndarray) -> np.ndarray:
        model = _check_model(self, self.model)
        step = int(self.batch_size)
        base = _softmax(model, x, step)
        shift = np.zeros(len(x))
        for noise in self.noise_:
            noisy = np.clip(x + noise[None], 0.0, 1.0)
            shift += np.abs(_softmax(model, noisy, step) - base).sum(axis=1)
        return shift / len(self.noise_)


# --------------------------------------------------------------------------- residuals


def residual_statistics(x: np.ndarray) -> np.ndarray:
    """Noise-residual statistics of images, ``(N, 11 * C)`` float64.

    Per channel, for the median residual ``r = x - median3x3(x)`` and for the horizontal and
    vertical first differences ``d``: mean ``|.|``, standard deviation, the share below
    ``0.5 / 255`` (flat: exactly repeated pixel values, which a dense perturbation breaks) and
    ``log(1 + kurtosis)`` of the residual (``E[r^4] / E[r^2]^2``); plus the mean of the
    smaller half of ``|r|`` (where an L-inf perturbation stands out most).
    """
    arr = np.asarray(x, dtype=np.float64)
    n, c = arr.shape[:2]
    res = arr - median_filter(arr, 3)
    dx = np.diff(arr, axis=3).reshape(n, c, -1)
    dy = np.diff(arr, axis=2).reshape(n, c, -1)
    r = res.reshape(n, c, -1)
    flat = 0.5 / 255
    cols = []
    for d in (r, dx, dy):
        a = np.abs(d)
        cols += [a.mean(2), d.std(2), (a < flat).mean(2)]
    m2 = (r**2).mean(2)
    cols.append(np.log1p((r**4).mean(2) / np.maximum(m2**2, 1e-30)))
    half = max(1, r.shape[2] // 2)
    cols.append(np.sort(np.abs(r), axis=2)[:, :, :half].mean(2))
    return np.concatenate(cols, axis=1)


@DETECTORS.register(
    "residual", help="noise-residual statistics of the image (steganalysis view) + Mahalanobis"
)
class ResidualDetector(Detector):
    """Mahalanobis distance of noise-residual statistics to those of clean images.

    The steganalysis view of adversarial perturbations (Liu, Zhang, Chen et al., "Detection
    based defense against adversarial examples from the steganalysis point of view", CVPR
    2019): a perturbation is a hidden message in the image's high-frequency residual. Here the
    residual features are :func:`residual_statistics` and the detector is one-class (the
    Mahalanobis distance to the clean training images' statistics, Ledoit-Wolf shrunk
    covariance), not their classifier trained on adversarial examples. It reads the image only:
    no model, so it also watches black-box (ONNX) models.

    Attributes
    ----------
    mean_, scale_, precision_
        Mean, standard deviation and inverse shrunk covariance of the clean statistics.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images"})

    def __init__(self) -> None:
        pass

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        g = _Gaussian(residual_statistics(x))
        self.mean_, self.scale_, self.precision_ = g.mean, g.scale, g.precision

    def _score(self, x: np.ndarray) -> np.ndarray:
        z = (residual_statistics(x) - self.mean_) / self.scale_
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, self.precision_, z), 0.0))


# --------------------------------------------------------------------------- multi-layer


def layer_means(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """Channel means of every ``nn.ReLU`` output of ``model`` on images ``x``: one
    ``(N, channels)`` float64 array per ReLU, in forward order (Lee et al. 2018's average
    pooling of each block's output)."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ConfigError(f"{type(model).__name__} has no nn.ReLU module to read features from.")
    store: dict[int, list[np.ndarray]] = {i: [] for i in range(len(relus))}

    def hook(i: int) -> Any:
        def fn(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            t = out.detach().double()
            store[i].append((t.flatten(2).mean(2) if t.ndim > 2 else t).cpu().numpy())

        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(relus)]
    try:
        with frozen_eval(model), torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])))
    finally:
        for h in handles:
            h.remove()
    return [np.concatenate(store[i]) for i in range(len(relus))]


def _tied_gaussian(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.covariance import LedoitWolf

    classes, inverse = np.unique(y, return_inverse=True)
    means = np.stack([x[inverse == k].mean(axis=0) for k in range(len(classes))])
    return means, LedoitWolf().fit(x - means[inverse]).precision_


def _min_mahalanobis(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    best = np.full(len(x), np.inf)
    for mu in means:
        d = x - mu
        best = np.minimum(best, np.einsum("nd,de,ne->n", d, precision, d))
    return np.sqrt(np.maximum(best, 0.0))


@DETECTORS.register(
    "layers", help="multi-layer Mahalanobis (Lee et al. 2018), per-layer p-values fused (Fisher)"
)
class MultiLayerMahalanobisDetector(Detector):
    """Multi-layer Mahalanobis (Lee, Lee, Lee & Shin, NeurIPS 2018), fitted on clean data only.

    Per ReLU layer ``l`` (channel means, :func:`layer_means`): class-conditional means and one
    tied Ledoit-Wolf covariance, score ``M_l(x) = min_c ||z_l - mu_lc||_Sigma_l``. Lee et al.
    weigh the layers with a logistic regression trained on adversarial (or OOD) examples;
    here the weights are replaced by conformal p-values of each ``M_l`` on a held-out share of
    the clean training inputs, fused by :func:`fuse_p_values`.

    Parameters
    ----------
    model
        The classifier (its ``nn.ReLU`` outputs are hooked); left unchanged.
    cal_fraction
        Share of the clean training inputs held out for the per-layer p-values.
    fusion
        ``"fisher"`` or ``"bonferroni"``.
    batch_size
        Images per forward pass.
    random_state
        Seed of the fit / calibration split.

    Attributes
    ----------
    means_, precisions_
        Per layer: ``(classes, channels)`` class means and the tied precision matrix.
    layer_calibration_
        Per layer: the sorted held-out clean scores.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images", "labels"})
    _test_params: ClassVar[dict[str, Any]] = {"model": _toy_model()}

    def __init__(
        self, model: nn.Module | None = None, cal_fraction: float = 0.3, fusion: str = "fisher",
        batch_size: int = 256, random_state: int = 0,
    ) -> None:  # fmt: skip
        self.model = model
        self.cal_fraction = cal_fraction
        self.fusion = fusion
        self.batch_size = batch_size
        self.random_state = random_state

    def layer_scores(self, x: np.ndarray) -> np.ndarray:
        """``(N, layers)`` per-layer Mahalanobis scores of images ``x``."""
        model = _check_model(self, self.model)
        feats = layer_means(model, x, int(self.batch_size))
        pairs = zip(feats, self.means_, self.precisions_, strict=True)
        return np.stack([_min_mahalanobis(f, m, p) for f, m, p in pairs], axis=1)

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        model = _check_model(self, self.model)
        frac = check_float_param(self, "cal_fraction", self.cal_fraction, 0.0, 1.0, open_low=True)
        check_int_param(self, "batch_size", self.batch_size, 1)
        fuse_p_values(np.ones((1, 1)), self.fusion)
        assert y is not None
        fit_rows, cal_rows = _split(len(x), frac, self.random_state)
        feats = layer_means(model, x, int(self.batch_size))
        self.means_, self.precisions_ = [], []
        for f in feats:
            means, precision = _tied_gaussian(f[fit_rows], y[fit_rows])
            self.means_.append(means)
            self.precisions_.append(precision)
        cal = self.layer_scores(x[cal_rows])
        self.layer_calibration_ = [np.sort(cal[:, i]) for i in range(cal.shape[1])]

    def _score(self, x: np.ndarray) -> np.ndarray:
        s = self.layer_scores(x)
        p = np.stack(
            [conformal_p_values(c, s[:, i]) for i, c in enumerate(self.layer_calibration_)],
            axis=1,
        )
        # ties at the smallest p-value are broken by the summed standardised layer scores
        scale = np.array([c.std() + 1e-12 for c in self.layer_calibration_])
        centre = np.array([c.mean() for c in self.layer_calibration_])
        tie = ((s - centre) / scale).sum(axis=1)
        return fuse_p_values(p, str(self.fusion)) + 1e-6 * np.tanh(tie / 100.0)


# --------------------------------------------------------------------------- fusion


@DETECTORS.register(
    "fusion", help="conformal p-value fusion (Fisher / Bonferroni) of registered detectors"
)
class FusionDetector(Detector):
    """Fuse the conformal p-values of several registered detectors into one score.

    Each member (a :data:`~dnnsafety.detection.DETECTORS` name with parameters) is fitted on a
    share ``1 - cal_fraction`` of the clean training images and calibrated on the rest; the
    fused score of an image is :func:`fuse_p_values` of the members' p-values (Fisher: ``-2
    sum log p``; Bonferroni: ``-K min p``). The fused score is calibrated again by
    :meth:`calibrate` like any detector, so its own p-values stay valid.

    Parameters
    ----------
    model
        The classifier, passed to every member that takes a ``model`` parameter; members that
        read features, logits or a head get them from it
        (:func:`dnnsafety.adversarial.evaluate.detector_inputs`).
    members
        ``{name: params}`` of the detectors fused (default: ``noise`` and ``residual``, one
        for minimal perturbations near the decision boundary, one for dense L-inf ones).
    fusion
        ``"fisher"`` or ``"bonferroni"``.
    cal_fraction
        Share of the training images that calibrates the members.
    random_state
        Seed of the split, passed on to the members that take one.

    Attributes
    ----------
    members_
        The fitted, calibrated members, in the order of ``members``.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images", "labels"})
    _test_params: ClassVar[dict[str, Any]] = {
        "model": _toy_model(),
        "members": {"residual": {}, "layers": {}},
    }

    def __init__(
        self, model: nn.Module | None = None, members: dict[str, dict[str, Any]] | None = None,
        fusion: str = "fisher", cal_fraction: float = 0.3, random_state: int = 0,
    ) -> None:  # fmt: skip
        self.model = model
        self.members = members
        self.fusion = fusion
        self.cal_fraction = cal_fraction
        self.random_state = random_state

    def _member_specs(self) -> dict[str, dict[str, Any]]:
        specs = self.members
        if specs is None:
            specs = {"noise": {}, "residual": {}}
        if not isinstance(specs, dict) or not specs:
            raise ConfigError(
                "The 'members' parameter of FusionDetector must be a non-empty {name: params} "
                f"mapping of registered detectors. Got {specs!r}."
            )
        return specs

    def _inputs(self, det: Detector, x: np.ndarray) -> np.ndarray:
        if "images" in det.requires:
            return x
        from dnnsafety.adversarial.evaluate import detector_inputs

        return detector_inputs(det, _check_model(self, self.model), torch.from_numpy(x))

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        from dnnsafety.adversarial.evaluate import _head

        frac = check_float_param(self, "cal_fraction", self.cal_fraction, 0.0, 1.0, open_low=True)
        fuse_p_values(np.ones((1, 1)), self.fusion)
        if len(x) < 4:
            raise InvalidInputError("FusionDetector needs at least 4 clean training images.")
        fit_rows, cal_rows = _split(len(x), frac, self.random_state)
        self.members_: list[Detector] = []
        for name, params in self._member_specs().items():
            det: Detector = DETECTORS.create(
                name, params, model=self.model, random_state=self.random_state
            )
            kwargs: dict[str, Any] = {}
            if "head" in det.requires:
                kwargs["head"] = _head(_check_model(self, self.model))
            if "labels" in det.requires and y is None:
                raise InvalidInputError(f"Member {name!r} of FusionDetector needs labels.")
            labels = y[fit_rows] if "labels" in det.requires and y is not None else None
            det.fit(self._inputs(det, x[fit_rows]), labels, **kwargs)
            det.calibrate(self._inputs(det, x[cal_rows]))
            self.members_.append(det)

    def member_p_values(self, x: np.ndarray) -> np.ndarray:
        """``(N, members)`` conformal p-values of the members on images ``x``."""
        return np.stack([det.p_values(self._inputs(det, x)) for det in self.members_], axis=1)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return fuse_p_values(self.member_p_values(x), str(self.fusion))
