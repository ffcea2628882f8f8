"""What a new user reads: copies clustered together end to end, cluster one-liners, log lines
that say what they mean, the cost and progress of ``compare``, and statistics only where the
runs support them."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnnsafety.cli.main import main
from dnnsafety.cli.summary import confusion_line, print_clusters
from dnnsafety.config import DataConfig
from dnnsafety.data.builtin import load_dataset
from dnnsafety.explain import describe_clusters

FAST = ["--epochs", "3", "--set", "train.batch_size=64"]
QUICK = ["--set", "retrain.epochs=1"]


# --------------------------------------------------------------------------- copies, end to end


@pytest.fixture(scope="module")
def with_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """An evaluated run on the digits images whose test split repeats 80 images 2-4 times.

    Returns the run and, per test image, the index of the image it copies.
    """
    ds = load_dataset(DataConfig(name="digits"), seed=0)
    test = ds["test"].images.numpy()
    rng = np.random.default_rng(0)
    copied = rng.choice(len(test), 80, replace=False)
    source = np.concatenate([np.arange(len(test)), np.repeat(copied, rng.integers(1, 4, 80))])
    path = tmp_path_factory.mktemp("copies") / "digits.npz"
    np.savez(
        path,
        x_train=ds["train"].images.numpy(),
        y_train=ds["train"].labels,
        x_val=ds["val"].images.numpy(),
        y_val=ds["val"].labels,
        x_test=test[source],
        y_test=ds["test"].labels[source],
    )
    run = path.parent / "run"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "npz", "--data-path", str(path)]
    assert main([*argv, *FAST]) == 0
    return run, source


def _split_copies(run: Path, source: np.ndarray) -> list[int]:
    """Copied test images whose error copies got more than one cluster (noise included)."""
    table = pd.read_parquet(run / "samples.parquet")
    test = table[table["split"] == "test"].reset_index(drop=True)
    errors = test[test["correct"] == False]  # noqa: E712
    assert len(errors) > 50
    split = []
    for image, group in errors.groupby(source[errors.index.to_numpy()]):
        if len(group) > 1 and group["cluster"].nunique(dropna=False) > 1:
            split.append(int(image))
    return split


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--layers", "features.6,classifier.4"],
        ["--features", "pixels", "--reduce", "umap", "--cluster", "dbscan"],
        # split the copies of one image before copies were clustered once
        ["--features", "pixels", "--reduce", "umap", "--cluster", "hdbscan"],
    ],
    ids=["hudd", "umap-dbscan", "umap-hdbscan"],
)
def test_copied_test_images_share_their_cluster(
    with_copies: tuple[Path, np.ndarray], tmp_path: Path, argv: list[str]
) -> None:
    base, source = with_copies
    run = tmp_path / "run"
    shutil.copytree(base, run)
    assert main(["--quiet", "analyze", str(run), *argv]) == 0
    assert _split_copies(run, source) == []


# --------------------------------------------------------------------------- cluster one-liners


def _errors(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [f"e{i}" for i in range(len(pairs))],
            "label": [t for t, _ in pairs],
            "pred": [p for _, p in pairs],
            "scenario": "nominal",
        }
    )


CLASSES = ["coat", "shirt", "sandal", "dress", "bag", "sneaker"]
# true labels: mostly coat (4 of 8); predictions: mostly bag (4 of 8); but no coat -> bag
PAIRS = [(0, 1), (0, 1), (0, 1), (0, 2), (3, 4), (3, 4), (5, 4), (5, 4)]


def test_the_most_common_pair_is_one_members_actually_have() -> None:
    errors = _errors(PAIRS)
    labels = np.zeros(len(PAIRS), dtype=np.int64)
    d = np.ones((8, 8)) - np.eye(8)
    cluster = describe_clusters(labels, d, errors, CLASSES)[0]
    assert cluster["true_labels"]["coat"] == 4 and cluster["predicted_labels"]["bag"] == 4
    top = cluster["confusions"][0]
    assert (top["true"], top["predicted"], top["count"]) == ("coat", "shirt", 3)
    assert top["share"] == pytest.approx(3 / 8)
    # ties: lower true class first (dress -> bag before sneaker -> bag)
    assert [(c["true"], c["predicted"]) for c in cluster["confusions"][1:3]] == [
        ("dress", "bag"),
        ("sneaker", "bag"),
    ]
    assert not any(c["true"] == "coat" and c["predicted"] == "bag" for c in cluster["confusions"])
    assert confusion_line(cluster) == "most common: coat -> shirt (3 of 8, 38%)"


def test_cli_prints_the_most_common_pair(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    errors = _errors(PAIRS)
    d = np.ones((8, 8)) - np.eye(8)
    clusters = describe_clusters(np.zeros(8, dtype=np.int64), d, errors, CLASSES)
    single = describe_clusters(np.zeros(1, dtype=np.int64), np.zeros((1, 1)), errors[:1], CLASSES)
    single[0]["id"] = 1
    data = {"method": "hudd", "split": "test", "layer": "features.6", "n_errors": 9}
    data |= {"settings": {"ruleset": "default"}, "clusters": clusters + single}
    (tmp_path / "clusters.json").write_text(json.dumps(data))
    print_clusters(tmp_path)
    out = capsys.readouterr().out
    assert "most common: coat -> shirt (3 of 8, 38%)" in out
    assert "coat -> bag" not in out and "mostly" not in out
    assert "    1 error  (" in out  # singular


def test_clusters_json_without_pairs_shows_the_two_modes_apart() -> None:
    old = {"size": 8, "true_labels": {"coat": 4, "dress": 2}, "predicted_labels": {"bag": 6}}
    assert confusion_line(old) == "true mostly coat (67%), predicted mostly bag (100%)"


# --------------------------------------------------------------------------- log lines


def test_selected_layer_is_named_with_its_position(caplog: pytest.LogCaptureFixture) -> None:
    from dnnsafety.clustering import cluster_layer, select_layer

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(10, 6)) + 8 * c for c in range(3)])
    names = ["input", "features.0", "features.3", "features.6", "features.9", "classifier.1"]
    results = {}
    for i, name in enumerate(names):
        data = x if name == "features.9" else rng.normal(size=x.shape)
        results[name] = cluster_layer(data, layer=name, is_input=i == 0)
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        assert select_layer(results) == "features.9"
    assert (
        "selected layer 'features.9' (4th of 5 candidate layers) by the highest silhouette"
        in caplog.text
    )
    assert "out of" not in caplog.text


def test_closest_says_where_its_images_went(caplog: pytest.LogCaptureFixture) -> None:
    from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView

    rng = np.random.default_rng(0)
    errors = np.concatenate([rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) + 10])
    labels = np.repeat([0, 1], 6)
    pool = np.concatenate([rng.normal(size=(30, 4)), rng.normal(size=(3, 4)) + 10])
    view = PoolView(np.array([f"p{i}" for i in range(33)]), np.full((33, 2), 0.5), features=pool)
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        SELECTORS.get("closest")().select(view, 12, clusters=ClusterSpace(errors, labels))
    assert "ranks" not in caplog.text
    # cluster 1 wants 6 images but only 3 pool images are near it: 3 come from cluster 0's side
    assert "selected 12 pool images for 2 clusters" in caplog.text
    assert "3 went to a farther cluster because the quotas of nearer ones were full" in caplog.text


def test_clusterer_log_line_says_why(caplog: pytest.LogCaptureFixture) -> None:
    from dnnsafety.clustering import CLUSTERERS

    x = np.repeat(np.eye(3) * 5, 4, axis=0)[:10]
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        CLUSTERERS.get("kmeans")().fit(np.concatenate([x, x[:1] + 0.1]))
    assert "kmeans: 11 inputs (4 distinct) -> 3 clusters, 0 noise points" in caplog.text
    assert "(silhouette)" not in caplog.text


# --------------------------------------------------------------------------- compare


def test_compare_cost_is_stated_with_a_time_estimate(tmp_path: Path) -> None:
    from dnnsafety.cli.compare import cost_lines

    history = [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 4.0}]
    (tmp_path / "training.json").write_text(json.dumps({"history": history}))
    names = ["closest", "random", "entropy", "deepgini"]
    lines = cost_lines(tmp_path, names, 5, 5)
    assert "= 25 fine-tunes of 5 epoch(s)" in lines[0]
    assert "about 6 min (25 x 5 epochs x 3.0s per epoch" in lines[1]  # 375 s
    assert "--seeds 2" in lines[2] and "--strategies closest,random" in lines[2]
    assert "--set retrain.epochs=2" in lines[2]
    # without training.json (a model trained elsewhere) there is no estimate
    assert not any("Estimated" in line for line in cost_lines(tmp_path / "x", names, 5, 5))
    # nothing left to cut: no advice
    assert len(cost_lines(tmp_path, ["closest"], 1, 1)) == 2


def test_progress_lines_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dnnsafety import progress

    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "_ENABLED", False)
    monkeypatch.setattr(progress, "_LOG_LINES", True)
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        for _ in progress.track(range(20), total=20, desc="LRP heatmaps", unit="img"):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "LRP heatmaps: 2/20 img (10%)"
    assert len(lines) == 11 and lines[-1].startswith("LRP heatmaps: 20/20 img (100%), done in")
    caplog.clear()
    monkeypatch.setattr(progress, "_LOG_LINES", False)  # library use: silent
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        list(progress.track(range(20), total=20, desc="LRP heatmaps"))
    assert caplog.records == []


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cmp") / "base"
    assert main(["--quiet", "evaluate", str(run), "--dataset", "digits", *FAST]) == 0
    return run


@pytest.mark.slow
def test_compare_with_one_seed_states_cost_progress_and_no_statistics(
    evaluated: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(evaluated, run)
    argv = ["compare", str(run), "--strategies", "random,entropy", "--budget", "20"]
    assert main([*argv, "--seeds", "1", *QUICK]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith(
        "compare: 2 strategies (random, entropy) + the no-new-labels control, 1 seed(s) each "
        "= 3 fine-tunes of 1 epoch(s)"
    )
    assert "Estimated time: about" in out
    log = (run / "run.log").read_text()
    for step in ("1/3 (random, seed 0)", "2/3 (entropy, seed 0)", "3/3 (no new labels, seed 0)"):
        assert f"fine-tune {step}: training on train + " in log
    assert "fine-tune 3/3 (no new labels, seed 0)" in captured.err  # progress on stderr too
    assert "one run per strategy" in out and "±" not in out
    assert "need at least 2 runs per strategy" in out
    page = (run / "report.html").read_text()
    assert "Pairwise effect sizes" not in page and not re.search(r'class="[^"]*\bbest\b', page)
    assert "retrained once" in page and "need at least 2 runs per strategy" in page
    # the same comparison with two seeds shows them
    assert main([*argv, "--seeds", "2", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "mean ± half the 95% CI over 2 runs" in out and "need at least" not in out
    assert "fine-tune 1/6 (random, seed 0): reused" in (run / "run.log").read_text()
    page = (run / "report.html").read_text()
    assert "Pairwise effect sizes" in page and "need at least" not in page
