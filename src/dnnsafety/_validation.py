"""Validation helpers shared by the stages: one message format for bad arguments.

Two kinds of checks live here:

* checks of *parameters* (constructor arguments of reducers, clusterers, selectors, feature
  sources) raise :class:`~dnnsafety.exceptions.ConfigError` with one message format::

      The 'max_k' parameter of KMeansClusterer must be an int >= 2. Got 1.

* checks of *inputs* (feature matrices, values read from data) raise
  :class:`~dnnsafety.exceptions.InvalidInputError`.

:class:`FittedStateMixin` and :func:`check_is_fitted` guard learned state (names ending in
``_``) of the estimators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dnnsafety.exceptions import ConfigError, InvalidInputError, NotFittedError

__all__ = [
    "FittedStateMixin",
    "check_bool_param",
    "check_budget",
    "check_features",
    "check_float_param",
    "check_int",
    "check_int_param",
    "check_is_fitted",
    "check_n_features",
    "check_random_generator",
    "check_random_state",
    "check_sequence_param",
    "owner_name",
]


# --------------------------------------------------------------------------- inputs


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (``high=None``: no upper bound).

    Raises
    ------
    InvalidInputError
        If ``value`` is not an integer (booleans included) or lies outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}.")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise InvalidInputError(f"{name} must be {bound}, got {v}.")
    return v


def check_features(x: object, *, min_rows: int = 0, what: str = "X") -> np.ndarray:
    """Validate a feature matrix and return it as a C-contiguous float64 array.

    Parameters
    ----------
    x
        Array-like of shape ``(n_samples, n_features)``.
    min_rows
        Smallest accepted number of rows.
    what
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``float64`` copy or view of ``x``.

    Raises
    ------
    InvalidInputError
        If ``x`` is not numeric, not 2-D, has no columns, has fewer than ``min_rows`` rows,
        or holds NaN or infinite values.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{what} must be a numeric array of shape (n_samples, n_features); it could not "
            f"be converted to float ({exc}). Pass a NumPy array of numbers."
        ) from None
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{what} must be 2-D (n_samples, n_features); got shape {arr.shape}. Reshape it, "
            f"e.g. x.reshape(len(x), -1) to flatten each sample or x.reshape(-1, 1) for a "
            f"single feature."
        )
    if arr.shape[1] == 0:
        raise InvalidInputError(
            f"{what} has no features (shape {arr.shape}); pass at least one column."
        )
    if arr.shape[0] < min_rows:
        raise InvalidInputError(
            f"{what} needs at least {min_rows} rows (samples); got {arr.shape[0]}. Pass more "
            f"inputs or skip this step for so few."
        )
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise InvalidInputError(
            f"{what} holds NaN or infinite values in {bad_rows.size} row(s) (first: row "
            f"{int(bad_rows[0])}). Remove or impute those rows first."
        )
    return np.ascontiguousarray(arr)


def check_n_features(est: object, arr: np.ndarray, n_features_in: int) -> None:
    """Raise :class:`InvalidInputError` if ``arr`` has another width than the fitted data."""
    if arr.shape[1] != n_features_in:
        raise InvalidInputError(
            f"X has {arr.shape[1]} features, but {type(est).__name__} was fitted with "
            f"{n_features_in}. Pass features from the same extractor and layer as in fit."
        )


# --------------------------------------------------------------------------- parameters


def owner_name(owner: object) -> str:
    """The name used in parameter messages: a string as is, else the owner's class name."""
    return owner if isinstance(owner, str) else type(owner).__name__


def _bad_param(owner: object, name: str, what: str, value: object) -> ConfigError:
    return ConfigError(
        f"The {name!r} parameter of {owner_name(owner)} must be {what}. Got {value!r}."
    )


def check_int_param(owner: object, name: str, value: object, low: int = 1) -> int:
    """Validate an integer parameter ``>= low`` (``bool`` is rejected); return it as ``int``.

    Raises
    ------
    ConfigError
        ``The 'name' parameter of Owner must be an int >= low. Got value.``
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise _bad_param(owner, name, f"an int >= {low}", value)
    return int(value)


def check_float_param(
    owner: object, name: str, value: object, low: float, high: float, *, open_low: bool = False
) -> float:
    """Validate a real parameter in ``[low, high]`` (``(low, high]`` when ``open_low``)."""
    number = (
        float(value)
        if isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
        else math.nan
    )
    ok = math.isfinite(number) and (number > low if open_low else number >= low) and number <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise _bad_param(owner, name, f"a number in {bracket}{low}, {high}]", value)
    return number


def check_bool_param(owner: object, name: str, value: object) -> bool:
    """Validate a ``bool`` parameter."""
    if not isinstance(value, bool):
        raise _bad_param(owner, name, "a bool", value)
    return value


def check_sequence_param(owner: object, name: str, value: object) -> list[Any]:
    """Validate a non-empty list parameter (not a string) and return it as a list."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise _bad_param(owner, name, "a non-empty list of numbers", value)
    items = list(value)
    if not items:
        raise _bad_param(owner, name, "a non-empty list of numbers", value)
    return items


def check_random_state(owner: object, value: object, name: str = "random_state") -> int:
    """Validate a seed (an ``int >= 0``): the one randomness convention of the estimators."""
    return check_int_param(owner, name, value, 0)


def check_random_generator(
    owner: object, value: object, name: str = "random_state"
) -> np.random.Generator:
    """A NumPy generator for ``value``: an ``int >= 0`` (a seed), ``None`` (fresh entropy) or
    a :class:`numpy.random.Generator` (used as is, so its state advances).

    Raises
    ------
    ConfigError
        ``The 'random_state' parameter of Owner must be an int >= 0, None or a
        numpy.random.Generator. Got value.``
    """
    if value is None or isinstance(value, np.random.Generator):
        return np.random.default_rng(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise _bad_param(owner, name, "an int >= 0, None or a numpy.random.Generator", value)
    return np.random.default_rng(int(value))


def check_budget(budget: object, owner: object, pool_size: int) -> int:
    """Validate a labelling budget against the pool size and return it as an int."""
    value = check_int_param(owner, "budget", budget, 1)
    if value > pool_size:
        raise ConfigError(
            f"The budget of {owner_name(owner)} ({value}) exceeds the pool size ({pool_size}); "
            "lower the budget or enlarge the pool."
        )
    return value


# --------------------------------------------------------------------------- fitted state


class FittedStateMixin:
    """Raises :class:`NotFittedError` when a learned attribute is read before ``fit``.

    Learned attributes are public names ending in ``_`` (``labels_``, ``n_components_``);
    they are declared as class annotations in subclasses and set by ``fit``. Reading one that
    is not set yet raises :class:`~dnnsafety.exceptions.NotFittedError` (a subclass of
    ``AttributeError``, so ``hasattr(est, "labels_")`` is ``False`` before ``fit``).
    """

    if not TYPE_CHECKING:  # hidden from mypy so that attribute typos stay type errors

        def __getattr__(self, name: str) -> Any:
            if name.endswith("_") and not name.startswith("_"):
                raise NotFittedError(
                    f"This {type(self).__name__} is not fitted yet: call fit(X) before "
                    f"reading {name!r}."
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _require_fitted(self, what: str) -> None:
        check_is_fitted(self, what, attribute="n_features_in_")


def check_is_fitted(est: object, what: str = "using it", *, attribute: str | None = None) -> None:
    """Raise :class:`NotFittedError` unless ``est`` holds learned state.

    Parameters
    ----------
    est
        The estimator.
    what
        What the caller was about to do, for the message ("transform(X)").
    attribute
        A learned attribute that ``fit`` always sets; ``None``: any public name ending in
        ``_`` in ``vars(est)``.
    """
    state = vars(est)
    if attribute is not None:
        fitted = attribute in state
    else:
        fitted = any(k.endswith("_") and not k.startswith("_") for k in state)
    if not fitted:
        raise NotFittedError(
            f"This {type(est).__name__} is not fitted yet: call fit(X) before {what}."
        )
