"""``dnnsafety detect``: columns, detection.json, the saved detector, deployment and errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dnnsafety.cli.main import main

FAST = ["--dataset", "digits", "--epochs", "2", "--set", "train.batch_size=64"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run = tmp_path_factory.mktemp("detect") / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    return run


@pytest.mark.slow
def test_detect_before_evaluate_says_what_to_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--out", str(run), *FAST]) == 0
    assert main(["--quiet", "detect", str(run)]) == 2
    assert "dnnsafety evaluate" in capsys.readouterr().err


def test_unknown_detector_lists_the_names(evaluated, capsys):
    assert main(["--quiet", "detect", str(evaluated), "--detector", "nope"]) != 0
    err = capsys.readouterr().err
    assert "knn" in err and "mahalanobis" in err


@pytest.mark.slow
def test_detect_writes_columns_artifact_and_scores_a_folder(evaluated, tmp_path, capsys):
    assert main(["--quiet", "detect", str(evaluated), "--detector", "energy"]) == 0
    assert main(["--quiet", "detect", str(evaluated), "--detector", "knn"]) == 0
    table = pd.read_parquet(evaluated / "samples.parquet")
    for col in ("knn_score", "knn_p", "is_ood.knn", "energy_score"):
        assert col in table.columns
    assert table["knn_score"].notna().all()
    assert set(table.loc[table["is_ood.knn"], "split"]) <= {"train", "val", "test", "pool"}
    info = json.loads((evaluated / "detection.json").read_text())
    assert info["detector"] == "knn" and info["features"] == "activations"
    assert info["schema_version"] == 1 and 0.0 <= info["false_alarm"]["val_half"]["rate"] <= 0.3
    assert info["per_scenario"] and 0.0 <= info["misclassification"]["auroc"] <= 1.0
    assert (evaluated / "detection" / "knn.npz").is_file()
    assert (evaluated / "detection" / "knn_roc.png").is_file()
    assert main(["--quiet", "report", str(evaluated)]) == 0
    html = (evaluated / "report.html").read_text()
    assert "Out-of-distribution detection" in html and "Misclassification detection" in html

    folder = tmp_path / "new"
    folder.mkdir()
    test = table[table["split"] == "test"]
    rng = np.random.default_rng(0)
    shape = None
    for i in range(5):
        px = rng.integers(0, 255, size=(8, 8), dtype=np.uint8)
        Image.fromarray(px).save(folder / f"img{i}.png")
        shape = px.shape
    assert shape is not None and len(test)
    out = tmp_path / "preds.csv"
    assert (
        main(["--quiet", "detect", str(evaluated), "--data-path", str(folder), "--out", str(out)])
        == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and set(rows[0]) == {
        "path",
        "prediction",
        "confidence",
        "score",
        "p_value",
        "flag",
    }
    assert all(0.0 < float(r["p_value"]) <= 1.0 for r in rows)

    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(folder / "big.png")
    assert main(["--quiet", "detect", str(evaluated), "--data-path", str(folder)]) == 2
    assert "Resize" in capsys.readouterr().err


@pytest.mark.slow
def test_empty_validation_split_says_how_to_get_one(evaluated):
    from dnnsafety.cli.common import resolve_config
    from dnnsafety.data.dataset import Dataset
    from dnnsafety.exceptions import InvalidInputError
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.pipeline.detect import detect
    from dnnsafety.runs import RunDir

    pipe = Pipeline(RunDir(evaluated, create=False), resolve_config(evaluated, None))
    ds = pipe.dataset
    no_val = {k: v for k, v in ds.splits.items() if k != "val"}
    pipe.__dict__["dataset"] = Dataset(ds.name, ds.class_names, no_val)
    with pytest.raises(InvalidInputError, match="val_fraction"):
        detect(pipe, "msp")


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["local", "threads"])
def test_a_pool_store_is_scored_chunk_by_chunk_with_the_saved_detector(
    evaluated, tmp_path, scheduler
):
    from dnnsafety.config import load_config
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.runs import RunDir

    assert main(["--quiet", "detect", str(evaluated), "--detector", "knn"]) == 0
    run = RunDir(evaluated, create=False)
    test = Pipeline(run, load_config(evaluated / "config.toml")).dataset["test"]
    archive = tmp_path / "pool.npz"
    np.savez(archive, x_pool=test.images.numpy(), ids_pool=test.ids.astype(str))
    out = tmp_path / "scores.csv"
    args = ["--pool-store", str(archive), "--scheduler", scheduler, "--out", str(out)]
    assert main(["--quiet", "detect", str(evaluated), *args, "--set", "compute.chunk_size=50"]) == 0
    rows = pd.read_csv(out)
    columns = ["sample_id", "prediction", "confidence", "score", "p_value", "flag"]
    assert list(rows.columns) == columns
    table = pd.read_parquet(evaluated / "samples.parquet").set_index("sample_id")
    assert rows["sample_id"].astype(str).tolist() == test.ids.astype(str).tolist()
    expected = table.loc[rows["sample_id"].astype(str), "knn_p"].to_numpy()
    np.testing.assert_allclose(rows["p_value"], expected, atol=1e-6)
    np.testing.assert_allclose(
        rows["score"], table.loc[rows["sample_id"].astype(str), "knn_score"], rtol=1e-4
    )
    assert (rows["flag"] == (rows["p_value"] <= 0.05)).all()
