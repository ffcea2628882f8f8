"""A user's own data, right the first time: folders without val/, unknown scenarios,
labels files, and the CLI options a new user gets wrong."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dnnsafety.pipeline.run as pipeline_mod
from dnnsafety.cli.main import main
from dnnsafety.cli.summary import print_comparison
from dnnsafety.config import DataConfig
from dnnsafety.data.builtin import load_dataset
from dnnsafety.data.dataset import NOMINAL, UNKNOWN_SCENARIO, make_split
from dnnsafety.data.holdout import hold_out_validation, validation_quotas
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.report import render_report
from dnnsafety.retraining.finetune import score_predictions
from dnnsafety.retraining.labels import MAX_LABELS_BYTES, read_labels


def make_folder(root: Path, n_train: int = 20, n_test: int = 6, n_pool: int = 0) -> Path:
    """Two classes of 8x8 greyscale images told apart by brightness; no val/ folder."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test), ("pool", n_pool)):
        if not n:
            continue
        for cls, base in (("dark", 40), ("light", 200)):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(base + rng.integers(-30, 30, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return root


# --------------------------------------------------------------------------------------------
# no val/: a validation split is held out of train
# --------------------------------------------------------------------------------------------


def test_validation_quotas_are_stratified_and_keep_a_training_image_per_class() -> None:
    # 10% of 16 = 1.6 -> 2 images: one from the big class (floor 1.0), one by largest
    # remainder (0.5 beats 0.1)
    assert validation_quotas(np.array([10, 5, 1]), 0.1).tolist() == [1, 1, 0]
    assert validation_quotas(np.array([100, 50]), 0.1).tolist() == [10, 5]
    assert validation_quotas(np.array([3, 3]), 0.5).tolist() == [2, 1]
    # a class with one image keeps it; nothing to hold out at all
    assert validation_quotas(np.array([1, 1]), 0.5).tolist() == [0, 0]
    assert validation_quotas(np.array([10, 10]), 0.0).tolist() == [0, 0]


def test_folder_without_val_gets_a_deterministic_disjoint_stratified_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(tmp_path / "data")
    cfg = DataConfig(name="folder", path=str(root))
    with caplog.at_level("INFO", logger="dnnsafety"):
        a = load_dataset(cfg, seed=0)
    assert "holding out 4 of 40 training images (10%" in caplog.text
    b = load_dataset(cfg, seed=0)
    train, val = a["train"], a["val"]
    assert len(val) == 4 and len(train) == 36
    assert sorted(val.ids.tolist()) == sorted(b["val"].ids.tolist())  # deterministic
    assert not set(val.ids.tolist()) & set(train.ids.tolist())  # disjoint
    assert len(set(val.ids.tolist()) | set(train.ids.tolist())) == 40  # nothing lost
    assert np.bincount(val.labels, minlength=2).tolist() == [2, 2]  # stratified
    assert list(a.splits) == ["train", "val", "test"]
    other = load_dataset(cfg, seed=1)
    assert sorted(other["val"].ids.tolist()) != sorted(val.ids.tolist())
    quarter = load_dataset(DataConfig(name="folder", path=str(root), val_fraction=0.25))
    assert len(quarter["val"]) == 10
    none = load_dataset(DataConfig(name="folder", path=str(root), val_fraction=0.0))
    assert "val" not in none.splits and len(none["train"]) == 40


def test_existing_val_split_is_kept(digits) -> None:  # type: ignore[no-untyped-def]
    assert hold_out_validation(digits, 0.5, seed=0) is digits


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2])
def test_bad_val_fraction_is_refused_before_loading(tmp_path: Path, bad: float) -> None:
    cfg = DataConfig(name="folder", path=str(tmp_path / "does-not-exist"), val_fraction=bad)
    with pytest.raises(ConfigError, match="val_fraction"):
        load_dataset(cfg)


def test_train_on_a_folder_without_val(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--dataset", "folder", "--data-path", str(root)]
    assert main(["--quiet", *args, "--epochs", "2"]) == 0
    history = json.loads((run / "training.json").read_text())["history"]
    assert len(history) == 2 and all(h["val_acc"] is not None for h in history)
    summary = json.loads((run / "dataset.json").read_text())
    assert summary["train"]["n"] == 36 and summary["val"]["n"] == 4
    assert "holding out 4 of 40 training images" in (run / "run.log").read_text()


# --------------------------------------------------------------------------------------------
# scenarios: "unknown" when the data has none, and then not shown
# --------------------------------------------------------------------------------------------


def test_builtin_datasets_keep_their_scenario_tags(digits) -> None:  # type: ignore[no-untyped-def]
    tags = set(digits["test"].scenarios.tolist())
    assert NOMINAL in tags and len(tags) > 1 and UNKNOWN_SCENARIO not in tags


def test_folder_without_scenarios_shows_no_scenario_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    args = ["evaluate", str(run), "--dataset", "folder", "--data-path", str(root)]
    assert main(["--quiet", *args, "--epochs", "1"]) == 0
    out = capsys.readouterr().out.replace(str(tmp_path), "TMP")  # the path names "scenarios"
    assert "nominal" not in out and "unknown" not in out and "scenario" not in out
    assert "Test accuracy (" in out and "12 images, accuracy" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(part["per_scenario"] == {} for part in metrics["splits"].values())
    summary = json.loads((run / "dataset.json").read_text())
    assert summary["test"]["scenarios"] == {} and summary["train"]["scenarios"] == {}
    samples = pd.read_parquet(run / "samples.parquet")
    assert set(samples["scenario"]) == {UNKNOWN_SCENARIO}
    page = render_report(run).read_text(encoding="utf-8")
    assert "Per scenario" not in page and "nominal" not in page


def _cluster_run(run: Path, scenarios: dict[str, int]) -> Path:
    """A run folder with metrics and one cluster of 5 errors with these scenario counts."""
    run.mkdir(parents=True)
    split = {"n": 10, "accuracy": 0.5, "errors": 5, "per_scenario": {}, "per_class": {}}
    metrics = {"class_names": ["a", "b"], "splits": {"test": split}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    members = [f"test/a/{i}.png" for i in range(5)]
    cluster = {
        "id": 0,
        "size": 5,
        "share_of_errors": 1.0,
        "members": members,
        "true_labels": {"a": 5},
        "predicted_labels": {"b": 5},
        "scenarios": scenarios,
    }
    clusters = {"split": "test", "n_errors": 5, "layer": "fc", "clusters": [cluster]}
    (run / "clusters.json").write_text(json.dumps(clusters))
    samples = {"sample_id": members, "split": "test", "label": 0, "pred": 1, "scenario": "x"}
    pd.DataFrame(samples).to_parquet(run / "samples.parquet", index=False)
    return run


def test_report_hides_unknown_cluster_scenarios(tmp_path: Path) -> None:
    page = render_report(_cluster_run(tmp_path / "unknown", {UNKNOWN_SCENARIO: 5}))
    assert "<dt>scenario</dt>" not in page.read_text(encoding="utf-8")
    page = render_report(_cluster_run(tmp_path / "fog", {"fog": 5}))
    assert "<dt>scenario</dt>" in page.read_text(encoding="utf-8")


def test_retraining_scores_leave_unknown_scenarios_out() -> None:
    images = np.zeros((4, 4, 4), dtype=np.uint8)
    correct = np.array([True, False, True, True])
    unknown = make_split("test", list("abcd"), images, [0, 1, 0, 1])
    score = score_predictions(correct, unknown, None)
    assert score.per_scenario == {}
    assert np.isnan(score.rare)  # no rare scenario is known: not "everything is rare"
    mixed = make_split(
        "test", list("abcd"), images, [0, 1, 0, 1], [NOMINAL, "fog", UNKNOWN_SCENARIO, "fog"]
    )
    score = score_predictions(correct, mixed, None)
    assert score.rare == pytest.approx(0.5)  # the two fog images only


def test_comparison_summary_without_scenarios_has_no_rare_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ci = {"mean": 0.5, "low": 0.4, "high": 0.6}
    nan = {"mean": None, "low": None, "high": None}
    entry = {
        "cost": 3,
        "summary": {"overall": ci, "rare": nan, "per_scenario": {}},
        "versus": {},
    }
    data = {
        "scenarios": [],
        "seeds": [0],
        "budget": 3,
        "bag_size": 3,
        "original": {"overall": 0.4, "rare": None, "per_scenario": {}},
        "strategies": {"random": entry},
    }
    (tmp_path / "comparison.json").write_text(json.dumps(data))
    print_comparison(tmp_path)
    out = capsys.readouterr().out
    assert "rare" not in out and "overall" in out and "50.0%" in out


# --------------------------------------------------------------------------------------------
# labels.csv: streamed, capped, checked before the dataset is loaded
# --------------------------------------------------------------------------------------------

CLASSES = ("cat", "dog")


def test_read_labels_accepts_names_and_indices(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("\ufeffsample_id,label,note\na,dog,x\n\nb,0,y\n", encoding="utf-8")
    assert read_labels(path, ["a", "b"], CLASSES, max_rows=10) == {"a": 1, "b": 0}


def test_read_labels_names_every_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("sample_id,label\na,dog\na,cat\nzz,cat\nb,\nc,horse\nd,1,extra\n")
    with pytest.raises(InvalidInputError) as err:
        read_labels(path, ["a", "b", "c", "d", "e"], CLASSES)
    text = str(err.value)
    assert "6 problem(s)" in text
    for part in (
        "row 3: duplicate sample_id 'a' (first in row 2)",
        "row 4: unknown sample_id 'zz'",
        "row 5: missing label for 'b'",
        "row 6: label 'horse'",
        "row 7: more fields than the header",
        "2 selected id(s) missing from the file: d, e",
    ):
        assert part in text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"id,lbl\na,cat\n", "needs the columns sample_id,label; found id, lbl"),
        (b"", "needs the columns sample_id,label; found none"),
        (b"sample_id,label\na,\xff\xfe\n", "not UTF-8"),
        (b"sample_id,label\na," + b"x" * 200_000 + b"\n", "row 2: not valid CSV"),
    ],
)
def test_read_labels_bad_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=match):
        read_labels(path, ["a"], CLASSES)


def test_read_labels_refuses_oversized_files_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_labels(tmp_path / "nope.csv", ["a"], CLASSES)
    path = tmp_path / "labels.csv"
    with open(path, "wb") as fh:  # a sparse 65 MiB file: nothing to read, just too big
        fh.truncate(MAX_LABELS_BYTES + 2**20)
    with pytest.raises(InvalidInputError, match=r"65 MiB, more than a labels file can be"):
        read_labels(path, ["a"], CLASSES)
    path.write_text("sample_id,label\n" + "".join(f"x{i},cat\n" for i in range(11)))
    with pytest.raises(InvalidInputError, match="more than 10 data rows, more than the pool"):
        read_labels(path, ["a"], CLASSES, max_rows=10)


def test_read_labels_streams_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    rows = "".join(f"train/cls/image_{i:07d}.png,cat\n" for i in range(100_000))
    path.write_text("sample_id,label\n" + rows)  # 3.4 MB of ids that were not selected
    del rows
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="100001 problem"):
            read_labels(path, ["a"], CLASSES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # read row by row: not the file (3.4 MB), nor a copy of it


def test_bad_labels_file_fails_before_the_dataset_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    fast = ["--dataset", "digits", "--epochs", "1", "--set", "train.batch_size=64"]
    assert main(["--quiet", "evaluate", str(run), *fast]) == 0
    assert main(["--quiet", "select", str(run), "--strategy", "random", "--budget", "5"]) == 0
    capsys.readouterr()
    labels = run / "selection" / "random" / "labels.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([lines[0], lines[1] + "seven", *lines[2:]]) + "\n")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset was loaded before the labels were checked")

    monkeypatch.setattr(pipeline_mod, "load_dataset", no_loading)
    code = main(["--quiet", "retrain", str(run), "--strategy", "random", "--labels", str(labels)])
    assert code == 2
    err = capsys.readouterr().err
    assert "row 2: label 'seven'" in err and "5 selected" not in err


# --------------------------------------------------------------------------------------------
# numeric options: 0 or a negative number is an error, never "the default"
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["compare", "RUN", "--seeds", "0"], "--seeds"),
        (["compare", "RUN", "--budget", "0"], "--budget"),
        (["select", "RUN", "--budget", "-5"], "--budget"),
        (["select", "RUN", "--seed", "-1"], "--seed"),
        (["retrain", "RUN", "--labels", "labels.csv", "--seeds", "0"], "--seeds"),
        (["train", "--out", "RUN", "--epochs", "0"], "--epochs"),
        (["train", "--out", "RUN", "--image-size", "0"], "--image-size"),
        (["evaluate", "RUN", "--seed", "-3"], "--seed"),
        (["demo", "--out", "RUN", "--seed", "-1"], "--seed"),
    ],
)
def test_zero_or_negative_numbers_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    run = tmp_path / "run"
    argv = [str(run) if a == "RUN" else a for a in args]
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert f"Invalid value for '{option}'" in err and "is not in the range" in err
    assert not run.exists()  # refused before anything ran


def test_compare_with_zero_seeds_is_an_error_not_the_default(tmp_path: Path) -> None:
    from dnnsafety.config import RunConfig
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.pipeline.retrain import compare
    from dnnsafety.runs import RunDir

    pipe = Pipeline(RunDir(tmp_path / "run"), RunConfig())
    for bad in (0, -1):
        # refused at once: before the model (not trained here) or the data is touched
        with pytest.raises(ConfigError, match="'seeds' parameter must be an int >= 1"):
            compare(pipe, ["random"], seeds=bad)


@pytest.mark.parametrize(
    ("change", "seed", "match"),
    [
        ({"image_size": -8}, 0, "data.image_size must be >= 0"),
        ({"channels": 2}, 0, "data.channels must be 1"),
        ({}, -1, "seed must be an int >= 0"),
    ],
)
def test_bad_data_settings_fail_before_loading(
    change: dict[str, int], seed: int, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_dataset(DataConfig(name="signs", **change), seed=seed)  # type: ignore[arg-type]
