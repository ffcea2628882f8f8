from __future__ import annotations

import json

import pandas as pd
import pytest

from dnnsafety.cli.main import main
from dnnsafety.pipeline.artifacts import ArtifactError, BiasReport, read_artifact

FAST = ["--dataset", "digits", "--epochs", "2", "--set", "train.batch_size=64"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("bias") / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    return run


@pytest.mark.slow
def test_bias_writes_groups_columns_and_a_report_section(evaluated, capsys):
    assert main(["--quiet", "bias", str(evaluated), "--groups", "8", "--slices", "3"]) == 0
    out = capsys.readouterr().out
    assert "8 groups in activations features" in out and "bias.json" in out
    report = read_artifact(BiasReport, evaluated)
    assert report.features == "activations" and len(report.groups) == 8
    assert report.n_train + report.n_test == sum(g["n_train"] + g["n_test"] for g in report.groups)
    assert report.rule["min_ratio"] == 2.0 and "Benjamini-Hochberg" in report.rule["text"]
    flags = [g["flagged"] for g in report.groups]
    assert flags == sorted(flags, reverse=True)  # flagged first
    for g in report.groups:
        assert (evaluated / g["thumbnails"]).is_file()
    samples = pd.read_parquet(evaluated / "samples.parquet")
    labelled = samples[samples["split"].isin(["train", "test"])]
    assert labelled["bias_group"].notna().all()
    assert samples.loc[samples["split"] == "pool", "bias_group"].isna().all()
    flagged_ids = {g["id"] for g in report.groups if g["flagged"]}
    assert (labelled["is_bias_flagged"] == labelled["bias_group"].isin(flagged_ids)).all()
    assert all("rule" in s and s["support"] >= 20 for s in report.slices)
    assert main(["--quiet", "report", str(evaluated)]) == 0
    html = (evaluated / "report.html").read_text()
    assert 'id="bias"' in html and "flagged" in html
    assert ("Metadata slices" in html) == bool(report.slices)


def test_bias_needs_an_evaluated_run(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    assert main(["--quiet", "bias", str(run)]) == 2
    assert "dnnsafety evaluate" in capsys.readouterr().err


def test_a_malformed_bias_json_names_the_command(tmp_path):
    (tmp_path / "bias.json").write_text(json.dumps({"schema_version": 1, "groups": 3}))
    with pytest.raises(ArtifactError, match="dnnsafety bias"):
        read_artifact(BiasReport, tmp_path)
