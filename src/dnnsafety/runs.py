"""Run folders: atomic writes and cached, resumable stages.

A run folder holds ``config.toml`` (the resolved configuration), ``stages.json`` (a fingerprint
of every completed stage), ``run.log``, checkpoints and the per-sample table
``samples.parquet``. Every file is written to a temporary name in the same folder and renamed
into place, so an interrupted run never leaves a half-written file. A stage is skipped when its
outputs exist and its fingerprint (configuration + inputs) is unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dnnsafety.exceptions import RunDirError

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.parquet"
STAGES_FILE = "stages.json"
CONFIG_FILE = "config.toml"
LOG_FILE = "run.log"
LOCK_FILE = ".lock"


def safe_name(name: str, keep: str = "-_") -> str:
    """``name`` as a file-name part: characters other than letters, digits and ``keep``
    become ``_`` (layer names in plot files, sample ids in image files)."""
    return "".join(ch if ch.isalnum() or ch in keep else "_" for ch in name)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


#: errno values of a write that failed because of the place written to, not the data
_WRITE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


def write_error(path: str | Path, exc: OSError) -> RunDirError:
    """A :class:`RunDirError` for a failed write to ``path``: names the folder and the fix."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free disk space there, or run the command with a run folder on another disk."
    else:
        fix = (
            f"Make it writable (chmod -R u+w {folder}), or copy the run folder to a place you "
            "can write to and run the command there (for `train`/`demo`: choose another --out)."
        )
    return RunDirError(f"Cannot write to {str(folder)!r} ({reason}). {fix}")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception (Ctrl-C included) the temporary file is removed and ``target`` is left as
    it was. A write refused by the file system (no permission, read-only, disk full) raises
    :class:`RunDirError` naming the folder and the fix.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(target, exc) from None
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise write_error(target, exc) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; swap it in for ``target`` (and its
    old contents) on success.

    For many derived files written together (a selection's images): the files inside are
    plain writes, without a sync each, and readers see the old folder or the complete new
    one, never a mix. On any exception (Ctrl-C included) the temporary folder is removed and
    ``target`` is left as it was. A refused write raises :class:`RunDirError` as
    :func:`atomic_path` does.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    try:
        for stale in (tmp, old):
            if stale.exists():
                shutil.rmtree(stale)
        tmp.mkdir(parents=True)
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise write_error(target, exc) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(target: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    write_bytes(target, text.encode("utf-8"))


def _json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None`` (standard JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(target: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, standard JSON (NaN and infinity become null)."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_text(target, text + "\n")


def write_parquet(target: str | Path, frame: pd.DataFrame) -> None:
    """Atomically write a DataFrame as Parquet."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_bytes(target, buf.getvalue())


def _lock_holder(fd: int) -> str:
    """``pid 123: dnnsafety analyze runs/x, since ...`` from an open lock file."""
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        info = json.loads(raw) if raw.strip() else {}
    except (OSError, json.JSONDecodeError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "a process that is just starting or ending"
    return f"pid {info['pid']}: {info.get('command', '?')}, since {info.get('started', '?')}"


def fingerprint(*parts: Any) -> str:
    """A stable short hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


class RunDir:
    """A run folder on disk.

    Parameters
    ----------
    path
        The folder; created when missing.
    """

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(
                f"{str(self.path)!r} exists and is not a folder; choose another --out."
            )
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunDirError(
                    f"Cannot create the run folder {str(self.path)!r} "
                    f"({exc.strerror or exc}); choose another --out in a folder you can "
                    "write to."
                ) from None
            self.check_writable()
        elif not self.path.is_dir():
            raise RunDirError(
                f"Run folder {str(self.path)!r} does not exist. Create it with "
                "`dnnsafety train --out DIR` (or `dnnsafety demo --out DIR`)."
            )

    def check_writable(self) -> None:
        """Raise :class:`RunDirError` unless new files can be written into the folder.

        Commands call it (through :meth:`logging_to_file`) before any work, so a read-only
        run folder fails in one line at the start instead of in a traceback at the end.
        """
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise write_error(self.path, OSError(errno.EACCES, "permission denied"))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- stage bookkeeping -------------------------------------------------------------------
    def _stages(self) -> dict[str, Any]:
        f = self.path / STAGES_FILE
        if not f.exists():
            return {}
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is unreadable; all stages will be recomputed", f)
            return {}
        return data if isinstance(data, dict) else {}

    def stage_key(self, name: str) -> str | None:
        """The fingerprint recorded for a completed stage, or ``None``."""
        entry = self._stages().get(name)
        return entry.get("key") if isinstance(entry, dict) else None

    def is_done(self, name: str, key: str, outputs: Sequence[str]) -> bool:
        """Whether stage ``name`` completed with fingerprint ``key`` and its outputs exist."""
        return self.stage_key(name) == key and all((self.path / o).exists() for o in outputs)

    def mark_done(self, name: str, key: str, outputs: Sequence[str], **info: Any) -> None:
        """Record that stage ``name`` completed (after its outputs were written)."""
        stages = self._stages()
        stages[name] = {"key": key, "outputs": list(outputs), **info}
        write_json(self.path / STAGES_FILE, stages)

    # -- the per-sample table --------------------------------------------------------------
    def read_samples(self) -> pd.DataFrame:
        """The per-sample table ``samples.parquet``."""
        f = self.path / SAMPLES_FILE
        if not f.exists():
            raise RunDirError(
                f"{str(f)!r} does not exist: run `dnnsafety evaluate {self.path}` first."
            )
        return pd.read_parquet(f)

    def write_samples(self, frame: pd.DataFrame) -> None:
        """Replace ``samples.parquet`` atomically."""
        write_parquet(self.path / SAMPLES_FILE, frame)

    def add_columns(self, columns: pd.DataFrame) -> None:
        """Add or replace columns of ``samples.parquet``; ``columns`` is indexed by sample id."""
        table = self.read_samples().set_index("sample_id")
        for col in columns.columns:
            table[col] = columns[col].reindex(table.index)
        self.write_samples(table.reset_index())

    # -- one command at a time ----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str | None = None) -> Iterator[None]:
        """Hold the folder's lock (``.lock``) while the block runs.

        Two commands working on one run folder at once would overwrite each other's results,
        so a second one stops at once with :class:`RunDirError` naming the process that holds
        the lock (pid, command, start time). The lock is an advisory ``flock`` on ``.lock``,
        which records the holder: the operating system releases it when the block ends
        (Ctrl-C included) and when the process dies in any way (``kill -9``, a crash), so a
        lock is never left stale. Platforms without ``fcntl`` (Windows) run without a lock.

        Parameters
        ----------
        command
            What to record as the holder's command; default: the process's command line.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        self.check_writable()
        path = self.path / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise write_error(path, exc) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirError(
                    f"Run folder {str(self.path)!r} is in use by another dnnsafety command "
                    f"({_lock_holder(fd)}). Two commands on one run folder would overwrite "
                    "each other's results: wait until it ends (or stop it), or give this "
                    "command another run folder."
                ) from None
            except OSError as exc:  # a file system without locks (some network mounts)
                log.warning("cannot lock %s (%s); not protected against parallel runs", path, exc)
            holder = {
                "pid": os.getpid(),
                "command": command or " ".join(["dnnsafety", *sys.argv[1:]]),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(holder) + "\n").encode("utf-8"))
            try:
                yield
            finally:
                os.ftruncate(fd, 0)  # released: nobody to name any more
        finally:
            os.close(fd)  # closing releases the flock

    # -- logging -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def logging_to_file(self) -> Iterator[None]:
        """Copy the ``dnnsafety`` log records into ``run.log`` while the block runs.

        Checks first that the folder is writable (:meth:`check_writable`).
        """
        self.check_writable()
        try:
            handler = logging.FileHandler(self.path / LOG_FILE, encoding="utf-8")
        except OSError as exc:
            raise write_error(self.path / LOG_FILE, exc) from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("dnnsafety")
        root.addHandler(handler)
        old_level = root.level
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.close()
