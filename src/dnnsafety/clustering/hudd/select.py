"""HUDD's choice of the layer whose clusters the analysis uses.

See the package docstring (:mod:`dnnsafety.clustering.hudd`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from typing import Literal

from dnnsafety.clustering.hudd.layer import LayerClustering
from dnnsafety.exceptions import ConfigError, InvalidInputError

logger = logging.getLogger(__name__)


SelectionMode = Literal["compat", "default"]


def select_layer(
    results: Mapping[str, LayerClustering],
    mode: SelectionMode = "default",
    *,
    exclude: Collection[str] = (),
) -> str:
    """Choose the layer whose clusters are used for the analysis.

    Parameters
    ----------
    results
        Clustering per layer name, in layer order.
    mode
        ``"compat"``: HUDD's rule, the lowest WICD of the chosen cut on the *raw* ``D``
        (``indices["wicd"]``). It is not scale-free: layers with small relevance values win.
        ``"default"``: the highest silhouette of the chosen cut on ``D``. Silhouette does not
        change when a layer's distances are scaled, rewards clusters that are both tight and
        apart, and, unlike WICD (which carries a ``1/K`` factor), does not improve just because
        a layer chose more clusters.
    exclude
        Layer names never to select, in addition to layers with ``is_input``.

    Returns
    -------
    str
        The selected layer's name (the mapping key). Ties go to the earlier layer. Layers
        whose cut has fewer than 2 clusters (identical inputs, ``N < 3``) are considered only
        when no other layer is left.

    Raises
    ------
    InvalidInputError
        If no layer is left to choose from.
    ConfigError
        If ``mode`` is unknown.
    """
    if mode not in ("compat", "default"):
        raise ConfigError(f"The 'mode' parameter must be 'compat' or 'default'. Got {mode!r}.")
    candidates = [name for name, res in results.items() if not res.is_input and name not in exclude]
    if not candidates:
        raise InvalidInputError(
            "No layer to select from: every layer is the input layer or excluded. Cluster at "
            "least one hidden layer."
        )
    proper = [name for name in candidates if results[name].k >= 2]
    pool = proper or candidates

    def score(name: str) -> float:
        idx = results[name].indices
        value = idx.get("wicd" if mode == "compat" else "silhouette", math.nan)
        if not math.isfinite(value):
            return math.inf
        return value if mode == "compat" else -value

    best = min(pool, key=score)  # min() keeps the first of equal scores
    logger.info(
        "selected layer %r (%s of %d candidate layers) by the %s of its clusters",
        best,
        _ordinal(pool.index(best) + 1),
        len(pool),
        "lowest WICD" if mode == "compat" else "highest silhouette",
    )
    return best


def _ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ..., ``11th``, ``12th``, ``13th``, ``21st``."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
