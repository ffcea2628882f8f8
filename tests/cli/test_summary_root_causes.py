"""CLI summaries: each cluster's best metadata rule, worst-scenario and per-cluster accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnnsafety.cli.summary import print_clusters, print_comparison
from report_runs import make_run


def test_summaries_print_rules_worst_scenario_and_cluster_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "run", full=True)
    data = json.loads((run / "comparison.json").read_text())
    for entry in data["strategies"].values():  # the report fixture leaves these out
        entry["summary"]["rare"] = entry["summary"]["per_scenario"]["fog"]
    (run / "comparison.json").write_text(json.dumps({**data, "bag_size": 2}))
    print_clusters(run)
    out = capsys.readouterr().out
    assert "rule: fog > 0.62 and brightness <= 0.4: precision 0.91, recall 0.84" in out
    print_comparison(run)
    out = capsys.readouterr().out
    assert "worst scenario" in out and "mean scenario" in out
    assert "73.5%" in out  # ClosestU's worst-scenario accuracy (fog 0.8456 - 0.1111)
    assert "Accuracy on the test errors of each root-cause cluster" in out
    table = out.split("each root-cause cluster")[1].splitlines()
    assert next(x for x in table if x.startswith("ClosestU")).split()[1:] == ["73.2%", "40.0%"]
