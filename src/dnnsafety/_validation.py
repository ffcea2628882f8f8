"""Validation helpers shared by the stages: one message format for bad arguments."""

from __future__ import annotations

import numpy as np

from dnnsafety.exceptions import InvalidInputError


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
