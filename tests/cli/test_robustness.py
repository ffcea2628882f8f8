from __future__ import annotations

import json

import pytest

import dnnsafety.robustness.sweep as sweep_mod
from dnnsafety.cli.main import main
from dnnsafety.pipeline.artifacts import ArtifactError, Robustness, read_artifact
from dnnsafety.report import render_report

FAST = ["--dataset", "digits", "--epochs", "2", "--set", "train.batch_size=64"]
SWEEP = [
    "--corruptions", "gaussian_noise,dark", "--severities", "1,5", "--missing",
    "dropped_pixels", "--faults", "bitflip", "--n", "12", "--ranger", "--max-images", "80",
    "--fault-images", "40",
]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    run = tmp_path_factory.mktemp("robust") / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    assert main(["--quiet", "robustness", str(run), *SWEEP]) == 0
    return run


@pytest.mark.slow
def test_robustness_writes_the_typed_artifact(swept):
    result = read_artifact(Robustness, swept)
    assert result.images == {"split": "test", "n": 80, "selection": "nominal test images"}
    assert set(result.accuracy) == {"gaussian_noise", "dark"}
    assert set(result.accuracy["dark"]) == {"1", "5"}
    assert result.accuracy["dark"]["5"] < result.clean_accuracy
    assert result.families == {"gaussian_noise": "noise", "dark": "scenario"}
    assert result.missing["dropped_pixels"]["0"] == pytest.approx(result.clean_accuracy)
    faults = result.faults
    assert faults["n"] == 12 and faults["n_inputs"] == 40
    assert sum(g["n"] for g in faults["by_bit"].values()) == 12
    assert sum(g["n"] for g in faults["by_layer"].values()) == 12
    assert faults["ranger"]["clean_accuracy"] == pytest.approx(result.clean_accuracy)
    assert result.schema_version == 1 and result.mce is None


@pytest.mark.slow
def test_a_rerun_reuses_every_finished_cell(swept, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a finished cell was computed again")

    monkeypatch.setattr(sweep_mod, "flip_bit", boom)
    monkeypatch.setattr(sweep_mod, "drop", boom)
    before = json.loads((swept / "robustness.json").read_text())
    assert main(["--quiet", "robustness", str(swept), *SWEEP]) == 0
    after = json.loads((swept / "robustness.json").read_text())
    before["settings"].pop("seconds"), after["settings"].pop("seconds")
    assert before == after


@pytest.mark.slow
def test_reference_gives_corruption_errors_and_the_report_shows_the_section(swept, tmp_path):
    other = tmp_path / "other"
    assert main(["--quiet", "evaluate", str(other), *FAST, "--seed", "1"]) == 0
    args = ["--corruptions", "gaussian_noise,dark", "--severities", "1,5", "--missing", "none"]
    assert main(["--quiet", "robustness", str(other), *args, "--reference", str(swept)]) == 0
    result = read_artifact(Robustness, other)
    assert set(result.corruption_errors) == {"gaussian_noise", "dark"}
    assert result.mce == pytest.approx(sum(result.corruption_errors.values()) / 2)
    html = render_report(other).read_text()
    assert 'id="robustness"' in html and "mCE" in html and "CE" in html
    html = render_report(swept).read_text()
    assert "<polyline" in html and "Ranger" in html and "Single bit flips" in html


def test_bad_options_and_files_are_one_clear_line(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["robustness", run, "--corruptions", "rain"]) == 2
    assert "Unknown corruption 'rain'" in capsys.readouterr().err
    assert main(["robustness", run, "--bits", "40"]) == 2
    assert "--bits" in capsys.readouterr().err
    assert main(["robustness", run, "--corruptions", "none", "--missing", "none"]) == 2
    assert "Nothing to sweep" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "robustness.json").write_text('{"schema_version": 1, "clean_accuracy": "x"}')
    with pytest.raises(ArtifactError, match="clean_accuracy"):
        read_artifact(Robustness, bad)
