from __future__ import annotations

import pandas as pd
import pytest

from dnnsafety.runs import RunDir, atomic_path, fingerprint, write_text


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half-wri")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_stage_is_done_only_with_same_key_and_existing_outputs(tmp_path):
    run = RunDir(tmp_path / "run")
    key = fingerprint({"a": 1})
    assert not run.is_done("s", key, ["x.txt"])
    write_text(run / "x.txt", "result")
    run.mark_done("s", key, ["x.txt"])
    assert run.is_done("s", key, ["x.txt"])
    assert not run.is_done("s", fingerprint({"a": 2}), ["x.txt"])
    (run / "x.txt").unlink()
    assert not run.is_done("s", key, ["x.txt"])


def test_corrupt_stage_file_means_recompute(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "stages.json").write_text("{not json")
    assert run.stage_key("train") is None


def test_add_columns_aligns_on_sample_id(tmp_path):
    run = RunDir(tmp_path)
    run.write_samples(pd.DataFrame({"sample_id": ["a", "b", "c"], "split": ["test"] * 3}))
    run.add_columns(pd.DataFrame({"cluster": [2, 1]}, index=["c", "a"]))
    table = run.read_samples()
    assert table["cluster"].tolist()[0] == 1 and table["cluster"].tolist()[2] == 2
    assert pd.isna(table["cluster"].tolist()[1])
