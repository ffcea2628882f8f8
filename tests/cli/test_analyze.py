from __future__ import annotations

import json

import pandas as pd
import pytest

from dnnsafety.cli.main import main

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "base"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    return run


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_analyze_writes_clusters_and_the_cluster_column(evaluated, tmp_path, capsys):
    run = _copy(evaluated, tmp_path / "run")
    assert main(["--quiet", "analyze", str(run), "--features", "hudd"]) == 0
    out = capsys.readouterr().out
    assert "root-cause clusters" in out
    data = json.loads((run / "clusters.json").read_text())
    table = pd.read_parquet(run / "samples.parquet")
    errors = table[(table["split"] == "test") & (table["correct"] == False)]  # noqa: E712
    assert data["n_errors"] == len(errors) > 0
    assert errors["cluster"].notna().all()
    assert table.loc[table["split"] != "test", "cluster"].isna().all()
    assert table.loc[table["correct"] == True, "cluster"].isna().all()  # noqa: E712
    members = sorted(m for c in data["clusters"] for m in c["members"])
    assert members == sorted(errors["sample_id"])
    for c in data["clusters"]:
        assert c["size"] == len(c["members"]) == (errors["cluster"] == c["id"]).sum()
        assert c["medoid"] in c["members"]
        assert (run / c["contact_sheet"]).exists()
        assert sum(c["scenarios"].values()) == c["size"]
    layers = json.loads((run / "analysis" / "layers.json").read_text())
    assert layers["selected"] == data["layer"] != "input"
    assert layers["layers"]["input"]["is_input"]
    for name, entry in layers["layers"].items():
        assert {"wicd", "silhouette", "dunn", "davies_bouldin"} <= set(entry["indices"]) or (
            entry["k"] < 2
        ), name
    # a second call reuses the stage
    assert main(["analyze", str(run), "--features", "hudd"]) == 0
    assert "stage analyze reused" in (run / "run.log").read_text()


def test_plain_analyze_runs_the_default_black_box_analysis(evaluated, tmp_path, capsys):
    """The default: backbone + umap + guarded (no cluster may hold most errors); --features
    hudd, --layers and --mode still ask for the white-box analysis."""
    run = _copy(evaluated, tmp_path / "default")
    assert main(["--quiet", "analyze", str(run), "--set", "analysis.image_size=32"]) == 0
    data = json.loads((run / "clusters.json").read_text())
    assert data["method"] == "safe"
    assert (data["features"], data["reduce"], data["cluster"]) == ("backbone", "umap", "guarded")
    assert data["params"]["cluster"]["by"] == "true"
    assert not (run / "analysis" / "layers.json").exists()
    assert data["clusters"] and "splits" in data["params"]["cluster"]
    assert "backbone features -> umap -> guarded" in capsys.readouterr().out


def test_white_box_by_name_in_the_configuration():
    from dnnsafety.config import AnalysisConfig
    from dnnsafety.pipeline.analyze import analysis_for

    assert analysis_for(AnalysisConfig()).name == "safe"
    assert analysis_for(AnalysisConfig(features="")).name == "hudd"
    assert analysis_for(AnalysisConfig(mode="hudd-compat")).name == "hudd"


def test_hudd_compat_mode(evaluated, tmp_path):
    run = _copy(evaluated, tmp_path / "compat")
    assert main(["--quiet", "analyze", str(run), "--mode", "hudd-compat"]) == 0
    data = json.loads((run / "clusters.json").read_text())
    assert data["settings"] == {"ruleset": "hudd", "k_rule": "hudd", "selection": "compat"}
    assert data["clusters"]


@pytest.mark.parametrize("n_errors", [0, 1, 2])
def test_few_errors_give_clear_outcomes(evaluated, tmp_path, capsys, n_errors):
    run = _copy(evaluated, tmp_path / f"few{n_errors}")
    table = pd.read_parquet(run / "samples.parquet")
    test = table.index[table["split"] == "test"]
    table.loc[test, "correct"] = True
    table.loc[test[:n_errors], "correct"] = False
    table.to_parquet(run / "samples.parquet", index=False)
    assert main(["--quiet", "analyze", str(run)]) == 0
    data = json.loads((run / "clusters.json").read_text())
    assert data["n_errors"] == n_errors
    out = capsys.readouterr().out
    if n_errors == 0:
        assert data["clusters"] == [] and "No clusters" in out
    else:
        assert sum(c["size"] for c in data["clusters"]) == n_errors


def test_analyze_needs_an_evaluated_run(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_layer_is_a_clear_error(evaluated, tmp_path, capsys):
    run = _copy(evaluated, tmp_path / "badlayer")
    assert main(["analyze", str(run), "--layers", "features.99"]) == 2
    err = capsys.readouterr().err
    assert "features.99" in err and "Traceback" not in err
