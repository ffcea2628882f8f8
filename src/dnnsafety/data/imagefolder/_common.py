"""What the image-folder modules share: file types, the skip-or-raise collector."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

from dnnsafety.data.dataset import UNKNOWN_LABEL
from dnnsafety.exceptions import InvalidInputError

#: File extensions (lower case) read as images; other files are ignored with one warning.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

#: Label stored for unlabeled pool files (``pool/<file>``). The pool's labels are hidden, so it
#: is never used as a label; :class:`Dataset` only accepts labels ``0..K-1``.
POOL_PLACEHOLDER_LABEL = UNKNOWN_LABEL

_IGNORED_NAMES = frozenset({"Thumbs.db", "desktop.ini", "__MACOSX"})
_MAX_LISTED = 10


def _listing(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    """``a, b, c`` with ``... (N more)`` after ``limit`` items."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items) - limit} more)"
    return shown


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES


class _Problems:
    """Collects bad inputs: raises at once (``raise``) or remembers them for one warning."""

    def __init__(self, on_error: Literal["raise", "skip"]) -> None:
        self.skip = on_error == "skip"
        self.items: list[str] = []

    def report(self, what: str, fix: str) -> None:
        if not self.skip:
            raise InvalidInputError(f"{what}. {fix}")
        self.items.append(what)

    def warn(self) -> None:
        """Emit one warning listing everything skipped so far (then forget it)."""
        if self.items:
            warnings.warn(
                f"Skipped {len(self.items)} bad input(s) (on_error='skip'): "
                + "; ".join(self.items[:_MAX_LISTED])
                + (f"; ... ({len(self.items) - _MAX_LISTED} more)" if len(self.items) > 10 else ""),
                UserWarning,
                stacklevel=3,
            )
            self.items = []
