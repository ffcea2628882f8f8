"""Finding the image files under the root folder without leaving it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dnnsafety.data.imagefolder._common import IMAGE_EXTENSIONS, _is_hidden, _Problems

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _File:
    split: str
    class_name: str | None  # None: unlabeled pool file lying directly in pool/
    rel: str  # POSIX path relative to root: the sample id
    path: Path  # the path to open


class _Walker:
    """Finds the image files under ``root`` without leaving it."""

    def __init__(self, root: Path, problems: _Problems) -> None:
        self.root = root
        self.root_real = root.resolve()
        self.problems = problems
        self.unknown: list[str] = []

    def show(self, rel: str) -> str:
        return str(self.root / rel) if rel else str(self.root)

    def scan(self, path: Path, rel: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.problems.report(
                f"Folder {self.show(rel)} cannot be read ({exc.strerror or exc})",
                "Check that it exists and that you have permission to read it.",
            )
            return []

    def escapes(self, path: Path, rel: str) -> bool:
        """Whether the symbolic link ``path`` leads outside the root (reported if so)."""
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop (Python < 3.13)
            self.problems.report(
                f"Link {self.show(rel)} cannot be resolved ({exc})", "Fix or remove the link."
            )
            return True
        if not target.is_relative_to(self.root_real):
            self.problems.report(
                f"{self.show(rel)} is a symbolic link to {target}, outside the data folder "
                f"{self.root_real}",
                "Links may not point outside the data folder; copy the data in instead, or "
                "remove the link.",
            )
            return True
        return False

    def entry_kind(self, entry: os.DirEntry[str], rel: str) -> Literal["dir", "file", "none"]:
        """``dir``/``file`` for usable entries, ``none`` for hidden, escaping or odd ones."""
        if _is_hidden(entry.name):
            return "none"
        path = Path(entry.path)
        if entry.is_symlink() and self.escapes(path, rel):
            return "none"
        try:
            if entry.is_dir():
                return "dir"
            if entry.is_file():
                return "file"
        except OSError:
            pass
        if entry.is_symlink():
            self.problems.report(
                f"Link {self.show(rel)} points to a file that does not exist",
                "Fix or remove the link.",
            )
        else:
            self.unknown.append(rel)  # a FIFO, socket or device: never opened
        return "none"

    def collect_class(
        self,
        path: Path,
        rel: str,
        split: str,
        class_name: str,
        out: list[_File],
        ancestors: frozenset[Path],
    ) -> None:
        """All image files below a class folder (subfolders included), in name order."""
        real = path.resolve()
        if real in ancestors:  # a link back up the tree; following it would never end
            logger.debug("Not following link loop at %s", self.show(rel))
            return
        ancestors = ancestors | {real}
        for entry in self.scan(path, rel):
            child = f"{rel}/{entry.name}"
            kind = self.entry_kind(entry, child)
            if kind == "dir":
                self.collect_class(Path(entry.path), child, split, class_name, out, ancestors)
            elif kind == "file":
                if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                    out.append(_File(split, class_name, child, Path(entry.path)))
                else:
                    self.unknown.append(child)

    def collect_split(self, split: str) -> tuple[list[_File], set[str]]:
        """Files and (non-empty) class folder names of one split folder."""
        files: list[_File] = []
        classes: set[str] = set()
        for entry in self.scan(self.root / split, split):
            rel = f"{split}/{entry.name}"
            kind = self.entry_kind(entry, rel)
            if kind == "dir":
                found: list[_File] = []
                self.collect_class(
                    Path(entry.path), rel, split, entry.name, found, frozenset({self.root_real})
                )
                if found:
                    files.extend(found)
                    classes.add(entry.name)
                else:
                    self.problems.report(
                        f"Class folder {self.show(rel)} is empty (no "
                        f"{'/'.join(sorted(IMAGE_EXTENSIONS))} images)",
                        "Add images to it or delete the folder.",
                    )
            elif kind == "file":
                if Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
                    self.unknown.append(rel)
                elif split == "pool":
                    files.append(_File(split, None, rel, Path(entry.path)))
                else:
                    self.problems.report(
                        f"Image {self.show(rel)} lies directly in the {split!r} folder, outside "
                        "any class folder",
                        f"Move it into {split}/<class name>/ (only the pool may hold unlabeled "
                        "images).",
                    )
        return files, classes
