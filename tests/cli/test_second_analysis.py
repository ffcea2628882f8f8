"""`dnnsafety analyze RUN ... --as NAME`: a second analysis beside the main one, in the report."""

from __future__ import annotations

import hashlib
import json

import pytest

from dnnsafety.cli.main import main

FAST = ["--dataset", "digits", "--epochs", "2", "--set", "train.batch_size=64"]
# a cheap main analysis: raw pixels -> PCA -> k-means
CHEAP = ["--features", "pixels", "--reduce", "pca", "--cluster", "kmeans"]
SECTION = "Two analyses side by side"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_analyze_twice_keeps_both_and_the_report_shows_them_side_by_side(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    assert main(["--quiet", "analyze", str(run), *CHEAP]) == 0
    report = (run / "report.html").read_text()
    assert 'id="agreement"' not in report and SECTION not in report  # one analysis: absent
    before = {f: _digest(run / f) for f in ("clusters.json", "samples.parquet", "config.toml")}
    capsys.readouterr()

    assert main(["--quiet", "analyze", str(run), "--features", "hudd", "--as", "hudd"]) == 0
    out = capsys.readouterr().out
    assert "adjusted Rand index" in out and "best match hudd" in out
    # the run's own analysis, table and configuration are untouched
    assert {f: _digest(run / f) for f in before} == before
    alt = run / "analysis" / "alt" / "hudd"
    second = json.loads((alt / "clusters.json").read_text())
    main_clusters = json.loads((run / "clusters.json").read_text())
    assert second["method"] == "hudd" and main_clusters["method"] == "safe"
    assert (alt / "analysis" / "layers.json").exists() and (alt / "samples.parquet").exists()
    agreement = json.loads((alt / "agreement.json").read_text())
    assert agreement["first"] == "main" and agreement["second"] == "hudd"
    assert agreement["n_common"] == main_clusters["n_errors"] == second["n_errors"] > 0
    assert sum(map(sum, agreement["contingency"])) == agreement["n_common"]
    assert len(agreement["matches"]) == len(main_clusters["clusters"])
    assert set(agreement["analyses"]["hudd"]["scores"]["causes"])  # digits: injected scenarios
    assert (alt / "agreement.png").read_bytes()[:4] == b"\x89PNG"
    report = (run / "report.html").read_text()
    assert SECTION in report and 'id="agreement-hudd"' in report
    assert "adjusted Rand index" in report and "Matched clusters" in report
    assert report.count("data:image/png") > 2

    # a second call reuses the second analysis; a fresh main analysis rewrites the agreement
    assert main(["--quiet", "analyze", str(run), "--features", "hudd", "--as", "hudd"]) == 0
    stages = json.loads((alt / "stages.json").read_text())
    assert set(stages) == {"analyze"}
    assert main(["--quiet", "analyze", str(run), "--features", "pixels", "--reduce", "none",
                 "--cluster", "kmeans"]) == 0  # fmt: skip
    again = json.loads((alt / "agreement.json").read_text())
    now = json.loads((run / "clusters.json").read_text())
    assert len(again["matches"]) == len(now["clusters"])
    assert "rewrote the agreement" in (run / "run.log").read_text()


def test_a_bad_second_analysis_name_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert main(["analyze", str(run), "--as", "main"]) != 0
    err = capsys.readouterr().err
    assert "--as" in err and "Traceback" not in err
