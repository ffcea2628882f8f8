from __future__ import annotations

from pathlib import Path

from dnnsafety.report.load import RunData
from dnnsafety.report.sections.bias import SHOWN_GROUPS, bias_section


def _group(i: int, flagged: bool, excess: float) -> dict:
    return {
        "id": i,
        "n_train": 5,
        "n_test": 40,
        "representation_ratio": 12.0,
        "error_rate": 0.5,
        "ci_low": 0.35,
        "ci_high": 0.65,
        "q_value": 0.001,
        "excess_errors": excess,
        "flagged": flagged,
        "dominant_class": "stop",
        "scenarios": {"fog": 30, "nominal": 10} if flagged else {"nominal": 40},
        "thumbnails": "bias/missing.png",
    }


def test_section_lists_flagged_groups_first_and_slices_as_rules(tmp_path: Path) -> None:
    groups = [_group(0, True, 20.0)] + [_group(i, False, 10.0 - i) for i in range(1, 20)]
    data = {
        "features": "activations",
        "reduce": {"name": "pca"},
        "cluster": {"name": "kmeans-fixed"},
        "rule": {"text": "flagged when ..."},
        "baseline_error": 0.08,
        "n_train": 100,
        "n_test": 800,
        "groups": groups,
        "slices": [{"rule": "fog in [0.6, 0.9]", "error_rate": 0.7, "support": 84}],
    }
    ctx = bias_section(RunData(path=tmp_path, metrics={}, bias=data))
    assert ctx is not None
    assert ctx["n_flagged"] == 1 and ctx["groups"][0]["flagged"]
    assert len(ctx["groups"]) == SHOWN_GROUPS and ctx["hidden"] == 20 - SHOWN_GROUPS
    assert ctx["groups"][0]["scenario"] == "fog (75%)"  # the largest count, not the first key
    assert ctx["groups"][0]["image"] is None  # a missing file is not embedded
    assert ctx["slices"][0]["rule"] == "fog in [0.6, 0.9]" and ctx["slices"][0]["error"] == "70%"
    assert bias_section(RunData(path=tmp_path, metrics={})) is None
