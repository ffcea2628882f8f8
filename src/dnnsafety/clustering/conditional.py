"""Class-conditional clustering (registered as ``conditional``).

The errors are first grouped by a key the analysis passes per error (true class, predicted
class or confusion pair, :func:`~dnnsafety.clustering.guard.error_groups`), then each group is
clustered on its own: an under-represented visual subtype of one class is a cause only within
that class, and among all errors its members can sit inside a larger mass of other errors.
HUDD's heatmaps make the same split implicitly (relevance is taken for the predicted class).
George (Sohoni et al., NeurIPS 2020) clusters each class's features for the same reason.

Within a group the clusterer is :func:`~dnnsafety.clustering.guard.guarded_k_search` (k-means,
``k`` by silhouette, the collapse guard, one cluster when no split reaches
``min_silhouette``) or any registered clusterer named by ``inner``. Groups with fewer than
``min_group`` inputs stay one cluster each. Without groups, all rows form one group.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dnnsafety._validation import check_float_param as check_float
from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.base import CLUSTERERS, DEFAULT_SILHOUETTE_SAMPLE
from dnnsafety.clustering.guard import GROUP_KEYS, GroupedClusterer, guarded_k_search
from dnnsafety.exceptions import ConfigError
from dnnsafety.types import JSONValue


@CLUSTERERS.register(
    "conditional", help="errors grouped per true/predicted class or pair, clustered per group."
)
class ClassConditionalClusterer(GroupedClusterer):
    """Cluster each group of errors on its own (see the module docstring).

    Parameters
    ----------
    by
        The group key the analysis computes: ``"true"``, ``"pred"`` or ``"pair"``
        (``""``: none, one group). Read by the analysis, recorded in ``params_``.
    inner
        ``""``: :func:`~dnnsafety.clustering.guard.guarded_k_search`; else a registered
        clusterer run per group.
    inner_params
        Parameters of ``inner``.
    min_group
        Groups with fewer inputs stay one cluster.
    max_k, max_share, flat_tol, min_silhouette
        Of :func:`~dnnsafety.clustering.guard.guarded_k_search`.
    silhouette_sample_size
        Rows the silhouettes are computed on at most.
    random_state
        Seed of the per-group clusterers.
    """

    _test_params: ClassVar[dict[str, Any]] = {"max_k": 4}

    def __init__(
        self,
        *,
        by: str = "true",
        inner: str = "",
        inner_params: dict[str, Any] | None = None,
        min_group: int = 10,
        max_k: int = 6,
        max_share: float = 0.5,
        flat_tol: float = 0.05,
        min_silhouette: float = 0.25,
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.by = by
        self.inner = inner
        self.inner_params = inner_params
        self.min_group = min_group
        self.max_k = max_k
        self.max_share = max_share
        self.flat_tol = flat_tol
        self.min_silhouette = min_silhouette
        self.silhouette_sample_size = silhouette_sample_size

    def _checked_params(self) -> dict[str, JSONValue]:
        if self.by not in GROUP_KEYS:
            raise ConfigError(
                f"The 'by' parameter of ClassConditionalClusterer must be one of "
                f"{GROUP_KEYS}. Got {self.by!r}."
            )
        if self.inner and (self.inner not in CLUSTERERS or self.inner == "conditional"):
            raise ConfigError(
                f"The 'inner' parameter of ClassConditionalClusterer must be '' or a clusterer "
                f"other than 'conditional'. Got {self.inner!r}."
            )
        return {
            **super()._checked_params(),
            "by": self.by,
            "inner": self.inner,
            "inner_params": dict(self.inner_params or {}),
            "min_group": check_int(self, "min_group", self.min_group, 1),
            "max_k": check_int(self, "max_k", self.max_k, 2),
            "max_share": check_float(self, "max_share", self.max_share, 0.0, 1.0),
            "flat_tol": check_float(self, "flat_tol", self.flat_tol, 0.0, 2.0),
            "min_silhouette": check_float(self, "min_silhouette", self.min_silhouette, -1.0, 1.0),
            "silhouette_sample_size": check_int(
                self, "silhouette_sample_size", self.silhouette_sample_size, 3
            ),
        }

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        keys = self._groups if self._groups is not None else np.zeros(len(arr), dtype=np.int64)
        labels = np.full(len(arr), -1, dtype=np.int64)
        table: list[dict[str, JSONValue]] = []
        next_id = 0
        for key in np.unique(keys):
            rows = np.flatnonzero(keys == key)
            w = weights[rows]
            if w.sum() < int(str(config["min_group"])) or len(rows) < 3:
                sub, info = np.zeros(len(rows), dtype=np.int64), {"k": 1, "reason": "small"}
            elif self.inner:
                est = CLUSTERERS.create(
                    self.inner, dict(self.inner_params or {}), random_state=self.random_state
                )
                first = np.concatenate(([0], np.cumsum(w)[:-1])).astype(np.int64)
                sub = np.asarray(est.fit_predict(np.repeat(arr[rows], w, axis=0)))[first]
                info = {"k": int(sub.max()) + 1, "reason": self.inner}
            else:
                sub, info = guarded_k_search(
                    arr[rows],
                    w,
                    max_k=int(str(config["max_k"])),
                    max_share=float(str(config["max_share"])),
                    flat_tol=float(str(config["flat_tol"])),
                    min_silhouette=float(str(config["min_silhouette"])),
                    sample_size=int(str(config["silhouette_sample_size"])),
                    seed=int(self.random_state),
                )
            labels[rows] = np.where(sub >= 0, sub + next_id, -1)
            next_id += int(sub.max()) + 1 if (sub >= 0).any() else 0
            info.pop("curve", None)
            table.append({"group": str(key), "size": int(w.sum()), **info})
        chosen: dict[str, JSONValue] = {
            "reason": f"clustered within each of {len(table)} groups",
            "groups": len(table),
        }
        return labels, chosen, table


__all__ = ["ClassConditionalClusterer"]
