"""Progress bars, switched on by the command line and off everywhere else.

Library code calls :func:`progress_bar`; it is silent unless the CLI enabled bars with
:func:`set_progress` (``--quiet`` keeps them off), so importing dnnsafety never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_ENABLED = False


def set_progress(enabled: bool) -> None:
    """Turn progress bars on or off for this process."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled() -> bool:
    return _ENABLED


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", **kw: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless :func:`set_progress` turned bars on."""
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
