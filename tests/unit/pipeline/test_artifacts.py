"""Typed run-folder artifacts: round trips, version-0 files, malformed files, a real run's files."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from dnnsafety.cli.main import main
from dnnsafety.cli.summary import print_clusters, print_comparison
from dnnsafety.pipeline.artifacts import (
    SCHEMA_VERSION,
    ArtifactError,
    Clusters,
    Comparison,
    LayerSummary,
    LayerTable,
    StrategyResult,
    read_artifact,
    write_artifact,
)
from dnnsafety.report.load import load_run

RECORD: dict[str, Any] = {
    "id": 0,
    "size": 2,
    "members": ["test/3", "test/7"],
    "share_of_errors": 0.5,
    "true_labels": {"3": 2},
    "predicted_labels": {"8": 2},
    "confusions": [{"true": "3", "predicted": "8", "count": 2, "share": 1.0}],
    "scenarios": {"nominal": 2},
    "medoid": "test/3",
    "contact_sheet": "analysis/cluster_0.png",
}

# The files as written before `schema_version` existed (version 0), key for key.
HUDD_V0 = {
    "method": "hudd",
    "split": "test",
    "layer": "features.3",
    "settings": {"k_rule": "hudd", "ruleset": "default", "selection": "default"},
    "n_errors": 4,
    "clusters": [RECORD, {**RECORD, "id": 1, "members": ["test/1", "test/9"]}],
}
SAFE_V0 = {
    "method": "safe",
    "split": "test",
    "layer": "",
    "features": "pixels",
    "reduce": "pca",
    "cluster": "kmeans",
    "params": {"reduce": {"name": "pca", "dims": 10}, "cluster": {"name": "kmeans"}},
    "settings": {"features": {}, "seed": 0},
    "n_errors": 3,
    "n_noise": 1,
    "clusters": [RECORD],
}
LAYERS_V0 = {
    "selected": "features.3",
    "settings": {"k_rule": "hudd", "ruleset": "default", "selection": "default"},
    "layers": {
        "input": {
            "k": 2,
            "k_reason": "knee",
            "knee_k": None,
            "is_input": True,
            "indices": {"silhouette": 0.1, "wicd": None},
            "ks": [2, 3],
            "wicd": [0.2, 0.1],
            "gradient": [-0.1, None],
            "sizes": [3, 1],
            "selected": False,
        },
        "features.3": {
            "k": 2,
            "k_reason": "knee",
            "knee_k": 2,
            "is_input": False,
            "indices": {"silhouette": 0.4},
            "ks": [2, 3],
            "wicd": [0.3, 0.1],
            "gradient": [-0.2, -0.1],
            "sizes": [2, 2],
            "selected": True,
        },
    },
}
SCORE = {"overall": 0.9, "rare": 0.5, "per_scenario": {"nominal": 0.95, "fog": 0.5}}
RUN = {"seed": 0, "cost": 10, **SCORE, "per_cluster": {"0": 0.5}, "improved": 3, "worsened": 1}
CI = {"mean": 0.9, "low": None, "high": None}
SUMMARY = {"overall": CI, "rare": CI, "per_scenario": {"fog": CI, "nominal": CI}, "per_cluster": {}}
COMPARISON_V0 = {
    "budget": 10,
    "bag_size": 12,
    "seeds": [0],
    "scenarios": ["fog", "nominal"],
    "clusters": [0],
    "original": {**SCORE, "per_cluster": {"0": 0.0}},
    "strategies": {
        "closest": {"cost": 10, "bag_size": 12, "runs": [RUN], "summary": SUMMARY, "versus": {}},
    },
    "settings": {"epochs": 1, "seeds": 1},
    "control": {"cost": 0, "bag_size": 0, "runs": [RUN], "summary": SUMMARY},
}


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- round trips


def _examples() -> list[Clusters | LayerTable | Comparison]:
    layer = LayerSummary(2, "knee", None, False, {"dunn": 0.2}, [3, 1], [2, 3], [0.2, 0.1])
    return [
        Clusters("test", "features.3", 4, [RECORD], method="hudd", settings={"k_rule": "hudd"}),
        Clusters(
            "test",
            "",
            3,
            [RECORD],
            method="safe",
            features="pixels",
            reduce="pca",
            cluster="kmeans",
            params={},
            settings={"seed": 0},
            n_noise=1,
        ),
        LayerTable("features.3", {"k_rule": "hudd"}, {"input": layer, "fc": layer}),
        Comparison(
            budget=10,
            seeds=[0, 1],
            scenarios=["nominal"],
            original=SCORE,
            strategies={"random": StrategyResult(10, SUMMARY, [RUN], 12, {})},
            bag_size=12,
            control=StrategyResult(0, SUMMARY, [RUN], 0),
        ),
    ]


@pytest.mark.parametrize("artifact", _examples(), ids=lambda a: type(a).__name__)
def test_round_trip(artifact: Any, tmp_path: Path) -> None:
    data = artifact.to_json()
    assert data["schema_version"] == SCHEMA_VERSION
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert type(artifact).from_json(data) == artifact
    write_artifact(tmp_path, artifact)
    assert read_artifact(type(artifact), tmp_path) == artifact
    assert read_artifact(type(artifact), tmp_path).to_json() == data


def test_absent_optional_fields_stay_absent() -> None:
    hudd = _examples()[0].to_json()
    assert not {"features", "reduce", "cluster", "params", "n_noise"} & set(hudd)
    layer = LayerSummary(2, "knee", None, True, {}, [2])
    assert layer.to_json()["knee_k"] is None  # always written, null when there is no knee


# --------------------------------------------------------------------------- version 0


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (Clusters, HUDD_V0),
        (Clusters, SAFE_V0),
        (LayerTable, LAYERS_V0),
        (Comparison, COMPARISON_V0),
    ],
    ids=["hudd", "safe", "layers", "comparison"],
)
def test_version_0_files_load_as_they_are(cls: Any, data: dict[str, Any], tmp_path: Path) -> None:
    _write(tmp_path / cls.FILE, data)
    artifact = read_artifact(cls, tmp_path)
    assert artifact.schema_version == 0
    assert artifact.to_json() == {**data, "schema_version": 0}


def test_version_0_clusters_without_method_is_hudd(tmp_path: Path) -> None:
    old = {k: v for k, v in HUDD_V0.items() if k not in ("method", "settings")}
    clusters = read_artifact(Clusters, _write(tmp_path / "clusters.json", old).parent)
    assert clusters.method is None and clusters.settings is None
    assert clusters.sizes() == [2, 2]
    assert clusters.labels() == {"test/3": 0, "test/7": 0, "test/1": 1, "test/9": 1}


def test_old_run_folder_still_reports_and_summarises(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "clusters.json", HUDD_V0)
    _write(tmp_path / "comparison.json", COMPARISON_V0)
    print_clusters(tmp_path)
    print_comparison(tmp_path)
    out = capsys.readouterr().out
    assert "2 root-cause clusters of 4 test errors (layer features.3" in out
    assert "closest" in out and "no new labels" in out


# --------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("cls", "data", "problem"),
    [
        (Clusters, {**HUDD_V0, "schema_version": SCHEMA_VERSION + 1}, "newer than the versions"),
        (Clusters, {**HUDD_V0, "schema_version": "1"}, "'schema_version' must be an integer"),
        (Clusters, {**HUDD_V0, "n_errors": "4"}, "'n_errors' must be an integer, not str"),
        (Clusters, {k: v for k, v in SAFE_V0.items() if k != "n_noise"}, "'n_noise'"),
        (Clusters, [HUDD_V0], "holds list, not a JSON object"),
        (LayerTable, {**LAYERS_V0, "layers": {"fc": 3}}, "a layer entry holds int"),
        (Comparison, {**COMPARISON_V0, "strategies": {"x": {"cost": 1}}}, "'summary'"),
        (Comparison, {**COMPARISON_V0, "schema_version": -1}, "not one of the versions"),
    ],
)
def test_malformed_files_name_the_file_and_the_fix(
    cls: Any, data: Any, problem: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "run" / cls.FILE, data)
    with pytest.raises(ArtifactError) as info:
        read_artifact(cls, tmp_path / "run")
    message = str(info.value)
    assert str(path) in message and problem in message
    assert f"Re-run `dnnsafety {cls.COMMAND} {tmp_path / 'run'}`" in message


def test_not_json_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "comparison.json").write_text("{not json", encoding="utf-8")
    pattern = (
        r"comparison\.json is not a strategy comparison .* not readable JSON .* `dnnsafety compare "
    )
    with pytest.raises(ArtifactError, match=pattern):
        read_artifact(Comparison, tmp_path)
    with pytest.raises(ArtifactError, match=r"has no clusters\.json: run `dnnsafety analyze "):
        read_artifact(Clusters, tmp_path)


def test_broken_cluster_records_fail_where_they_are_used(tmp_path: Path) -> None:
    data = {**HUDD_V0, "clusters": [RECORD, {"id": "x", "members": 3}]}
    clusters = read_artifact(Clusters, _write(tmp_path / "clusters.json", data).parent)
    with pytest.raises(ArtifactError, match=r"clusters\.json .*cluster record 1 has no integer"):
        clusters.sizes()


def test_the_report_leaves_out_a_file_of_a_newer_version(tmp_path: Path, caplog) -> None:
    _write(tmp_path / "metrics.json", {"class_names": ["a"], "splits": {}})
    (tmp_path / "samples.parquet").write_bytes(b"")
    _write(tmp_path / "clusters.json", {**HUDD_V0, "schema_version": SCHEMA_VERSION + 1})
    _write(tmp_path / "comparison.json", COMPARISON_V0)
    with caplog.at_level(logging.WARNING):
        run = load_run(tmp_path)
    assert run.clusters is None
    assert run.comparison == {**COMPARISON_V0, "schema_version": 0}
    assert "Re-run `dnnsafety analyze" in caplog.text and "section is left out" in caplog.text


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("artifacts") / "run"
    fast = ["--dataset", "digits", "--epochs", "1", "--set", "train.batch_size=64"]
    assert main(["--quiet", "evaluate", str(run), *fast]) == 0
    assert main(["--quiet", "analyze", str(run), "--features", "hudd"]) == 0
    argv = ["--quiet", "compare", str(run), "--strategies", "closest,random", "--budget", "10"]
    assert main([*argv, "--seeds", "1", "--set", "retrain.epochs=1"]) == 0
    return run


@pytest.mark.slow
def test_a_real_runs_files_parse(real_run: Path, tmp_path: Path) -> None:
    for cls in (Clusters, LayerTable, Comparison):
        artifact = read_artifact(cls, real_run)
        raw = json.loads((real_run / cls.FILE).read_text(encoding="utf-8"))
        assert raw["schema_version"] == SCHEMA_VERSION
        assert artifact.to_json() == raw  # every key of the file is a field
    clusters = read_artifact(Clusters, real_run)
    assert clusters.method == "hudd" and sum(clusters.sizes()) == clusters.n_errors
    layers = read_artifact(LayerTable, real_run)
    assert layers.selected == clusters.layer and layers.layers[layers.selected].selected
    comparison = read_artifact(Comparison, real_run)
    assert set(comparison.strategies) == {"closest", "random"} and comparison.control
    safe_run = shutil.copytree(real_run, tmp_path / "safe")
    argv = ["--quiet", "analyze", str(safe_run), "--features", "pixels", "--reduce", "pca"]
    assert main([*argv, "--cluster", "kmeans"]) == 0
    safe = read_artifact(Clusters, safe_run)
    raw = json.loads((safe_run / "clusters.json").read_text(encoding="utf-8"))
    assert safe.to_json() == raw
    assert safe.method == "safe" and safe.features == "pixels" and safe.n_noise is not None
