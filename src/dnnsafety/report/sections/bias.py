"""The bias section (``dnnsafety bias``): groups by risk with thumbnails, slices as rules."""

from __future__ import annotations

from typing import Any

from dnnsafety.report.format import as_dict, as_float, as_int, as_list, num, pct
from dnnsafety.report.load import RunData
from dnnsafety.report.sections import Context, register_section

SHOWN_GROUPS = 12
"""Groups listed: every flagged one, then the riskiest others up to this many rows."""


def _rate(value: Any) -> str:
    rate = as_float(value)
    return "–" if rate is None else pct(rate, 0)


def _group_row(run: RunData, group: dict[str, Any]) -> Context:
    scenarios = as_dict(group.get("scenarios"))
    n_test = as_int(group.get("n_test")) or 0
    top = ""
    if scenarios:
        name, count = max(scenarios.items(), key=lambda kv: as_int(kv[1]) or 0)
        top = f"{name} ({pct((as_int(count) or 0) / (n_test or 1), 0)})"
    ratio = as_float(group.get("representation_ratio"))
    return {
        "id": as_int(group.get("id")),
        "flagged": bool(group.get("flagged")),
        "n_train": num(as_int(group.get("n_train"))),
        "n_test": num(n_test),
        "ratio": "–" if ratio is None else f"{ratio:.1f}×",
        "error": _rate(group.get("error_rate")),
        "ci": f"{_rate(group.get('ci_low'))}–{_rate(group.get('ci_high'))}",
        "q": num(as_float(group.get("q_value")), 2),
        "excess": num(as_float(group.get("excess_errors")), 1),
        "cls": str(group.get("dominant_class", "")),
        "scenario": top,
        "image": run.image(group.get("thumbnails")),
    }


@register_section("bias", "Bias: under-represented groups", order=57)
def bias_section(run: RunData) -> Context | None:
    """Groups flagged first, by excess errors, with their test members' thumbnails; the
    metadata slices as readable rules."""
    data = run.bias
    if not data:
        return None
    groups = [g for g in as_list(data.get("groups")) if isinstance(g, dict)]
    flagged = [g for g in groups if g.get("flagged")]
    shown = (
        flagged + [g for g in groups if not g.get("flagged")][: max(0, SHOWN_GROUPS - len(flagged))]
    )
    slices = [
        {
            "rule": str(s.get("rule", "")),
            "error": _rate(s.get("error_rate")),
            "ci": f"{_rate(s.get('ci_low'))}–{_rate(s.get('ci_high'))}",
            "support": num(as_int(s.get("support"))),
        }
        for s in as_list(data.get("slices"))
        if isinstance(s, dict)
    ]
    rule = as_dict(data.get("rule"))
    return {
        "features": str(data.get("features", "")),
        "cluster": str(as_dict(data.get("cluster")).get("name", "")),
        "reduce": str(as_dict(data.get("reduce")).get("name", "")),
        "n_groups": len(groups),
        "n_flagged": len(flagged),
        "n_train": num(as_int(data.get("n_train"))),
        "n_test": num(as_int(data.get("n_test"))),
        "baseline": _rate(data.get("baseline_error")),
        "rule": str(rule.get("text", "")),
        "groups": [_group_row(run, g) for g in shown],
        "hidden": len(groups) - len(shown),
        "slices": slices,
        "show_scenario": any(g.get("scenarios") for g in groups),
    }
