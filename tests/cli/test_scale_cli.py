"""``select --pool-store`` and ``datasets --write-pool``: the CLI of the chunked pool path."""

from __future__ import annotations

import json

import pytest

from dnnsafety.cli.main import main
from dnnsafety.config import DataConfig
from dnnsafety.data.builtin import load_dataset
from dnnsafety.data.dataset import reveal_labels
from dnnsafety.data.pool import PoolStoreWriter, open_pool_store

FAST = ["--dataset", "digits", "--epochs", "2", "--set", "train.batch_size=64"]


def _ids(run, strategy):
    return json.loads((run / "selection" / strategy / "selection.json").read_text())


@pytest.mark.slow
def test_select_from_a_store_of_the_runs_pool_picks_what_select_picks(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--out", str(run), *FAST]) == 0
    pool = load_dataset(DataConfig(name="digits"), seed=0)["pool"]
    writer = PoolStoreWriter(
        tmp_path / "pool.zarr", len(pool), pool.image_shape, dtype="float32", chunk_rows=64
    )
    writer.write(0, pool.images, pool.ids.astype(str))
    writer.finish()
    for strategy in ("closest", "entropy"):
        args = ["--quiet", "select", str(run), "--strategy", strategy, "--budget", "20"]
        assert main(args) == 0
        expected = _ids(run, strategy)
        scale = ["--pool-store", str(tmp_path / "pool.zarr"), "--set", "compute.chunk_size=128"]
        assert main([*args, *scale, "--scheduler", "threads"]) == 0
        got = _ids(run, strategy)
        assert got["ids"] == expected["ids"], strategy
        assert got["scheduler"] == "threads" and got["pool"].endswith("pool.zarr")
        images = sorted(p.stem for p in (run / "selection" / strategy / "images").iterdir())
        assert len(images) == 20
    assert "Label the selected images" in capsys.readouterr().out


def test_datasets_writes_a_simulated_pool_store(tmp_path, capsys):
    out = tmp_path / "p.zarr"
    argv = ["datasets", "--write-pool", "signs", "--n", "70", "--out", str(out)]
    assert main([*argv, "--chunk-rows", "32", "--image-size", "16"]) == 0
    store = open_pool_store(out)
    assert len(store) == 70 and store.images.shape == (70, 3, 16, 16)
    assert "Wrote 70 images" in capsys.readouterr().out
    assert main(argv) == 2  # exists: one clear line, no traceback
    assert "exists" in capsys.readouterr().err
    assert main(["datasets", "--write-pool", "signs"]) == 2


@pytest.mark.slow
def test_retrain_takes_the_labelled_images_from_the_store_they_were_selected_from(tmp_path):
    run = tmp_path / "run"
    assert main(["--quiet", "train", "--out", str(run), *FAST]) == 0
    pool = load_dataset(DataConfig(name="digits"), seed=0)["pool"]
    ids = [f"store-{i}" for i in range(len(pool))]  # ids the run's own pool does not have
    truth = dict(zip(ids, reveal_labels(pool, pool.ids.tolist()).values(), strict=True))
    writer = PoolStoreWriter(
        tmp_path / "pool.zarr", len(pool), pool.image_shape, dtype="float32", chunk_rows=64
    )
    writer.write(0, pool.images, ids)
    writer.finish()
    scale = ["--pool-store", str(tmp_path / "pool.zarr")]
    assert (
        main(["--quiet", "select", str(run), "--strategy", "entropy", "--budget", "12", *scale])
        == 0
    )
    chosen = _ids(run, "entropy")["ids"]
    labels = tmp_path / "labels.csv"
    labels.write_text("sample_id,label\n" + "".join(f"{s},{truth[s]}\n" for s in chosen))
    args = ["--quiet", "retrain", str(run), "--strategy", "entropy", "--labels", str(labels)]
    assert main(args) == 0
    result = json.loads((run / "retrained" / "entropy" / "result.json").read_text())
    assert result["labelled"] == 12 and result["runs"][0]["bag_size"] >= 12

    (tmp_path / "pool.zarr").rename(tmp_path / "moved.zarr")
    assert main(args) == 2  # the store is gone: one clear line
