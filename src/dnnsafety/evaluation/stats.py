"""Statistics for comparing retraining runs: effect size, significance, intervals, flips.

* :func:`vargha_delaney_a12` - probability that a value of ``x`` exceeds one of ``y`` (ties
  count half); 0.5 = no effect.
* :func:`mann_whitney` - two-sided Mann-Whitney U p-value.
* :func:`mean_ci` - mean with a Student-t confidence interval.
* :func:`improved_worsened` - inputs fixed and broken by retraining.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from dnnsafety.exceptions import ConfigError, InvalidInputError


def _sample(values: object, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise InvalidInputError(f"{what} must be a non-empty 1-D sequence; got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what} contains NaN or infinity.")
    return arr


def vargha_delaney_a12(x: object, y: object) -> float:
    """Vargha-Delaney A12: ``P(X > Y) + 0.5 * P(X == Y)`` over all pairs.

    Parameters
    ----------
    x, y
        Non-empty 1-D samples of finite numbers.

    Returns
    -------
    float
        In ``[0, 1]``; 0.5 for identical samples, 1.0 when every ``x`` exceeds every ``y``.
    """
    a = _sample(x, "x")
    b = _sample(y, "y")
    m, n = len(a), len(b)
    ranks = stats.rankdata(np.concatenate([a, b]))
    rank_sum = float(ranks[:m].sum())
    return (rank_sum / m - (m + 1) / 2) / n


def mann_whitney(x: object, y: object) -> float:
    """Two-sided Mann-Whitney U test p-value (:func:`scipy.stats.mannwhitneyu`).

    Returns 1.0 without calling SciPy when all values of both samples are identical (no
    evidence of a difference; SciPy would warn or return NaN).
    """
    a = _sample(x, "x")
    b = _sample(y, "y")
    both = np.concatenate([a, b])
    if np.all(both == both[0]):
        return 1.0
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def mean_ci(values: object, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval.

    Parameters
    ----------
    values
        Non-empty 1-D sample of finite numbers (e.g. accuracies of repeated runs).
    level
        Confidence level in ``(0, 1)``.

    Returns
    -------
    tuple of float
        ``(mean, low, high)``. With a single value the interval is undefined and the bounds
        are NaN (a report should show "n/a" rather than a falsely exact interval). With zero
        spread the bounds equal the mean.
    """
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ConfigError(f"The 'level' parameter of mean_ci must be in (0, 1). Got {level!r}.")
    arr = _sample(values, "values")
    mean = float(arr.mean())
    if len(arr) == 1:
        return mean, math.nan, math.nan
    sem = float(arr.std(ddof=1)) / math.sqrt(len(arr))
    if sem == 0:
        return mean, mean, mean
    half = float(stats.t.ppf((1 + level) / 2, len(arr) - 1)) * sem
    return mean, mean - half, mean + half


def improved_worsened(before_correct: object, after_correct: object) -> tuple[int, int]:
    """Inputs that retraining fixed and broke.

    Parameters
    ----------
    before_correct, after_correct
        Boolean arrays of the same shape: whether each input was classified correctly before
        and after retraining.

    Returns
    -------
    tuple of int
        ``(n_improved, n_worsened)``: wrong before and right after; right before and wrong
        after.
    """
    before = np.asarray(before_correct)
    after = np.asarray(after_correct)
    if before.dtype != np.bool_ or after.dtype != np.bool_:
        raise InvalidInputError(
            f"improved_worsened takes boolean arrays; got {before.dtype} and {after.dtype}. "
            "Pass predictions == labels."
        )
    if before.shape != after.shape:
        raise InvalidInputError(
            f"before_correct and after_correct must have the same shape; got {before.shape} and "
            f"{after.shape}."
        )
    return int((~before & after).sum()), int((before & ~after).sum())
