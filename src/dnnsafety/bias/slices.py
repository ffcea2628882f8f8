"""Groups from metadata: slice finding over the ``meta.*`` columns with SliceLine.

SliceLine (Sagadeeva & Boehm, SIGMOD 2021; the ``sliceline`` package) enumerates conjunctions
of predicates ``column = value`` over categorical data and returns the top *slices* by a score
that trades the slice's average error (weight ``alpha``) against its size, among slices with
at least ``min_sup`` members. Its top slices tend to repeat one group with idle extra
predicates, so the top-K here are found by sequential covering: the best slice, then the best
on the inputs outside it, and so on. Metadata is mostly numeric (simulator parameters, sensor
readings), so every numeric column with more than ``n_bins`` distinct values is cut into
quantile bins first; a slice then reads as a rule such as ``brightness in [0.05, 0.21) and fog
in [0.6, 0.93]``. Support and error rate are counted again on the binned table, with a Wilson
interval for the error rate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dnnsafety.bias.stats import wilson_interval
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.types import JSONValue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predicate:
    """One condition of a slice: ``column`` in ``[low, high)`` (``]`` when ``closed``; never
    ``excluded``, the column's most common value when it has a bin of its own) for a binned
    numeric column, or ``column == value`` otherwise."""

    column: str
    low: float | None = None
    high: float | None = None
    closed: bool = False
    value: str | None = None
    excluded: float | None = None

    def describe(self) -> str:
        if self.value is not None:
            return f"{self.column} = {self.value}"
        if self.low == self.high:
            return f"{self.column} = {_fmt(self.low)}"
        end = "]" if self.closed else ")"
        out = f"{self.column} in [{_fmt(self.low)}, {_fmt(self.high)}{end}"
        inside = (
            self.excluded is not None
            and self.low is not None
            and self.high is not None
            and self.low <= self.excluded <= self.high
        )
        if inside:
            out += f", ≠ {_fmt(self.excluded)}"
        return out

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"column": self.column}
        if self.value is not None:
            out["value"] = self.value
        else:
            out.update(low=self.low, high=self.high, closed=self.closed)
            if self.excluded is not None:
                out["excluded"] = self.excluded
        return out


@dataclass(frozen=True)
class Slice:
    """A conjunction of predicates with its support and error rate."""

    predicates: tuple[Predicate, ...]
    support: int
    n_errors: int
    error_rate: float
    ci_low: float
    ci_high: float
    score: float

    @property
    def rule(self) -> str:
        """The slice as a readable rule (predicates joined by ``and``)."""
        return " and ".join(p.describe() for p in self.predicates)

    def describe(self) -> str:
        """``rule: error 0.71, support 84``."""
        return f"{self.rule}: error {self.error_rate:.2f}, support {self.support}"

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "rule": self.rule,
            "predicates": [p.to_json() for p in self.predicates],
            "support": self.support,
            "n_errors": self.n_errors,
            "error_rate": self.error_rate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "score": self.score,
        }


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


@dataclass(frozen=True)
class _Binned:
    codes: pd.DataFrame  # one string column per metadata column: the bin or value label
    predicates: dict[tuple[str, str], Predicate]  # (column, label) -> predicate


def bin_metadata(meta: pd.DataFrame, n_bins: int = 5) -> _Binned:
    """Quantile-bin the numeric columns with more than ``n_bins`` distinct values; keep the
    others as categories; drop constant and all-missing columns."""
    codes: dict[str, np.ndarray] = {}
    preds: dict[tuple[str, str], Predicate] = {}
    for col in meta.columns:
        values = meta[col]
        present = values.dropna()
        if present.nunique() < 2:
            continue
        if (
            pd.api.types.is_numeric_dtype(values)
            and not pd.api.types.is_bool_dtype(values)
            and (present.nunique() > n_bins)
        ):
            col_codes = _bin_numeric(str(col), values.to_numpy(dtype=np.float64), n_bins, preds)
        else:
            col_codes = values.astype(str).to_numpy(dtype=object)
            col_codes[values.isna().to_numpy()] = "missing"
            for v in np.unique(col_codes):
                preds[(str(col), str(v))] = Predicate(str(col), value=str(v))
        preds[(str(col), "missing")] = Predicate(str(col), value="missing")
        codes[str(col)] = col_codes
    return _Binned(pd.DataFrame(codes, index=meta.index), preds)


def _bin_numeric(
    col: str, x: np.ndarray, n_bins: int, preds: dict[tuple[str, str], Predicate]
) -> np.ndarray:
    """Bin codes of one numeric column: a value holding more than ``1 / n_bins`` of the rows
    (``occlusion = 0``: no occluder) is its own bin, the rest is cut at its quantiles into
    bins of about ``1 / n_bins`` of the rows each (fewer bins when the rest is small: tiny bins
    lose against SliceLine's size term)."""
    codes = np.full(len(x), "missing", dtype=object)
    finite = ~np.isnan(x)
    values, counts = np.unique(x[finite], return_counts=True)
    rest = finite.copy()
    mode: float | None = None
    if len(values) and counts.max() > finite.sum() / n_bins:
        mode = float(values[counts.argmax()])
        codes[finite & (x == mode)] = "mode"
        preds[(col, "mode")] = Predicate(col, mode, mode, True)
        rest &= x != mode
    if not rest.any():
        return codes
    # the rest gets bins of about the size the column's bins would have without the mode
    bins = max(1, min(n_bins, round(rest.sum() * n_bins / max(finite.sum(), 1))))
    edges = np.unique(np.quantile(x[rest], np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    idx = np.clip(np.searchsorted(edges[1:-1], x[rest], side="right"), 0, len(edges) - 2)
    codes[rest] = np.array([f"b{i}" for i in idx], dtype=object)
    for i in range(len(edges) - 1):
        last = i == len(edges) - 2
        preds[(col, f"b{i}")] = Predicate(
            col, float(edges[i]), float(edges[i + 1]), last, excluded=mode
        )
    return codes


def find_slices(
    meta: pd.DataFrame,
    errors: object,
    *,
    k: int = 5,
    max_l: int = 2,
    min_sup: int = 20,
    alpha: float = 0.95,
    n_bins: int = 8,
    max_share: float = 0.5,
    level: float = 0.95,
) -> list[Slice]:
    """The top-``k`` metadata slices where the model errs, by SliceLine.

    Parameters
    ----------
    meta
        ``(N, M)`` metadata of the inputs (test split), one column per parameter.
    errors
        ``(N,)`` bool, True where the model is wrong.
    k
        Slices returned (SliceLine may return more on ties; they are cut to ``k``).
    max_l
        Most predicates per slice.
    min_sup
        Fewest inputs per slice.
    alpha
        SliceLine's weight of the error term against the size term, in ``(0, 1]``.
    n_bins
        Quantile bins per numeric column.
    max_share
        Largest slice, as a share of the inputs: a slice holding most of the data (say
        ``noise = 0``, everything but the noisy images) describes no group. Of SliceLine's 10
        best slices in each round, the best one within this size is kept.
    level
        Confidence level of the Wilson intervals.

    Returns
    -------
    list of Slice
        Best first; empty when there is no metadata or no error.

    Raises
    ------
    InvalidInputError
        If ``errors`` does not have one entry per row of ``meta``.
    ConfigError
        If a parameter is out of range.
    """
    err = np.asarray(errors, dtype=bool).reshape(-1)
    if len(err) != len(meta):
        raise InvalidInputError(f"{len(err)} error flags for {len(meta)} metadata rows.")
    for name, value, low in (("k", k, 1), ("max_l", max_l, 1), ("min_sup", min_sup, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"find_slices: {name} must be an int >= {low}. Got {value!r}.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
        raise ConfigError(f"find_slices: n_bins must be an int >= 2. Got {n_bins!r}.")
    if not 0 < alpha <= 1:
        raise ConfigError(f"find_slices: alpha must be in (0, 1]. Got {alpha!r}.")
    if not 0 < max_share <= 1:
        raise ConfigError(f"find_slices: max_share must be in (0, 1]. Got {max_share!r}.")
    binned = bin_metadata(meta.reset_index(drop=True), n_bins)
    if binned.codes.shape[1] == 0 or not err.any() or len(err) < min_sup:
        return []
    x = binned.codes.to_numpy(dtype=object)
    columns = list(binned.codes.columns)
    out: list[Slice] = []
    remaining = np.ones(len(err), dtype=bool)
    for _ in range(k):
        if remaining.sum() < min_sup or not err[remaining].any():
            break
        found = _best_slice(
            x[remaining], err[remaining], alpha, max_l, min_sup, max_share * len(err)
        )
        if found is None:
            break
        row, score = found
        preds = tuple(
            binned.predicates[(columns[c], str(v))] for c, v in enumerate(row) if v is not None
        )
        member = np.ones(len(err), dtype=bool)
        for c, v in enumerate(row):
            if v is not None:
                member &= x[:, c] == v
        n, e = int(member.sum()), int(err[member].sum())
        ci_lo, ci_hi = wilson_interval(e, n, level)
        out.append(Slice(preds, n, e, e / n, float(ci_lo), float(ci_hi), score))
        remaining &= ~member
    return out


def _best_slice(
    x: np.ndarray, err: np.ndarray, alpha: float, max_l: int, min_sup: int, max_size: float
) -> tuple[np.ndarray, float] | None:
    """SliceLine's best slice of ``x`` with at most ``max_size`` members (its row of values,
    ``None`` = any) and its score."""
    from sliceline.slicefinder import Slicefinder

    finder = Slicefinder(alpha=alpha, k=10, max_l=max_l, min_sup=min_sup, verbose=False)
    try:
        finder.fit(x, err.astype(np.float64))
    except (ValueError, IndexError) as exc:  # sliceline fails when nothing beats the average
        log.info("SliceLine found no slice (%s)", exc)
        return None
    top = np.asarray(finder.top_slices_, dtype=object)
    if top.ndim != 2:
        return None
    stats = list(getattr(finder, "top_slices_statistics_", []) or [])
    for j, row in enumerate(top):
        if all(v is None for v in row):
            continue
        member = np.ones(len(x), dtype=bool)
        for c, v in enumerate(row):
            if v is not None:
                member &= x[:, c] == v
        if member.sum() <= max_size:
            score = float(stats[j].get("slice_score", math.nan)) if j < len(stats) else math.nan
            return row, score
    return None


def slice_members(meta: pd.DataFrame, found: Slice) -> np.ndarray:
    """Boolean mask of the rows of ``meta`` inside the slice ``found`` (bins as found)."""
    mask = np.ones(len(meta), dtype=bool)
    for p in found.predicates:
        values = meta[p.column]
        if p.value is not None:
            if p.value == "missing":
                mask &= values.isna().to_numpy()
            else:
                mask &= values.astype(str).to_numpy() == p.value
            continue
        x = values.to_numpy(dtype=np.float64)
        assert p.low is not None and p.high is not None
        mask &= (x >= p.low) & ((x <= p.high) if p.closed else (x < p.high))
        if p.excluded is not None:
            mask &= x != p.excluded
    return mask


__all__ = ["Predicate", "Slice", "bin_metadata", "find_slices", "slice_members"]
