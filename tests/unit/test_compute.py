"""The executor seam: results in chunk order on every scheduler, shared data sent once."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest

from dnnsafety.compute import (
    DaskExecutor,
    LocalExecutor,
    chunk_bounds,
    chunk_seed,
    make_executor,
    tune_allocator,
)
from dnnsafety.exceptions import ConfigError


def _square_sum(chunk, extra):  # any name: the shared object comes as the second argument
    start, stop = chunk
    return int(np.sum(np.arange(start, stop) ** 2)) + extra["offset"]


def _seeded(chunk, shared):
    index, _ = chunk
    return np.random.default_rng(chunk_seed(shared, index)).random(3)


def test_chunk_bounds_cover_the_rows_once():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(0, 4) == []
    with pytest.raises(ConfigError, match="chunk size"):
        chunk_bounds(10, 0)


def test_chunk_seeds_differ_per_chunk_and_repeat_per_seed():
    assert chunk_seed(1, 0) == chunk_seed(1, 0)
    assert len({chunk_seed(1, i) for i in range(50)}) == 50
    assert chunk_seed(1, 3) != chunk_seed(2, 3)


@pytest.mark.parametrize("scheduler", ["local", "synchronous", "threads"])
def test_every_scheduler_returns_results_in_chunk_order(scheduler):
    chunks = chunk_bounds(1000, 37)
    expected = [_square_sum(c, {"offset": 5}) for c in chunks]
    with make_executor(scheduler, workers=2) as executor:
        got = executor.map(_square_sum, chunks, shared={"offset": 5})
    assert got == expected
    assert executor.scheduler == scheduler


class _CountingBar:
    """Stands in for a progress bar: records its name, total and updates."""

    made: ClassVar[list[_CountingBar]] = []

    def __init__(self, total=None, desc="", unit="it"):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        _CountingBar.made.append(self)

    def update(self, k=1):
        self.n += k

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("scheduler", ["local", "synchronous", "threads"])
def test_a_named_map_counts_every_finished_chunk_on_a_progress_bar(scheduler, monkeypatch):
    import dnnsafety.compute as compute

    _CountingBar.made.clear()
    monkeypatch.setattr(compute, "progress_bar", _CountingBar)
    chunks = chunk_bounds(100, 9)
    with make_executor(scheduler, workers=2) as executor:
        executor.map(_square_sum, chunks, shared={"offset": 0}, desc="score pool")
        executor.map(_square_sum, chunks, shared={"offset": 0})  # no name: no bar
    [bar] = _CountingBar.made
    assert (bar.desc, bar.total, bar.n, bar.unit) == ("score pool", len(chunks), 12, "chunk")


def test_seeded_tasks_agree_between_schedulers():
    chunks = [(i, None) for i in range(8)]
    local = LocalExecutor().map(_seeded, chunks, shared=7)
    with make_executor("threads", 2) as executor:
        threaded = executor.map(_seeded, chunks, shared=7)
    assert all(np.array_equal(a, b) for a, b in zip(local, threaded, strict=True))
    assert not np.array_equal(local[0], local[1])


def test_bad_schedulers_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="local, threads, processes"):
        make_executor("gpu")
    with pytest.raises(ConfigError, match="workers"):
        make_executor("threads", workers=-1)
    assert isinstance(make_executor(""), LocalExecutor)


def test_an_unreachable_cluster_says_how_to_start_one():
    executor = DaskExecutor("tcp://127.0.0.1:1", timeout=1)
    with pytest.raises(ConfigError, match="dask scheduler"):
        executor.map(_square_sum, [(0, 1)], shared={"offset": 0})


def test_a_local_cluster_runs_the_chunks_and_keeps_the_order():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        executor = DaskExecutor("", client=client)
        chunks = chunk_bounds(500, 64)
        got = executor.map(_square_sum, chunks, shared={"offset": 1}, desc="chunks")
        assert got == [_square_sum(c, {"offset": 1}) for c in chunks]
        assert executor.scheduler.startswith("inproc://")
        executor.close()  # a client passed in stays open
        assert client.status == "running"


_KEPT = """
import sys
import numpy as np
from dnnsafety.compute import tune_allocator

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

tuned = tune_allocator(sys.argv[1] == "on")
before = rss_mb()
np.ones(8 << 20).sum()  # a 64 MB block, written and freed
print(tuned, round(rss_mb() - before))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_allocator_keeps_a_freed_large_block_in_the_process() -> None:
    """Without the setting glibc unmaps a freed 64 MB block (the next one is mapped and
    zeroed again); with it the block stays in the heap for the next allocation."""

    def kept_mb(setting: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", _KEPT, setting],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"},  # as Dask's nanny sets it
        ).stdout.split()
        return out[0], int(out[1])

    off_tuned, off = kept_mb("off")
    on_tuned, on = kept_mb("on")
    assert off_tuned == "False" and on_tuned == "True"
    assert off < 16  # returned to the system
    assert on > 56  # kept


def test_tune_allocator_is_off_when_disabled() -> None:
    assert tune_allocator(False) is False
