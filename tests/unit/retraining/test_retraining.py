"""Selection, the labelling workflow, retraining and the strategy comparison (CLI level)."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pandas as pd
import pytest

from dnnsafety.cli.main import main
from dnnsafety.config import load_config
from dnnsafety.data.builtin import load_dataset
from dnnsafety.data.dataset import reveal_labels

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]
QUICK = ["--set", "retrain.epochs=1"]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    run = tmp_path_factory.mktemp("rt") / "base"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    argv = ["--quiet", "analyze", str(run), "--features", "pixels", "--reduce", "pca"]
    assert main([*argv, "--cluster", "kmeans"]) == 0
    return run


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _pool_labels(run, ids):
    cfg = load_config(run / "config.toml")
    pool = load_dataset(cfg.data, cfg.seed)["pool"]
    return reveal_labels(pool, ids)


def test_compare_writes_the_documented_shape_and_resumes(analysed, tmp_path, capsys):
    run = _copy(analysed, tmp_path / "run")
    argv = ["--quiet", "compare", str(run), "--strategies", "closest,random,entropy"]
    assert main([*argv, "--budget", "20", "--seeds", "2", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "closest" in out and "A12" in out
    data = json.loads((run / "comparison.json").read_text())
    assert data["budget"] == 20 and len(data["seeds"]) == 2
    assert set(data["original"]) >= {"overall", "per_scenario", "per_cluster", "rare"}
    assert set(data["scenarios"]) == set(data["original"]["per_scenario"])
    for name in ("closest", "random", "entropy"):
        entry = data["strategies"][name]
        assert entry["cost"] == 20 and entry["bag_size"] == data["bag_size"] >= 20
        assert len(entry["runs"]) == 2
        for r in entry["runs"]:
            assert 0 <= r["overall"] <= 1
            assert set(r["per_scenario"]) == set(data["scenarios"])
            assert set(r["per_cluster"]) == set(data["original"]["per_cluster"])
        assert entry["summary"]["overall"]["low"] <= entry["summary"]["overall"]["mean"]
        assert set(entry["versus"]) == {"closest", "random", "entropy"} - {name}
    # the no-new-data control: same fine-tuning, same seeds, no labels spent
    assert data["control"]["cost"] == 0 and len(data["control"]["runs"]) == 2
    # original model: every analysed error is wrong, so accuracy per cluster is 0
    assert all(v == 0 for v in data["original"]["per_cluster"].values())
    table = pd.read_parquet(run / "samples.parquet")
    for name in ("closest", "random", "entropy"):
        col = table[f"selected.{name}"]
        assert col.notna().sum() == 20
        assert (table.loc[col.notna(), "split"] == "pool").all()
    # a rerun reuses every finished retraining run
    assert main([*argv, "--budget", "20", "--seeds", "2", *QUICK]) == 0
    assert (run / "run.log").read_text().count("reused") >= 8


def test_mispredicted_pays_for_every_label_it_draws(analysed, tmp_path):
    run = _copy(analysed, tmp_path / "run")
    argv = ["--quiet", "compare", str(run), "--strategies", "mispredicted,random"]
    assert main([*argv, "--budget", "10", "--seeds", "1", *QUICK]) == 0
    data = json.loads((run / "comparison.json").read_text())
    assert data["strategies"]["mispredicted"]["cost"] > 10
    assert data["strategies"]["random"]["cost"] == 10


def test_select_then_retrain_with_a_filled_in_csv(analysed, tmp_path, capsys):
    run = _copy(analysed, tmp_path / "run")
    assert main(["--quiet", "select", str(run), "--strategy", "closest", "--budget", "12"]) == 0
    folder = run / "selection" / "closest"
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    assert len(rows) == 12 and all(r["label"] == "" for r in rows)
    assert len(list((folder / "images").glob("*.png"))) == 12
    selection = json.loads((folder / "selection.json").read_text())
    assert len(selection["cluster"]) == 12
    truth = _pool_labels(run, [r["sample_id"] for r in rows])

    def write(path, items):
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sample_id", "label"])
            w.writerows(items)

    bad = tmp_path / "bad.csv"
    items = [[r["sample_id"], truth[r["sample_id"]]] for r in rows]
    write(bad, [*items[:-2], [items[-2][0], ""], items[0], ["pool-nope", 1], [items[-1][0], 99]])
    assert main(["retrain", str(run), "--strategy", "closest", "--labels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "row 12: missing label" in err
    assert "row 13: duplicate sample_id" in err
    assert "row 14: unknown sample_id 'pool-nope'" in err
    assert "row 15: label '99'" in err

    good = tmp_path / "good.csv"
    cfg = load_config(run / "config.toml")
    names = load_dataset(cfg.data, cfg.seed).class_names
    write(good, [[sid, names[y]] if i % 2 else [sid, y] for i, (sid, y) in enumerate(items)])
    argv = ["retrain", str(run), "--strategy", "closest", "--labels", str(good), *QUICK]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "before -> after" in out
    result = json.loads((run / "retrained" / "closest" / "result.json").read_text())
    assert result["labelled"] == 12 and len(result["runs"]) == 1
    assert (run / "retrained" / "closest" / "model.pt").exists()


def test_selection_errors_are_clear(analysed, tmp_path, capsys):
    run = _copy(analysed, tmp_path / "run")
    assert main(["select", str(run), "--strategy", "random", "--budget", "0"]) == 2
    assert "budget" in capsys.readouterr().err
    assert main(["select", str(run), "--strategy", "random", "--budget", "100000000"]) == 2
    capsys.readouterr()
    assert main(["retrain", str(run), "--strategy", "random", "--labels", "x.csv"]) == 2
    assert "dnnsafety select" in capsys.readouterr().err


def test_contrastive_closest_selects_in_both_analysis_spaces(analysed, tmp_path, capsys):
    """closest-contrast compares with correctly classified test inputs: their features are
    computed (and cached) in the black-box space, their heatmaps in the white-box one."""
    run = _copy(analysed, tmp_path / "run")
    argv = ["--quiet", "select", str(run), "--strategy", "closest-contrast", "--budget", "12"]
    assert main(argv) == 0
    selection = json.loads((run / "selection" / "closest-contrast" / "selection.json").read_text())
    assert len(selection["ids"]) == 12 and len(selection["cluster"]) == 12
    assert selection["info"]["params"]["distance"] == "contrastive"
    samples = pd.read_parquet(run / "samples.parquet")
    test = samples[samples["split"] == "test"]
    assert selection["info"]["n_correct_reference"] == min(2000, int(test["correct"].sum()))
    assert "closest-contrast" in capsys.readouterr().out

    hudd = _copy(analysed, tmp_path / "hudd")
    assert main(["--quiet", "analyze", str(hudd), "--features", "hudd"]) == 0
    assert (
        main(["--quiet", "select", str(hudd), "--strategy", "closest-contrast", "--budget", "8"])
        == 0
    )
    assert list((hudd / "analysis" / "correct_heatmaps").iterdir())
    chosen = json.loads((hudd / "selection" / "closest-contrast" / "selection.json").read_text())
    assert len(chosen["ids"]) == 8 and chosen["info"]["params"]["distance"] == "contrastive"
    assert chosen["info"]["n_correct_reference"] == selection["info"]["n_correct_reference"]


def test_baseline_runs_are_shared_across_balance_and_bags_can_be_enlarged(analysed, tmp_path):
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.pipeline.retrain import compare
    from dnnsafety.runs import RunDir

    run = _copy(analysed, tmp_path / "run")
    argv = ["--quiet", "compare", str(run), "--strategies", "random", "--budget", "10"]
    assert main([*argv, "--seeds", "1", *QUICK]) == 0

    def reused() -> int:
        log = (run / "run.log").read_text()
        return len(re.findall(r"fine-tune \d+/\d+ \([^)]*, seed \d+\): reused", log))

    assert reused() == 0
    # balancing only concerns selections with clusters: random and the control are reused
    assert main([*argv, "--seeds", "1", *QUICK, "--set", "retrain.balance=false"]) == 0
    assert reused() == 2
    # a run saved under the name used before the key was part of it is still found ...
    runs = run / "retraining" / "runs"
    (keyed,) = runs.glob("random_0_*.json")
    keyed.rename(runs / "random_0.json")
    assert main([*argv, "--seeds", "1", *QUICK]) == 0
    assert reused() == 4 and not list(runs.glob("random_0_*.json"))
    # ... but only when its key matches
    legacy = json.loads((runs / "random_0.json").read_text())
    (runs / "random_0.json").write_text(json.dumps({**legacy, "key": "stale"}))
    assert main([*argv, "--seeds", "1", *QUICK]) == 0
    assert reused() == 5 and len(list(runs.glob("random_0_*.json"))) == 1
    config = load_config(run / "config.toml")
    config.retrain.epochs = 1
    data = compare(Pipeline(RunDir(run), config), ["random"], 10, 1, bag_size=25)
    assert data["bag_size"] == 25 == data["strategies"]["random"]["bag_size"]
