"""A comparison of mitigations only (no new labels, e.g. adversarial fine-tuning) does not
claim that its strategies spent a labelling budget."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnnsafety.cli.summary import print_comparison
from dnnsafety.report.sections.retraining import retraining_section

SCORE = {"overall": 0.9, "rare": 0.5, "per_scenario": {"nominal": 0.95, "fog": 0.5}}
RUN = {"seed": 0, "cost": 0, **SCORE, "per_cluster": {}, "improved": 3, "worsened": 1}
CI = {"mean": 0.9, "low": None, "high": None}
SUMMARY = {"overall": CI, "rare": CI, "per_scenario": {"fog": CI, "nominal": CI}, "per_cluster": {}}


def _comparison(cost: int) -> dict:
    return {
        "budget": 60,
        "bag_size": 0,
        "seeds": [0],
        "scenarios": ["fog", "nominal"],
        "clusters": [],
        "original": {**SCORE, "per_cluster": {}},
        "strategies": {
            "adversarial": {"cost": cost, "bag_size": 0, "runs": [RUN], "summary": SUMMARY},
        },
        "settings": {"epochs": 1, "seeds": 1},
        "control": {"cost": 0, "bag_size": 0, "runs": [RUN], "summary": SUMMARY},
    }


@pytest.mark.parametrize("cost", [0, 60])
def test_the_budget_is_stated_only_when_a_strategy_spent_labels(
    cost: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "comparison.json").write_text(json.dumps(_comparison(cost)))
    print_comparison(tmp_path)
    out = capsys.readouterr().out
    context = retraining_section(SimpleNamespace(comparison=_comparison(cost)))  # type: ignore[arg-type]
    assert context is not None and context["labelled"] == bool(cost)
    if cost:
        assert "budget 60 labels" in out
    else:
        assert "budget 60" not in out and "no new labels" in out


def test_a_mixed_comparison_says_only_the_label_based_strategies_spent_the_budget() -> None:
    from dnnsafety.report.render import _render_section
    from dnnsafety.report.sections import SECTIONS

    data = _comparison(0)
    data["strategies"]["closest"] = {"cost": 60, "bag_size": 0, "runs": [RUN], "summary": SUMMARY}
    context = retraining_section(SimpleNamespace(comparison=data))  # type: ignore[arg-type]
    assert context is not None and context["mixed"] and context["labelled"]
    run = SimpleNamespace(comparison=data)
    html = str(_render_section(run, SECTIONS["retraining"])["html"])  # type: ignore[arg-type,index]
    assert "The label-based strategies spent a labelling budget of 60" in html
    assert "Each strategy spent" not in html
