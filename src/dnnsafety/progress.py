"""Progress bars, switched on by the command line and off everywhere else.

Library code calls :func:`progress_bar`; it is silent unless the CLI enabled bars with
:func:`set_progress` (``--quiet`` keeps them off), so importing dnnsafety never prints. When
the command line runs without a terminal on stderr (a log file, CI, ``nohup``), bars would
be noise, so :func:`set_progress` can ask for log lines instead: a loop that runs for
:data:`LOG_AFTER_S` seconds or more writes ``<what>: <done>/<total> <unit> (<share>)``
lines to the ``dnnsafety.progress`` logger (at most one per :data:`LOG_AFTER_S` seconds, at
each further tenth of the work) and a last line when it ends; shorter loops stay silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_ENABLED = False
_LOG_LINES = False
LOG_AFTER_S = 10.0
"""Seconds a loop runs before its first progress log line, and between two lines."""

log = logging.getLogger("dnnsafety.progress")


def set_progress(enabled: bool, *, log_lines: bool = False) -> None:
    """Turn progress bars on or off for this process.

    Parameters
    ----------
    enabled
        Draw tqdm bars on stderr.
    log_lines
        When bars are off, write a progress line to the log now and then instead.
    """
    global _ENABLED, _LOG_LINES
    _ENABLED = enabled
    _LOG_LINES = log_lines


def progress_enabled() -> bool:
    return _ENABLED


class _LoggedBar(tqdm):
    """A bar that draws nothing and writes a log line now and then (see the module doc)."""

    def __init__(self, total: int | None, desc: str, unit: str) -> None:
        super().__init__(total=total, disable=True)
        self._what, self._unit = desc or "progress", unit
        self._done = 0
        self._start = self._last = time.monotonic()
        self._next_share = 0.1
        self._logged = False
        self._finished = False

    def update(self, n: float | None = 1) -> bool | None:
        self._done += int(n or 0)
        now = time.monotonic()
        total = self.total
        if now - self._last < LOG_AFTER_S:
            return None
        if total and self._done / total < self._next_share:
            return None
        self._line()
        self._last = now
        if total:
            self._next_share = (int(self._done / total * 10) + 1) / 10
        return None

    def _line(self, suffix: str = "") -> None:
        total = self.total
        if total:
            share = f" ({self._done / total:.0%})"
            log.info("%s: %d/%d %s%s%s", self._what, self._done, total, self._unit, share, suffix)
        else:
            log.info("%s: %d %s%s", self._what, self._done, self._unit, suffix)
        self._logged = True

    def close(self) -> None:
        if not self._finished:
            self._finished = True
            if self._logged:
                self._line(f", done in {time.monotonic() - self._start:.0f}s")
        super().close()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", **kw: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless :func:`set_progress` turned bars on.

    With bars off and log lines on, a bar that writes log lines instead (same interface).
    """
    if not _ENABLED and _LOG_LINES:
        return _LoggedBar(total, desc, unit)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not _ENABLED,
        leave=False,
        dynamic_ncols=True,
        **kw,
    )


def track(
    items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    with progress_bar(total=total, desc=desc, unit=unit) as bar:
        for item in items:
            yield item
            bar.update(1)


def advance(bar: tqdm) -> Callable[[int], None]:
    """A ``progress(n)`` callback that moves ``bar`` forward by ``n``."""

    def update(n: int) -> None:
        bar.update(n)

    return update
