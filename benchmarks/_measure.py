"""Shared helper: wall time and peak resident memory of a block of code."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """Peak resident memory above the level at entry, sampled every 5 ms (MB)."""
    box = {"start": _rss_mb(), "peak": 0.0, "seconds": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            box["peak"] = max(box["peak"], _rss_mb())
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join()
        box["seconds"] = time.perf_counter() - t0
        box["peak"] = max(box["peak"], _rss_mb()) - box["start"]
