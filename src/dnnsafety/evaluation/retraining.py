"""Summaries of retraining runs: means with confidence intervals, and strategies compared.

A run is one fine-tuned model's test scores (``overall``, ``rare``, ``worst_scenario`` (the
worst-group accuracy over ground-truth scenarios), ``mean_scenario``, ``per_scenario``,
``per_cluster``, ``improved``, ``worsened``), as ``comparison.json`` stores them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dnnsafety.evaluation.stats import mann_whitney, mean_ci, vargha_delaney_a12


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and confidence interval of every score over ``runs`` (``None`` when a run lacks it)."""

    def ci(values: list[float | None]) -> dict[str, float | None]:
        if any(v is None or not math.isfinite(v) for v in values):
            return {"mean": None, "low": None, "high": None}
        mean, low, high = mean_ci(np.asarray(values, dtype=float))
        return {"mean": mean, "low": low, "high": high}

    keys_s = sorted({k for r in runs for k in r["per_scenario"]})
    keys_c = sorted({k for r in runs for k in r["per_cluster"]}, key=int)
    return {
        "overall": ci([r["overall"] for r in runs]),
        "rare": ci([r["rare"] for r in runs]),
        # runs saved before these figures existed lack them: their summary is None
        "worst_scenario": ci([r.get("worst_scenario") for r in runs]),
        "mean_scenario": ci([r.get("mean_scenario") for r in runs]),
        "per_scenario": {k: ci([r["per_scenario"][k] for r in runs]) for k in keys_s},
        "per_cluster": {k: ci([r["per_cluster"][k] for r in runs]) for k in keys_c},
        "improved": ci([r["improved"] for r in runs]),
        "worsened": ci([r["worsened"] for r in runs]),
        # only comparisons that measure robust accuracy have it (``[retrain] robust``)
        "robust_accuracy": ci([r.get("robust_accuracy") for r in runs]),
    }


def add_versus(strategies: dict[str, Any]) -> None:
    """Add ``versus`` to every strategy entry: A12 and Mann-Whitney p against every other, on
    rare-scenario accuracy (on overall accuracy when the test set has no rare one), on
    overall accuracy and, where every run has it, on worst-scenario accuracy (``a12_worst``,
    ``p_value_worst``)."""
    for name, entry in strategies.items():
        entry["versus"] = {}
        for other, o_entry in strategies.items():
            if other == name:
                continue
            # on rare-scenario accuracy; on overall accuracy when the test set has no rare one
            key = (
                "rare"
                if _finite(entry["runs"], "rare") and _finite(o_entry["runs"], "rare")
                else "overall"
            )
            x = [r[key] for r in entry["runs"]]
            y = [r[key] for r in o_entry["runs"]]
            xo = [r["overall"] for r in entry["runs"]]
            yo = [r["overall"] for r in o_entry["runs"]]
            entry["versus"][other] = {
                "metric": key,
                "a12": vargha_delaney_a12(x, y),
                "p_value": mann_whitney(x, y),
                "a12_overall": vargha_delaney_a12(xo, yo),
                "p_value_overall": mann_whitney(xo, yo),
            }
            if _finite(entry["runs"], "worst_scenario") and _finite(
                o_entry["runs"], "worst_scenario"
            ):  # worst-group accuracy: does the strategy fix every root cause?
                xw = [r["worst_scenario"] for r in entry["runs"]]
                yw = [r["worst_scenario"] for r in o_entry["runs"]]
                entry["versus"][other]["a12_worst"] = vargha_delaney_a12(xw, yw)
                entry["versus"][other]["p_value_worst"] = mann_whitney(xw, yw)


def _finite(runs: list[dict[str, Any]], key: str) -> bool:
    return all(r.get(key) is not None and math.isfinite(r[key]) for r in runs)
