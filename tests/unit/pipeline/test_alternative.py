"""A second analysis of a run: its folder, its agreement artifact, the agreement figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.analyze.alternative import (
    ALT_DIR,
    AlternativeRun,
    agreement_of,
    alternatives,
    check_name,
    write_agreement,
)
from dnnsafety.pipeline.artifacts import (
    SCHEMA_VERSION,
    AnalysisAgreement,
    ArtifactError,
    Clusters,
    read_artifact,
    write_artifact,
)
from dnnsafety.runs import RunDir

# 12 test errors of two causes, 6 each; 4 correct inputs
CAUSES = ["fog"] * 6 + ["night"] * 6
ERRORS = [f"test/{i}" for i in range(12)]


def _samples() -> pd.DataFrame:
    ids = [*ERRORS, *(f"test/{i}" for i in range(12, 16))]
    return pd.DataFrame(
        {
            "sample_id": ids,
            "split": "test",
            "label": 0,
            "pred": [1] * 12 + [0] * 4,
            "correct": [False] * 12 + [True] * 4,
            "scenario": [*CAUSES, *["nominal"] * 4],
        }
    )


def _clusters(labels, method="safe") -> Clusters:
    pairs = list(zip(ERRORS, labels, strict=True))
    records = [
        {"id": int(c), "size": 0, "members": [e for e, x in pairs if x == c]}
        for c in sorted(set(labels) - {-1})
    ]
    extra = {"features": "pixels", "reduce": "pca", "cluster": "kmeans", "n_noise": 0}
    return Clusters(
        split="test",
        layer="",
        n_errors=len(ERRORS),
        clusters=records,
        method=method,
        **(extra if method == "safe" else {}),
    )


@pytest.fixture()
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.write_samples(_samples())
    return run


def _agreement(**change) -> AnalysisAgreement:
    main, other = _clusters([0] * 6 + [1] * 6), _clusters([2] * 6 + [5] * 6, "hudd")
    found, _ = agreement_of(main, other, _samples(), "hudd", "analysis/alt/hudd/agreement.png")
    return AnalysisAgreement(**{**found.__dict__, **change})


def test_the_agreement_artifact_round_trips(run):
    found = _agreement()
    assert found.schema_version == SCHEMA_VERSION
    assert AnalysisAgreement.from_json(found.to_json()) == found
    folder = AlternativeRun(run, "hudd")
    write_artifact(folder, found)
    assert read_artifact(AnalysisAgreement, folder) == found
    # an ARI of fewer than two shared errors is left out of the file and read back as None
    empty = _agreement(ari=None)
    write_artifact(folder, empty)
    assert "ari" not in json.loads((folder / "agreement.json").read_text())
    assert read_artifact(AnalysisAgreement, folder).ari is None


def test_a_malformed_agreement_names_the_file_and_the_command(run):
    folder = AlternativeRun(run, "hudd")
    data = _agreement().to_json()
    data["contingency"] = [[1, 2]]
    (folder / "agreement.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"agreement.json .*2 rows of 2 counts.*--as hudd"):
        read_artifact(AnalysisAgreement, folder)
    (folder / "agreement.json").write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(ArtifactError, match="schema_version 99"):
        read_artifact(AnalysisAgreement, folder)


def test_a_permuted_labelling_agrees_fully_and_scores_the_causes():
    found = _agreement()
    assert found.ari == pytest.approx(1.0)
    assert [(m["first"], m["second"], m["jaccard"]) for m in found.matches] == [
        (0, 2, 1.0),
        (1, 5, 1.0),
    ]
    assert found.contingency == [[6, 0], [0, 6]]
    for name in ("main", "hudd"):
        scores = found.analyses[name]["scores"]
        assert scores["purity"] == 1.0 and scores["coverage"] == 1.0
        assert {c: s["f1"] for c, s in scores["causes"].items()} == {"fog": 1.0, "night": 1.0}
        assert scores["purity_trivial"] == 0.5


def test_one_big_cluster_scores_low_f1_and_about_zero_agreement():
    main = _clusters([0] * 6 + [1] * 6)
    lumped = _clusters([0] * 12, "hudd")
    found, table = agreement_of(main, lumped, _samples(), "lumped")
    assert found.ari == pytest.approx(0.0)
    assert table.tolist() == [[6], [6]]
    causes = found.analyses["lumped"]["scores"]["causes"]
    assert causes["fog"]["f1"] == pytest.approx(2 * 0.5 / 1.5)  # recall 1, precision 0.5
    assert found.analyses["lumped"]["n_clusters"] == 1


def test_no_ground_truth_no_scores():
    samples = _samples().assign(scenario="unknown")
    found, _ = agreement_of(_clusters([0] * 12), _clusters([0] * 12, "hudd"), samples, "x")
    assert all("scores" not in a for a in found.analyses.values())


def test_the_second_analysis_keeps_its_own_cluster_column(run):
    alt = AlternativeRun(run, "hudd")
    column = pd.DataFrame({"cluster": pd.array([3] * 12, dtype="Int64")}, index=ERRORS)
    alt.add_columns(column)
    assert "cluster" not in run.read_samples().columns  # the run's table is untouched
    seen = alt.read_samples().set_index("sample_id")
    assert (seen.loc[ERRORS, "cluster"] == 3).all()
    assert seen.loc["test/13", "cluster"] is pd.NA
    run.add_columns(pd.DataFrame({"cluster": pd.array([0] * 12, dtype="Int64")}, index=ERRORS))
    assert (alt.read_samples().set_index("sample_id").loc[ERRORS, "cluster"] == 3).all()
    with pytest.raises(RuntimeError):
        alt.write_samples(seen)


def test_write_agreement_reads_both_analyses_and_draws_the_heatmap(run):
    write_artifact(run, _clusters([0] * 6 + [1] * 6))
    alt = AlternativeRun(run, "hudd")
    write_artifact(alt, _clusters([4] * 3 + [5] * 9, "hudd"))
    assert alternatives(run) == ["hudd"]
    found = write_agreement(run, "hudd")
    assert (run / f"{ALT_DIR}/hudd/agreement.png").read_bytes()[:4] == b"\x89PNG"
    assert found.heatmap == f"{ALT_DIR}/hudd/agreement.png"
    assert read_artifact(AnalysisAgreement, alt) == found
    assert 0 < found.ari < 1
    assert np.sum(found.contingency) == 12


@pytest.mark.parametrize("name", ["", "main", "a/b", "../x", "with space"])
def test_bad_names_are_refused(name):
    with pytest.raises(ConfigError, match="--as"):
        check_name(name)
    assert check_name("hudd-compat_2") == "hudd-compat_2"


def test_a_damaged_second_analysis_does_not_fail_the_refresh(run, caplog):
    from dnnsafety.pipeline.analyze.alternative import refresh_agreements

    write_artifact(run, _clusters([0] * 6 + [1] * 6))
    good, bad = AlternativeRun(run, "good"), AlternativeRun(run, "bad")
    write_artifact(good, _clusters([1] * 6 + [0] * 6, "hudd"))
    (bad / "clusters.json").write_text("{not json")
    refresh_agreements(run)
    assert read_artifact(AnalysisAgreement, good).ari == pytest.approx(1.0)
    assert not (bad / "agreement.json").exists()
    assert "could not compare the second analysis 'bad'" in caplog.text


def test_nominal_errors_are_not_a_cause_to_find():
    samples = _samples()
    samples.loc[[0, 6], "scenario"] = "nominal"  # one natural error in each cluster
    found, _ = agreement_of(_clusters([0] * 6 + [1] * 6), _clusters([0] * 12), samples, "x")
    scores = found.analyses["main"]["scores"]
    assert set(scores["causes"]) == {"fog", "night"}
    assert scores["purity"] == pytest.approx(5 / 6)


def test_analyses_of_disjoint_errors_compare_nothing_and_still_draw(tmp_path):
    from dnnsafety.evaluation.agreement import compare_partitions
    from dnnsafety.explain.agreement import plot_contingency

    found = compare_partitions({"a": 0, "b": 1}, {"c": 0})
    assert found.n_common == 0 and found.contingency.shape == (0, 0) and not found.matches
    plot_contingency(found.contingency, [], [], ("main", "x"), tmp_path / "none.png")
    assert (tmp_path / "none.png").read_bytes()[:4] == b"\x89PNG"
