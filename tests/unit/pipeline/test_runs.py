from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import dnnsafety.runs as runs_mod
from dnnsafety.cli.main import main
from dnnsafety.exceptions import RunDirError
from dnnsafety.runs import RunDir, atomic_folder, atomic_path, fingerprint, write_text


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half-wri")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_folder_swaps_in_whole_or_keeps_the_old_one(tmp_path):
    target = tmp_path / "images"
    target.mkdir()
    (target / "old.png").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(target) as tmp:
        (tmp / "a.png").write_text("new")
        raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["old.png"]
    with atomic_folder(target) as tmp:
        (tmp / "a.png").write_text("new")
        (tmp / "b.png").write_text("new")
        assert sorted(p.name for p in target.iterdir()) == ["old.png"]  # not yet swapped
    assert sorted(p.name for p in target.iterdir()) == ["a.png", "b.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["images"]  # no temporary folder left


def test_atomic_folder_names_the_folder_when_the_write_is_refused(tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(runs_mod.os, "replace", refuse)
    with pytest.raises(RunDirError, match="Cannot write to"), atomic_folder(tmp_path / "x"):
        pass


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


# --------------------------------------------------------------------------------------------
# read-only run folders: one line naming the folder and the fix, not a traceback
# --------------------------------------------------------------------------------------------


def _deny_writes(monkeypatch, folder):
    """Make ``folder`` look read-only to the up-front check (tests may run as root, whom
    file permissions do not stop)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == Path(folder) and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(runs_mod.os, "access", access)


def test_read_only_run_folder_fails_up_front(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    _deny_writes(monkeypatch, run.path)
    with pytest.raises(RunDirError, match="Cannot write to") as err:
        RunDir(run.path)
    assert str(run.path) in str(err.value) and "chmod -R u+w" in str(err.value)
    with pytest.raises(RunDirError, match="Cannot write to"), run.logging_to_file():
        pass


def test_read_only_run_folder_is_one_cli_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _deny_writes(monkeypatch, run)
    assert main(["--quiet", "evaluate", str(run), "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: Cannot write to")
    assert str(run) in err and "Traceback" not in err
    assert not (run / "config.toml").exists()  # nothing was started


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_really_read_only_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o555)
    try:
        assert main(["--quiet", "evaluate", str(run), "--dataset", "digits"]) == 2
    finally:
        run.chmod(0o755)
    assert capsys.readouterr().err.startswith("error: Cannot write to")


def test_refused_writes_become_run_dir_errors(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(runs_mod.tempfile, "mkstemp", refuse)
        with pytest.raises(RunDirError, match="Permission denied") as err:
            write_text(tmp_path / "sub" / "x.txt", "data")
    assert str(tmp_path / "sub") in str(err.value) and "chmod" in str(err.value)
    with pytest.raises(RunDirError, match="Free disk space"), atomic_path(tmp_path / "y") as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.glob(".y.*"))  # the temporary file is gone
    with pytest.raises(ValueError, match="not a write"), atomic_path(tmp_path / "z"):
        raise ValueError("not a write problem: passes through")


def test_run_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="Cannot create the run folder"):
        RunDir(tmp_path / "file" / "run")


# --------------------------------------------------------------------------------------------
# one command per run folder at a time
# --------------------------------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from dnnsafety.runs import RunDir
with RunDir(sys.argv[1]).lock("dnnsafety analyze RUN"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_lock_is_refused_and_released_on_exit_and_ctrl_c(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock("dnnsafety compare RUN"):
        with pytest.raises(RunDirError) as err, run.lock():
            pass
        assert f"pid {os.getpid()}: dnnsafety compare RUN, since " in str(err.value)
        assert "in use by another dnnsafety command" in str(err.value)
    with run.lock():  # released at the end of the block
        pass
    with pytest.raises(KeyboardInterrupt), run.lock():
        raise KeyboardInterrupt
    with run.lock():  # released after Ctrl-C
        pass
    assert (run / ".lock").read_text() == ""  # no holder recorded any more


def test_lock_held_by_another_process_then_stale_after_kill_9(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    src = str(Path(runs_mod.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(RunDirError) as err, run.lock():
            pass
        assert f"pid {holder.pid}: dnnsafety analyze RUN" in str(err.value)
        # a command on the same folder stops in one line naming the other process
        assert main(["--quiet", "evaluate", str(run.path), "--dataset", "digits"]) == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and f"pid {holder.pid}" in message
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean-up runs
        holder.wait(timeout=30)
    with run.lock("after the crash"):  # the dead process's lock is not left behind
        assert "after the crash" in (run / ".lock").read_text()
