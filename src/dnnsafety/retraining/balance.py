"""The balanced bag of retraining inputs (METHOD.md §2.10).

Per root-cause cluster (RCC) ``c``, keep its ``U_c`` nearest inputs, then oversample by a
weighted bootstrap (weight of an input proportional to ``1 - d / sum(d)``, ``d`` its distance
to the RCC, the sum taken over the kept inputs) up to ``U_b = max_c U_c``, so that every RCC
contributes equally to the retraining set.

Shape of the bag: for each RCC in increasing id order, its kept inputs once each (nearest
first) followed by ``U_b - kept`` bootstrap draws with replacement, so every labelled input
is used at least once and each RCC contributes exactly ``U_b`` items (``K * U_b`` in all, ids
repeated). ``U_b`` is the largest quota among the RCCs that have inputs. The draws come from
the ``rng`` passed in and are made afresh on every call: HUDD's tool reused one bag for all
retraining runs, which is a bug; call :func:`balanced_bag` once per run with that run's rng.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.selection.selectors import Selection

logger = logging.getLogger(__name__)


def bootstrap_weights(d: np.ndarray) -> np.ndarray:
    """Draw probabilities ``proportional to 1 - d / sum(d)``.

    Parameters
    ----------
    d
        ``(n,)`` non-negative distances, ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` probabilities summing to 1; uniform when ``n == 1`` or ``sum(d) == 0``
        (where the formula gives all zeros or is undefined).
    """
    d = np.asarray(d, dtype=np.float64)
    total = d.sum()
    if len(d) == 1 or total <= 0:
        return np.full(len(d), 1.0 / len(d))
    w = 1.0 - d / total
    return w / w.sum()


def _as_rng(rng: object) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ConfigError(
        f"The 'rng' parameter of balanced_bag must be a numpy Generator or an int >= 0. "
        f"Got {rng!r}."
    )


def balanced_bag(
    distances_per_cluster: Mapping[int, tuple[np.ndarray, np.ndarray]],
    quotas: Mapping[int, int],
    rng: np.random.Generator | int,
) -> np.ndarray:
    """Balanced retraining bag: every RCC contributes ``U_b = max_c U_c`` items.

    Parameters
    ----------
    distances_per_cluster
        ``{cluster id: (ids, d)}``: the pool ids assigned to the cluster and their distances
        to it (two arrays of equal length).
    quotas
        ``{cluster id: U_c}``, ints ``>= 0``. Every cluster of ``distances_per_cluster`` needs
        a quota; a cluster with a quota but no inputs contributes nothing (warning).
    rng
        Generator the bootstrap draws from (an int seeds a new one).

    Returns
    -------
    numpy.ndarray
        Ids of the bag (with repeats), laid out as in the module docstring.

    Raises
    ------
    InvalidInputError
        Mismatched ``ids``/``d`` lengths, negative or non-finite distances, or a cluster
        without a quota.
    ConfigError
        A quota that is not an int >= 0, or a bad ``rng``.
    """
    generator = _as_rng(rng)
    missing = sorted(set(distances_per_cluster) - set(quotas))
    if missing:
        raise InvalidInputError(
            f"Clusters {missing} have inputs but no quota; pass quotas for them."
        )
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in sorted(quotas):
        q = quotas[c]
        if isinstance(q, bool) or not isinstance(q, int | np.integer) or q < 0:
            raise ConfigError(f"The quota of cluster {c} must be an int >= 0. Got {q!r}.")
        ids, d = distances_per_cluster.get(c, (np.zeros(0), np.zeros(0)))
        ids, d = np.asarray(ids), np.asarray(d, dtype=np.float64)
        if ids.shape != d.shape or ids.ndim != 1:
            raise InvalidInputError(
                f"Cluster {c}: ids and distances must be 1-D of equal length; got shapes "
                f"{ids.shape} and {d.shape}."
            )
        if not np.isfinite(d).all() or (d < 0).any():
            raise InvalidInputError(f"Cluster {c}: distances must be finite and >= 0.")
        if q == 0:
            continue
        if len(ids) == 0:
            logger.warning("balanced_bag: cluster %s has a quota of %d but no inputs.", c, q)
            continue
        if len(ids) < q:
            logger.debug(
                "balanced_bag: cluster %s has %d inputs for a quota of %d.", c, len(ids), q
            )
        nearest = np.argsort(d, kind="stable")[:q]
        kept[c] = (ids[nearest], d[nearest])
    if not kept:
        return np.zeros(0, dtype=object)
    u_b = max(int(quotas[c]) for c in kept)
    parts: list[np.ndarray] = []
    for ids, d in kept.values():
        draws = generator.choice(
            len(ids), size=u_b - len(ids), replace=True, p=bootstrap_weights(d)
        )
        parts += [ids, ids[draws]]
    return np.concatenate(parts)


def bag_for(
    selection: Selection, rng: np.random.Generator | int, balance: bool = True
) -> np.ndarray:
    """The retraining bag of a selection.

    Parameters
    ----------
    selection
        Output of a selector.
    rng
        Generator for the bootstrap draws (re-draw per retraining run).
    balance
        With ``True`` and a selection that assigns clusters (``closest``,
        ``closest-contrast``): the balanced bag of
        :func:`balanced_bag`, each cluster's quota being the number of inputs assigned to it.
        Otherwise the selected ids as they are, each once, in selection order.

    Returns
    -------
    numpy.ndarray
        Bag ids (repeats possible only in a balanced bag).
    """
    if not balance or selection.cluster is None:
        return np.asarray(selection.ids).copy()
    if selection.distance is None:
        raise InvalidInputError(
            "A selection with clusters needs distances to balance; pass Selection(distance=...)."
        )
    cluster = np.asarray(selection.cluster)
    groups: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in np.unique(cluster).tolist():
        mask = cluster == c
        groups[int(c)] = (np.asarray(selection.ids)[mask], np.asarray(selection.distance)[mask])
    quotas = {c: len(ids) for c, (ids, _) in groups.items()}
    return balanced_bag(groups, quotas, rng)
