"""The detector contract check (:mod:`dnnsafety.detection.base`), shipped like
scikit-learn's estimator checks: run :func:`check_detector` on your own detector."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from sklearn.base import clone

from dnnsafety.detection.base import REQUIREMENTS, Detector
from dnnsafety.exceptions import InvalidInputError, NotFittedError
from dnnsafety.testing._common import _build, _fail, _raises, check_estimator_contract

__all__ = ["check_detector", "planted_detection_data"]


def planted_detection_data(
    requires: frozenset[str], n_per: int = 20, n_out: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """In-distribution inputs, their labels, far outliers and fit kwargs for ``requires``.

    Features: three classes at ``8 e_k`` in the first three of six dimensions (noise 0.1 in
    the other three); outliers lie along the last three dimensions. Logits: the features'
    first three columns (a clear top class) vs flat logits. Images: smooth 8x8 images vs
    uniform noise. ``head`` maps the features to the logits.

    Returns
    -------
    (x_in, y_in, x_out, fit_kwargs)
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per)
    feats = rng.normal(scale=0.1, size=(len(y), 6))
    feats[np.arange(len(y)), y] += 8.0
    feats[:, :3] += rng.normal(scale=1.0, size=(len(y), 3))
    out = rng.normal(scale=0.1, size=(n_out, 6))
    out[:, 3:] += rng.uniform(10.0, 30.0, size=(n_out, 3)) * np.sign(rng.normal(size=(n_out, 3)))
    weight = np.hstack([np.eye(3), np.zeros((3, 3))])
    kwargs: dict[str, Any] = {"head": (weight, np.zeros(3))} if "head" in requires else {}
    if "images" in requires:
        base = rng.uniform(0.3, 0.5, size=(len(y), 1, 1, 1))
        x_in = (base + rng.normal(scale=0.01, size=(len(y), 1, 8, 8))).astype(np.float32)
        x_out = rng.uniform(0.0, 1.0, size=(n_out, 1, 8, 8)).astype(np.float32)
        return x_in, y, x_out, kwargs
    if "logits" in requires:
        return feats[:, :3], y, rng.normal(scale=0.1, size=(n_out, 3)), kwargs
    return feats, y, out, kwargs


def check_detector(detector: type[Detector] | Detector) -> None:
    """The detector contract on planted data (:func:`planted_detection_data`).

    ``fit`` returns ``self``; ``decision_function`` gives ``(N,)`` finite float64 scores,
    higher on the planted far outliers than on in-distribution inputs (all flagged at
    ``alpha = 0.1``); p-values lie in ``(0, 1]``; ``clone`` works; scoring before ``fit``
    and p-values before ``calibrate`` raise :class:`NotFittedError`; bad input raises
    :class:`InvalidInputError`.

    Raises
    ------
    AssertionError
        Naming the first rule the detector breaks.
    """
    est = _build(detector)
    check_estimator_contract(est)
    requires = getattr(est, "requires", None)
    if not isinstance(requires, frozenset) or not requires <= REQUIREMENTS or not requires:
        raise _fail(est, f"requires must be a non-empty frozenset of {sorted(REQUIREMENTS)}")
    if not requires & {"logits", "features", "images"}:
        raise _fail(est, "requires must name what X is: logits, features or images")
    for method in ("fit", "decision_function", "calibrate", "p_values", "predict"):
        if getattr(type(est), method) is not getattr(Detector, method):
            raise _fail(est, f"must write _fit/_score only; {method} is the base's template")
    x_in, y_in, x_out, kwargs = planted_detection_data(requires)
    y = y_in if "labels" in requires else None
    if not _raises(NotFittedError, lambda: clone(est).decision_function(x_in)):
        raise _fail(est, "decision_function before fit must raise NotFittedError")
    fitted = clone(est)
    before = x_in.copy()
    if fitted.fit(x_in, y, **kwargs) is not fitted:
        raise _fail(est, "fit must return self")
    if not np.array_equal(before, x_in):
        raise _fail(est, "fit must not change its input")
    scores = fitted.decision_function(x_in)
    if scores.dtype != np.float64 or scores.shape != (len(x_in),):
        raise _fail(est, f"decision_function must give ({len(x_in)},) float64 scores")
    if not np.isfinite(scores).all():
        raise _fail(est, "scores of in-distribution inputs must be finite")
    far = fitted.decision_function(x_out)
    if not far.min() > np.median(scores) or not far.mean() > np.quantile(scores, 0.9):
        raise _fail(est, "planted far outliers must score higher than in-distribution inputs")
    if not np.allclose(fitted.decision_function(x_in[:3]), scores[:3], rtol=1e-6, atol=1e-9):
        raise _fail(est, "a row's score must not depend on the other rows of the batch")
    if not _raises(NotFittedError, lambda: fitted.p_values(x_in)):
        raise _fail(est, "p_values before calibrate must raise NotFittedError")
    fitted.calibrate(x_in)
    p = fitted.p_values(np.concatenate([x_in, x_out]))
    if p.shape != (len(x_in) + len(x_out),) or not ((p > 0) & (p <= 1)).all():
        raise _fail(est, "p-values must lie in (0, 1]")
    if not fitted.predict(x_out, alpha=0.1).all():
        raise _fail(est, "far outliers must be flagged at alpha = 0.1")
    if fitted.predict(x_in, alpha=0.1).mean() > 0.1 + 1e-9:
        raise _fail(est, "the calibration inputs themselves must be flagged at most alpha")
    again = clone(est).fit(x_in, y, **kwargs).decision_function(x_in)
    if not np.allclose(again, scores, rtol=1e-5, atol=1e-8):
        raise _fail(est, "fit must be deterministic under fixed parameters")
    bad = x_in.copy()
    bad.flat[1] = np.nan
    wrong = x_in[:, :-1] if x_in.ndim == 2 else x_in[:, :, :-1]
    for case, fn in (
        ("NaN input", functools.partial(clone(est).fit, bad, y, **kwargs)),
        ("a single row", functools.partial(clone(est).fit, x_in[:1], y, **kwargs)),
        ("another width", functools.partial(fitted.decision_function, wrong)),
        ("an empty calibration split", functools.partial(fitted.calibrate, x_in[:0])),
    ):
        if not _raises(InvalidInputError, fn):
            raise _fail(est, f"{case} must raise InvalidInputError")
