"""Conformal p-values and thresholds from calibration scores (METHOD.md §6).

A detector fitted on training data scores a held-out in-distribution calibration split; for a
new input with score ``s`` the conformal p-value is

    p(s) = (1 + #{calibration scores >= s}) / (n + 1),

and flagging ``p <= alpha`` keeps the false-alarm rate on exchangeable in-distribution inputs at
most ``alpha`` (marginally over the calibration draw; Vovk et al. 2005, Bates et al. "Testing
for outliers with conformal p-values", Ann. Statist. 2023). No contamination rate is guessed.
"""

from __future__ import annotations

import math

import numpy as np

from dnnsafety.exceptions import InvalidInputError

__all__ = ["conformal_p_values", "conformal_threshold"]


def _sorted_scores(calibration_scores: object) -> np.ndarray:
    cal = np.asarray(calibration_scores, dtype=np.float64).reshape(-1)
    if cal.size == 0:
        raise InvalidInputError(
            "No calibration scores: calibrate the detector on at least one held-out "
            "in-distribution input (a validation split) first."
        )
    if not np.isfinite(cal).all():
        raise InvalidInputError("Calibration scores hold NaN or infinite values.")
    return np.sort(cal)


def conformal_p_values(calibration_scores: object, scores: object) -> np.ndarray:
    """Conformal p-value of each score against the calibration scores.

    Parameters
    ----------
    calibration_scores
        ``(n,)`` scores of held-out in-distribution inputs (any order), higher = more
        anomalous.
    scores
        ``(N,)`` scores of the inputs to test.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 p-values ``(1 + #{cal >= s}) / (n + 1)``, in ``[1 / (n + 1), 1]``.
        A NaN score gets p = 1 (never flagged); ``+inf`` gets ``1 / (n + 1)``.

    Raises
    ------
    InvalidInputError
        If there are no calibration scores or they are not finite.
    """
    cal = _sorted_scores(calibration_scores)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    at_least = cal.size - np.searchsorted(cal, s, side="left")
    p = (1.0 + at_least) / (cal.size + 1.0)
    p[np.isnan(s)] = 1.0
    return np.asarray(p, dtype=np.float64)


def conformal_threshold(calibration_scores: object, alpha: float) -> float:
    """The score above which an input is flagged at level ``alpha``.

    ``p(s) <= alpha`` holds exactly when ``s > threshold``; ``inf`` when no score can be
    flagged (``alpha < 1 / (n + 1)``: too few calibration inputs for that level).

    Raises
    ------
    InvalidInputError
        If there are no calibration scores or ``alpha`` is not in ``(0, 1)``.
    """
    if not 0.0 < float(alpha) < 1.0:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}.")
    cal = _sorted_scores(calibration_scores)
    n = cal.size
    # p(s) <= alpha  <=>  #{cal >= s} <= k  with k = floor(alpha (n + 1)) - 1
    k = math.floor(float(alpha) * (n + 1) + 1e-12) - 1
    if k < 0:
        return math.inf
    if k >= n:
        return -math.inf
    return float(cal[n - k - 1])
