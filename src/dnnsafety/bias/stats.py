"""Statistics of a group's error rate: Wilson intervals, one-sided binomial tests and the
Benjamini-Hochberg correction over many groups.

* :func:`wilson_interval` - score interval of a binomial proportion (Wilson 1927), vectorised.
* :func:`binomial_greater` - one-sided p-value of ``k`` or more errors out of ``n`` when the
  error rate is ``p0``.
* :func:`benjamini_hochberg` - adjusted p-values (q-values) controlling the false discovery
  rate (Benjamini & Hochberg 1995).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from dnnsafety.exceptions import ConfigError, InvalidInputError


def _counts(k: object, n: object) -> tuple[np.ndarray, np.ndarray]:
    kk = np.asarray(k, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    if kk.shape != nn.shape:
        raise InvalidInputError(f"k and n must have the same shape; got {kk.shape} and {nn.shape}.")
    if (kk < 0).any() or (nn < 0).any() or (kk > nn).any():
        raise InvalidInputError("Counts must satisfy 0 <= k <= n.")
    return kk, nn


def wilson_interval(k: object, n: object, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion ``k / n``.

    Parameters
    ----------
    k, n
        Successes (here: errors) and trials, scalars or arrays of one shape, ``0 <= k <= n``.
    level
        Confidence level in ``(0, 1)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(low, high)`` in ``[0, 1]``, shaped like ``k``; ``(0, 1)`` where ``n == 0``.

    Raises
    ------
    ConfigError
        If ``level`` is not in ``(0, 1)``.
    InvalidInputError
        If the counts are negative, of different shapes or ``k > n``.

    References
    ----------
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22 (1927).
    """
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ConfigError(f"The 'level' parameter must be in (0, 1). Got {level!r}.")
    kk, nn = _counts(k, n)
    z = float(stats.norm.ppf(0.5 + level / 2))
    safe = np.where(nn > 0, nn, 1.0)
    p = kk / safe
    denom = 1 + z**2 / safe
    centre = (p + z**2 / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z**2 / (4 * safe**2)) / denom
    low = np.where(nn > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(nn > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return low, high


def binomial_greater(k: object, n: object, p0: float) -> np.ndarray:
    """One-sided binomial test p-value ``P(X >= k)`` for ``X ~ Binomial(n, p0)``.

    Small when a group makes more errors (``k`` of ``n``) than the rate ``p0`` explains.
    ``n == 0`` gives 1.
    """
    if not 0 <= p0 <= 1:
        raise InvalidInputError(f"p0 must be in [0, 1]; got {p0}.")
    kk, nn = _counts(k, n)
    out = stats.binom.sf(kk - 1, nn, p0)
    return np.where(nn > 0, np.clip(out, 0.0, 1.0), 1.0)


def benjamini_hochberg(p_values: object) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); reject where ``q <= alpha`` to keep
    the false discovery rate at ``alpha``.

    Parameters
    ----------
    p_values
        1-D p-values in ``[0, 1]`` (may be empty).

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the same order, monotone in the raw p-values, capped at 1.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if len(p) == 0:
        return p
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InvalidInputError("p-values must be finite and in [0, 1].")
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out
