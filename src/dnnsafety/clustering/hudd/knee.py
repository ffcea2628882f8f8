"""HUDD's choice of ``k``: the 4th-order gradient of the WICD curve and its Kneedle knee.

See the package docstring (:mod:`dnnsafety.clustering.hudd`, "Gradient step 4" and "Kneedle").
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from dnnsafety.exceptions import ConfigError, InvalidInputError

Curve = Literal["concave", "convex"]
Direction = Literal["increasing", "decreasing"]
GradientEnds = Literal["fourth-order", "first-difference"]

MIN_GRADIENT_POINTS = 5


# 5-point weights of f' (times 12 h) for the two first and two last samples, same order (4).
_FIRST = np.array([-25.0, 48.0, -36.0, 16.0, -3.0])  # offsets 0..4
_SECOND = np.array([-3.0, -10.0, 18.0, -6.0, 1.0])  # offsets -1..3
_PENULTIMATE = -_SECOND[::-1]  # offsets -3..1
_LAST = -_FIRST[::-1]  # offsets -4..0


def fourth_order_gradient(
    y: np.ndarray, step: float = 4.0, ends: GradientEnds = "fourth-order"
) -> np.ndarray:
    """Gradient of an evenly sampled curve with 4th-order accurate 5-point stencils.

    Interior points use ``(y[i-2] - 8 y[i-1] + 8 y[i+1] - y[i+2]) / (12 step)``. With
    ``ends="fourth-order"`` (default) the first two and last two points use one-sided /
    off-centre 5-point stencils of the same order, so the result is exact for polynomials of
    degree <= 4 at every point. With ``ends="first-difference"`` they use first-order
    differences, as the released HUDD tool's ``gradientO4`` does: ``(y[1] - y[0]) / step`` and
    ``(y[2] - y[1]) / step`` for the first two points, ``(y[-2] - y[-3]) / step`` and
    ``(y[-1] - y[-2]) / step`` for the last two. On a falling WICD curve these end values are
    steeper than the stencil's, which moves the Kneedle knee one ``k`` to the right on the
    planted benchmark of ``benchmarks/bench_hudd_clustering.py`` (13/16/16 instead of
    12/15/15 clusters at N = 500/1000/2000).

    Parameters
    ----------
    y
        1-D curve with at least 5 samples.
    step
        Spacing between samples (HUDD: 4, see the module docstring).
    ends
        Stencils of the two first and two last points (see above).

    Returns
    -------
    numpy.ndarray
        float64 gradient, same length as ``y``.

    Raises
    ------
    InvalidInputError
        If ``y`` is not 1-D with at least 5 finite values.
    ConfigError
        If ``step`` is not a finite number > 0, or ``ends`` is unknown.
    """
    f = np.asarray(y, dtype=np.float64)
    if f.ndim != 1 or f.shape[0] < MIN_GRADIENT_POINTS or not np.isfinite(f).all():
        raise InvalidInputError(
            f"The 4th-order gradient needs a 1-D curve of at least {MIN_GRADIENT_POINTS} finite "
            f"values; got shape {f.shape}. Use more inputs or a fallback for short curves."
        )
    if not (isinstance(step, int | float) and math.isfinite(step) and step > 0):
        raise ConfigError(f"The 'step' parameter must be a finite number > 0. Got {step!r}.")
    if ends not in ("fourth-order", "first-difference"):
        raise ConfigError(
            f"The 'ends' parameter must be 'fourth-order' or 'first-difference'. Got {ends!r}."
        )
    n = f.shape[0]
    g = np.empty(n)
    g[2:-2] = f[:-4] - 8.0 * f[1:-3] + 8.0 * f[3:-1] - f[4:]
    if ends == "first-difference":  # the released tool: 12 * (first differences)
        g[:2] = 12.0 * (f[1:3] - f[:2])
        g[-2:] = 12.0 * (f[-2:] - f[-3:-1])
        return g / (12.0 * step)
    g[0] = _FIRST @ f[:5]
    g[1] = _SECOND @ f[:5]
    g[-2] = _PENULTIMATE @ f[-5:]
    g[-1] = _LAST @ f[-5:]
    return g / (12.0 * step)


def kneedle(
    x: np.ndarray,
    y: np.ndarray,
    *,
    curve: Curve = "concave",
    direction: Direction = "increasing",
    sensitivity: float = 1.0,
) -> int | None:
    """Knee of a curve with Kneedle (Satopää et al., 2011), without smoothing.

    Parameters
    ----------
    x
        Strictly increasing sample positions (at least 3).
    y
        Curve values.
    curve, direction
        Shape of the curve. The other three shapes are mapped onto "concave, increasing"
        (``1 - f(1 - x)``, ``f(1 - x)``, ``1 - f(x)``) before the search.
    sensitivity
        Kneedle's ``S`` (>= 0): how far the difference curve must drop after a local maximum,
        in units of the mean normalised x step.

    Returns
    -------
    int or None
        Index into ``x`` of the knee, or ``None`` when there is none (flat or straight curve,
        no local maximum of the difference curve, or no drop below the threshold).

    Raises
    ------
    InvalidInputError
        If ``x`` and ``y`` are not 1-D of equal length, not finite, or ``x`` is not strictly
        increasing.
    ConfigError
        If ``curve``, ``direction`` or ``sensitivity`` is invalid.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if (
        xs.ndim != 1
        or xs.shape != ys.shape
        or not (np.isfinite(xs).all() and np.isfinite(ys).all())
    ):
        raise InvalidInputError(
            f"kneedle needs two finite 1-D arrays of equal length; got shapes {xs.shape} and "
            f"{ys.shape}."
        )
    if xs.size >= 2 and not np.all(np.diff(xs) > 0):
        raise InvalidInputError("kneedle needs strictly increasing x values; sort the curve.")
    if curve not in ("concave", "convex"):
        raise ConfigError(f"The 'curve' parameter must be 'concave' or 'convex'. Got {curve!r}.")
    if direction not in ("increasing", "decreasing"):
        raise ConfigError(
            f"The 'direction' parameter must be 'increasing' or 'decreasing'. Got {direction!r}."
        )
    if not (
        isinstance(sensitivity, int | float) and math.isfinite(sensitivity) and sensitivity >= 0
    ):
        raise ConfigError(
            f"The 'sensitivity' parameter must be a finite number >= 0. Got {sensitivity!r}."
        )
    n = xs.size
    if n < 3 or ys.max() == ys.min():
        return None
    xn = (xs - xs[0]) / (xs[-1] - xs[0])
    yn = (ys - ys.min()) / (ys.max() - ys.min())
    flip = (curve == "convex") == (direction == "increasing")  # reverse x for these two shapes
    if flip:
        xn, yn = 1.0 - xn[::-1], yn[::-1]
    if curve == "convex":
        yn = 1.0 - yn
    diff = yn - xn
    maxima = [i for i in range(1, n - 1) if diff[i] > diff[i - 1] and diff[i] >= diff[i + 1]]
    if not maxima:
        return None
    drop = sensitivity * float(np.mean(np.diff(xn)))
    for pos, i in enumerate(maxima):
        stop = maxima[pos + 1] if pos + 1 < len(maxima) else n
        if np.any(diff[i + 1 : stop] < diff[i] - drop):
            return n - 1 - i if flip else i
    return None
