"""The section of the models kept in ``retrained/<strategy>/``: `dnnsafety retrain` (with the
labels a user filled in) and `dnnsafety mitigate` (a strategy that needs no new labels)."""

from __future__ import annotations

from typing import Any

from dnnsafety.report.format import Cell, accuracy, as_dict, as_list, num, table, text
from dnnsafety.report.load import UNKNOWN_SCENARIO, RunData
from dnnsafety.report.sections import Context, register_section
from dnnsafety.report.sections.retraining import robust_label


def _mean(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return sum(values) / len(values) if values else None


def _count(value: float | None, n_runs: int) -> str:
    """A count of inputs: whole for one run, the mean to one decimal over several."""
    if value is None:
        return "–"
    return num(round(value)) if n_runs == 1 else f"{value:.1f}"


@register_section("retrained", "Retrained models", order=65)
def retrained_section(run: RunData) -> Context | None:
    """One row per ``retrained/<strategy>/result.json``: accuracy before and after (robust
    accuracy too where it was measured), the labels used and the model files written."""
    if not run.retrained:
        return None
    rows = []
    show_rare = False
    robust = {
        k: robust_label(v) for k, v in run.retrained.items() if robust_label(v)
    }  # mitigations trained against an attack
    for strategy, result in sorted(run.retrained.items()):
        runs = [r for r in as_list(result.get("runs")) if isinstance(r, dict)]
        original = as_dict(result.get("original"))
        scenarios = as_dict(original.get("per_scenario"))
        has_truth = any(s != UNKNOWN_SCENARIO for s in scenarios)
        show_rare = show_rare or has_truth
        improved, worsened = _mean(runs, "improved"), _mean(runs, "worsened")
        rows.append(
            [
                text(strategy),
                # a mitigation (`dnnsafety mitigate`) spends no label
                Cell(num(result.get("labelled", 0)), numeric=True),
                Cell(num(len(runs)), numeric=True),
                accuracy(original.get("overall")),
                accuracy(_mean(runs, "overall")),
                accuracy(original.get("rare") if has_truth else None),
                accuracy(_mean(runs, "rare") if has_truth else None),
                Cell(_count(improved, len(runs)), numeric=True),
                Cell(_count(worsened, len(runs)), numeric=True),
                Cell(codes=tuple(str(f) for f in as_list(result.get("model_files")))),
            ]
            + (
                [
                    Cell(robust.get(strategy, "–")),
                    accuracy(original.get("robust_accuracy")),
                    accuracy(_mean(runs, "robust_accuracy")),
                ]
                if robust
                else []
            )
        )
    headers = ["strategy", "labels", "runs", "before", "after", "rare before", "rare after"]
    headers += ["improved", "worsened", "model files"]
    if robust:
        headers += ["robust accuracy under", "robust before", "robust after"]
    if not show_rare:
        headers = [h for h in headers if not h.startswith("rare")]
        rows = [r[:5] + r[7:] for r in rows]
    return {"results": table(headers, rows)}
