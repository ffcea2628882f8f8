from __future__ import annotations

import json

import pandas as pd
import pytest

import dnnsafety.pipeline.run as pipeline_mod
from dnnsafety.cli.main import main

FAST = ["--dataset", "digits", "--epochs", "2", "--set", "train.batch_size=64"]


def _stage_log(run_dir) -> str:
    return (run_dir / "run.log").read_text()


def test_train_then_evaluate_writes_the_per_sample_table(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--out", str(run), *FAST]) == 0
    assert (run / "model.pt").exists() and (run / "config.toml").exists()
    assert main(["--quiet", "evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "nominal" in out and "samples.parquet" in out
    table = pd.read_parquet(run / "samples.parquet")
    for col in ("sample_id", "split", "label", "pred", "correct", "scenario", "confidence"):
        assert col in table.columns
    assert any(c.startswith("meta.") for c in table.columns)
    assert set(table["split"]) == {"train", "val", "test", "pool"}
    pool = table[table["split"] == "pool"]
    assert pool["label"].isna().all() and pool["correct"].isna().all()
    test = table[table["split"] == "test"]
    assert (test["correct"] == (test["label"] == test["pred"])).all()
    metrics = json.loads((run / "metrics.json").read_text())
    acc = metrics["splits"]["test"]["accuracy"]
    assert acc == pytest.approx(test["correct"].mean())


def test_rerun_reuses_stages_and_config_change_recomputes(tmp_path):
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    first = (run / "model.pt").stat().st_mtime_ns
    assert main(["evaluate", str(run)]) == 0
    assert (run / "model.pt").stat().st_mtime_ns == first
    assert "stage train reused" in _stage_log(run) and "stage evaluate reused" in _stage_log(run)
    assert main(["--quiet", "evaluate", str(run), "--epochs", "3"]) == 0
    assert (run / "model.pt").stat().st_mtime_ns != first
    assert json.loads((run / "training.json").read_text())["history"][-1]["epoch"] == 3


def test_edited_config_file_is_used(tmp_path):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--out", str(run), *FAST]) == 0
    edited = tmp_path / "edited.toml"
    edited.write_text((run / "config.toml").read_text().replace("epochs = 2", "epochs = 1"))
    run2 = tmp_path / "run2"
    assert main(["--quiet", "train", "--out", str(run2), "--config", str(edited)]) == 0
    assert len(json.loads((run2 / "training.json").read_text())["history"]) == 1


def test_crash_mid_stage_leaves_a_valid_folder_and_resumes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--out", str(run), *FAST]) == 0

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod, "compute_metrics", boom)
    assert main(["--quiet", "evaluate", str(run)]) == 130
    monkeypatch.undo()
    # the interrupted stage wrote no partial outputs and is not marked done
    stages = json.loads((run / "stages.json").read_text())
    assert "evaluate" not in stages
    assert not list(run.glob(".*.tmp"))
    assert main(["--quiet", "evaluate", str(run)]) == 0
    assert "stage train reused" in _stage_log(run)
    assert (run / "metrics.json").exists()


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--dataset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown dataset 'nope'") and "digits" in err
    assert "Traceback" not in err
    assert main(["train", "--out", str(tmp_path / "r"), "--set", "train.epochz=1"]) == 2
    assert "epochz" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "r"), "--dataset", "folder"]) == 2
    assert "data.path" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", "train", "--out", str(tmp_path / "r"), "--dataset", "nope"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_datasets_and_env_commands(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("signs", "fashion-mnist", "digits", "folder", "npz"):
        assert name in out
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "cpu cores" in out


def test_help_texts(capsys):
    for cmd in ([], ["train"], ["evaluate"], ["demo"]):
        assert main([*cmd, "--help"]) == 0
    assert "--out" in capsys.readouterr().out


@pytest.mark.slow
def test_small_end_to_end_run_on_signs_finds_scenario_failures(tmp_path, capsys):
    """Train on a small simulated set and check the table reflects real failure causes."""
    run = tmp_path / "signs"
    sizes = ["--set", "data.n_train=3000", "--set", "data.n_val=300"]
    sizes += ["--set", "data.n_test=800", "--set", "data.n_pool=200"]
    argv = ["--quiet", "evaluate", str(run), "--dataset", "signs", "--epochs", "4", *sizes]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())["splits"]["test"]["per_scenario"]
    assert set(metrics) == {"nominal", "night", "fog", "occlusion_lower", "tilt"}
    # Over seeds 0-4 (4 epochs, 3,000 images) nominal was 0.71-0.83; night, fog and occlusion
    # each stayed >= 0.33 below it, the four rare scenarios pooled about 0.41-0.49 below. Tilt
    # alone is too noisy to test at this size (72 test images; its gap was 0.06-0.35).
    nominal = metrics["nominal"]["accuracy"]
    for scenario in ("night", "fog", "occlusion_lower"):
        assert metrics[scenario]["accuracy"] < nominal - 0.2, scenario
    rare = [metrics[s] for s in ("night", "fog", "occlusion_lower", "tilt")]
    pooled = sum(m["accuracy"] * m["n"] for m in rare) / sum(m["n"] for m in rare)
    assert pooled < nominal - 0.25
    table = pd.read_parquet(run / "samples.parquet")
    assert {"meta.brightness", "meta.fog", "meta.occlusion_side"} <= set(table.columns)
    night = table[table["scenario"] == "night"]
    assert (
        night["meta.brightness"].max()
        < table[table["scenario"] == "nominal"]["meta.brightness"].min()
    )


def test_option_values_reach_the_config_unchanged(tmp_path, monkeypatch, capsys):
    """Command options are passed as a dict: quotes and backslashes are not re-parsed."""
    import dnnsafety.cli.analyze as analyze_mod

    seen = {}

    class Recorder:
        def __init__(self, run, config):
            seen["config"] = config

        def analyze(self, white_box=None):
            seen["white_box"] = white_box

    monkeypatch.setattr(analyze_mod, "Pipeline", Recorder)
    monkeypatch.setattr(analyze_mod, "print_clusters", lambda run_dir: None)
    monkeypatch.setattr(analyze_mod, "render_report", lambda run_dir: run_dir / "report.html")
    run = tmp_path / "run"
    run.mkdir()
    argv = ["--quiet", "analyze", str(run), "--split", "it's\\odd", "--layers", "a\\b, c'd"]
    argv += ["--set", "data.path=C:\\x", "--set", "train.epochs=3"]
    assert main(argv) == 0, capsys.readouterr().err
    config = seen["config"]
    assert config.analysis.split == "it's\\odd"
    assert config.analysis.layers == ["a\\b", "c'd"]
    assert config.data.path == "C:\\x" and config.train.epochs == 3
    assert seen["white_box"] is True  # --layers asks for the white-box analysis by name


@pytest.mark.parametrize(
    ("argv", "kind", "known"),
    [
        (["train", "--out", "R", "--arch", "nope"], "model architecture", "torchscript"),
        (["analyze", "R", "--reduce", "nope"], "reducer", "umap"),
        (["select", "R", "--strategy", "nope"], "selector", "closest"),
        (["retrain", "R", "--labels", "l.csv", "--strategy", "nope"], "selector", "entropy"),
        (["compare", "R", "--strategies", "random,nope"], "selector", "deepgini"),
        (["demo", "--out", "R", "--dataset", "nope"], "dataset", "signs"),
    ],
)
def test_registry_options_accept_only_registered_names(tmp_path, capsys, argv, kind, known):
    argv = [str(tmp_path / a) if a == "R" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Unknown {kind} 'nope'. Choose one of: ") and known in err
    assert not (tmp_path / "R").exists()


def test_registry_choices_are_listed_in_the_help(capsys):
    from dnnsafety.clustering import CLUSTERERS

    assert main(["analyze", "--help"]) == 0
    out = capsys.readouterr().out
    assert "[" + "|".join(CLUSTERERS.names()) + "]" in out
