"""Load a user's image folder ``root/<split>/<class>/<file>`` into a :class:`Dataset`.

The folder layout is the one most image tools use, with one folder per split on top::

    root/
        train/<class>/<file>.png      required
        test/<class>/<file>.png       required
        val/<class>/<file>.png        optional
        pool/<class>/<file>.png       optional, unlabeled improvement set (labels held back)
        pool/<file>.png               optional, unlabeled pool images of unknown class

Everything a user can get wrong (unreadable images, empty class folders, links pointing outside
the folder, a broken metadata table) raises :class:`~dnnsafety.exceptions.InvalidInputError`
with a message that names the file and the fix, or, with ``on_error="skip"``, is skipped with
one warning that lists what was skipped.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from dnnsafety.data.dataset import (
    NOMINAL,
    SPLITS,
    UNKNOWN_LABEL,
    UNKNOWN_SCENARIO,
    Dataset,
    Split,
    make_split,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "POOL_PLACEHOLDER_LABEL",
    "load_image_folder",
]

logger = logging.getLogger(__name__)

#: File extensions (lower case) read as images; other files are ignored with one warning.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

#: Label stored for unlabeled pool files (``pool/<file>``). The pool's labels are hidden, so it
#: is never used as a label; :class:`Dataset` only accepts labels ``0..K-1``.
POOL_PLACEHOLDER_LABEL = UNKNOWN_LABEL

_IGNORED_NAMES = frozenset({"Thumbs.db", "desktop.ini", "__MACOSX"})
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_REQUIRED_SPLITS = ("train", "test")
_MAX_LISTED = 10
_PROGRESS_EVERY = 64


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _listing(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    """``a, b, c`` with ``... (N more)`` after ``limit`` items."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items) - limit} more)"
    return shown


def _is_grey(mode: str) -> bool:
    return mode in _GREY_MODES or mode.startswith("I;")


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


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _parse_image_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        values: list[object] = [image_size, image_size]
    elif isinstance(image_size, tuple | list) and len(image_size) == 2:
        values = list(image_size)
    else:
        raise ConfigError(
            f"image_size must be an int or a (height, width) pair, got {image_size!r}."
        )
    size = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    if len(size) != 2:
        raise ConfigError(f"image_size must hold positive integers, got {image_size!r}.")
    return size[0], size[1]


def _parse_splits(splits: Sequence[str] | None) -> tuple[tuple[str, ...], bool]:
    """The splits to load, in :data:`SPLITS` order, and whether the user named them."""
    if splits is None:
        return SPLITS, False
    if isinstance(splits, str):
        raise ConfigError(f"splits must be a list of split names, got the string {splits!r}.")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(
            f"Unknown split(s) {_listing([repr(s) for s in unknown])}; use {', '.join(SPLITS)}."
        )
    missing = [s for s in _REQUIRED_SPLITS if s not in splits]
    if missing:
        raise ConfigError(f"splits must include {' and '.join(missing)}; got {list(splits)}.")
    return tuple(s for s in SPLITS if s in splits), True


# --------------------------------------------------------------------------------------------
# discovering the files
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Decoded:
    pixels: np.ndarray  # uint8, H x W (greyscale) or H x W x 3 (RGB)
    mode: str  # the file's own PIL mode
    size: tuple[int, int]  # the file's own (height, width)


def _convert(img: Image.Image, target: Literal["L", "RGB"]) -> Image.Image:
    """``img`` as 8-bit greyscale or RGB (16-bit grey is rescaled, alpha is dropped)."""
    mode = img.mode
    if mode == "F" or mode == "I" or mode.startswith("I;"):
        values = np.asarray(img, dtype=np.float64)
        if mode != "F":
            values = values / 257.0  # 16-bit range 0..65535 -> 0..255
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img if img.mode == target else img.convert(target)


def _upright(img: Image.Image, path: Path) -> Image.Image:
    """``img`` turned the way image viewers show it (its EXIF orientation tag applied).

    Phone cameras store the sensor's pixels as they are and record the rotation in the tag;
    ignoring it would hand the model a turned (and, when resized, squashed) picture. A tag
    that cannot be applied is ignored with a debug message: the pixels are still usable.
    """
    try:
        turned = ImageOps.exif_transpose(img)
    except Exception as exc:  # a damaged EXIF block must not make the image unreadable
        logger.debug("Ignoring the EXIF orientation of %s (%s)", path, exc)
        return img
    return img if turned is None else turned


def _decode(path: Path, channels: int | None, size_hw: tuple[int, int] | None) -> _Decoded | str:
    """Decode one file fully, or say (as text) why it cannot be used."""
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        with Image.open(path) as opened:
            opened.load()
            img = _upright(opened, path)
            mode = img.mode
            width, height = img.size
            if channels is None:
                target: Literal["L", "RGB"] = "L" if _is_grey(mode) else "RGB"
            else:
                target = "L" if channels == 1 else "RGB"
            out = _convert(img, target)
            if size_hw is not None and out.size != (size_hw[1], size_hw[0]):
                out = out.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(out, dtype=np.uint8)
    except MemoryError:
        raise
    except Exception as exc:  # untrusted file: PIL raises many kinds of errors on bad data
        return f"cannot be read as an image ({type(exc).__name__}: {exc})"
    if width < 1 or height < 1:
        return f"has no pixels (size {width}x{height})"
    return _Decoded(pixels, mode, (height, width))


# --------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------


def _normalise_meta_path(raw: object) -> tuple[str | None, str]:
    """``(normalised path, "")`` or ``(None, reason)`` for one ``path`` cell."""
    if not isinstance(raw, str) or not raw.strip():
        return None, "the path is empty"
    text = raw.strip()
    if text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
        return None, f"path {text!r} is absolute"
    if ".." in text.replace("\\", "/").split("/"):
        return None, f"path {text!r} contains '..' and could lead outside the data folder"
    parts = PurePosixPath(text).parts
    if not parts:
        return None, "the path is empty"
    return "/".join(parts), ""


def _read_metadata(csv_path: Path, problems: _Problems) -> pd.DataFrame:
    """The metadata table indexed by normalised relative path (``path`` column removed)."""
    if not csv_path.is_file():
        raise InvalidInputError(
            f"Metadata file {csv_path} does not exist; check metadata_csv or leave it unset."
        )
    try:
        table = pd.read_csv(csv_path, dtype={"path": str, "scenario": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"Metadata file {csv_path} is not a readable CSV table ({exc}). Save it as UTF-8 "
            "CSV with a header row that includes a 'path' column."
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    if "path" not in table.columns:
        raise InvalidInputError(
            f"Metadata file {csv_path} has no 'path' column (columns: "
            f"{_listing(list(table.columns))}). Add a 'path' column with each image's path "
            "relative to the data folder, e.g. test/stop/img_001.png."
        )
    keep: list[int] = []
    keys: list[str] = []
    for row, raw in enumerate(table["path"].tolist()):
        key, reason = _normalise_meta_path(raw)
        if key is None:
            problems.report(
                f"Metadata file {csv_path}, data row {row + 1}: {reason}",
                "Use paths relative to the data folder, like test/stop/img_001.png.",
            )
            continue
        keep.append(row)
        keys.append(key)
    table = table.iloc[keep].drop(columns="path")
    table.index = pd.Index(keys, name="path")
    dupes = sorted(set(table.index[table.index.duplicated()]))
    if dupes:
        raise InvalidInputError(
            f"Metadata file {csv_path} lists these paths more than once: {_listing(dupes)}. "
            "Keep one row per image."
        )
    return table


def _scenario_tag(cell: object, has_row: bool) -> str:
    """The scenario of one image: its cell, nominal when empty, unknown without a row."""
    if not has_row:
        return UNKNOWN_SCENARIO
    return cell.strip() if isinstance(cell, str) and cell.strip() else NOMINAL


def _split_metadata(
    table: pd.DataFrame, ids: list[str]
) -> tuple[np.ndarray | None, pd.DataFrame | None]:
    """Scenario tags and metadata rows for ``ids``, in that order.

    An empty ``scenario`` cell means nominal; an image without a row has no known scenario
    (:data:`UNKNOWN_SCENARIO`), as have all images when the table has no ``scenario`` column.
    """
    rows = table.reindex(pd.Index(ids))
    scenarios: np.ndarray | None = None
    if "scenario" in rows.columns:
        raw = rows.pop("scenario")
        listed = pd.Index(ids).isin(table.index)
        scenarios = np.array(
            [_scenario_tag(s, r) for s, r in zip(raw.tolist(), listed.tolist(), strict=True)],
            dtype=object,
        )
    meta = rows.reset_index(drop=True) if len(rows.columns) else None
    return scenarios, meta


# --------------------------------------------------------------------------------------------
# the loader
# --------------------------------------------------------------------------------------------


def load_image_folder(
    root: str | Path,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    metadata_csv: str | Path | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    splits: Sequence[str] | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    num_workers: int | None = None,
) -> Dataset:
    """Load images laid out as ``root/<split>/<class>/<file>`` into a :class:`Dataset`.

    Parameters
    ----------
    root
        The data folder. It must hold ``train/`` and ``test/``; ``val/`` and ``pool/`` are
        optional. Inside a split folder each subfolder is a class (images in its subfolders
        belong to it too). PNG, JPEG and BMP files are read; hidden files (``.DS_Store``,
        ``Thumbs.db``, ...) are ignored, other files are ignored with one warning.
    image_size
        Resize every image (bilinear, antialiased when shrinking) to ``(height, width)``, or to
        a square when an int. When unset, all images must already share one size.
    channels
        1 (greyscale) or 3 (RGB): convert every image to it. When unset, the images are loaded
        as greyscale if all of them are greyscale and as RGB if all are colour; a mix of the
        two is an error (pass ``channels``). Alpha channels are dropped; 16-bit greyscale is
        scaled to 8 bits.
    metadata_csv
        Optional CSV table with a ``path`` column (POSIX path relative to ``root``, like
        ``test/stop/img_001.png``) and any further columns, which become the per-sample
        :attr:`Split.metadata` (NaN for images without a row). A ``scenario`` column becomes
        the split's ground-truth scenario tags instead (empty cells mean ``"nominal"``).
        Images whose scenario nobody gave (no such column, or no row for the image) get
        :data:`~dnnsafety.data.dataset.UNKNOWN_SCENARIO`, which the per-scenario figures and
        the report leave out.
    on_error
        ``"raise"`` (default) stops at the first bad file, folder, link or metadata row with
        :class:`InvalidInputError`; ``"skip"`` leaves them out and emits one warning listing
        them. Problems with the data as a whole (missing ``train``/``test``, mixed image sizes
        or colour modes, duplicate metadata rows, no usable image in ``train``/``test``)
        always raise.
    splits
        The splits to load; default all of :data:`SPLITS` that exist. ``train`` and ``test``
        are required; a split named here must exist.
    progress
        Called with the number of files just processed (loaded or skipped), for progress bars.
    num_workers
        Threads that decode images; default ``min(8, CPU count)``.

    Returns
    -------
    Dataset
        Named after the folder. Sample ids are the files' POSIX paths relative to ``root``
        (``test/stop/img_001.png``), sorted within each split. ``class_names`` is the sorted
        union of the class folder names of all loaded splits; labels index into it.

    Raises
    ------
    InvalidInputError
        For bad data; the message names the file or folder and the fix.
    ConfigError
        For invalid argument values.

    Notes
    -----
    The pool split's labels are held back by :class:`Dataset`. Pool images in class folders
    (``pool/<class>/<file>``) keep their class as the held-back label. Pool images lying
    directly in ``pool/`` have no known class; they get the label
    :data:`~dnnsafety.data.dataset.UNKNOWN_LABEL` (-1): the oracle refuses to reveal it, so such
    images can only be labelled by hand (the labelling CSV). Put pool images in class folders
    where labelling is simulated from the data.

    Images with an EXIF orientation tag (photos from phones and cameras) are turned upright
    first, as image viewers show them; sizes (``image_size``, error messages) are those of
    the upright image.

    Symbolic links may point anywhere inside ``root``; links leading outside it are refused,
    as are metadata paths that are absolute or contain ``..``.
    """
    root_path = Path(root)
    size_hw = _parse_image_size(image_size)
    if channels is not None and channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels!r}.")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    wanted, named = _parse_splits(splits)
    if num_workers is not None and num_workers < 1:
        raise ConfigError(f"num_workers must be at least 1, got {num_workers!r}.")

    if not root_path.exists():
        raise InvalidInputError(
            f"Data folder {root_path} does not exist. Check the path; it should hold train/ "
            "and test/ folders with one subfolder per class."
        )
    if not root_path.is_dir():
        raise InvalidInputError(
            f"{root_path} is not a folder. Point to the folder that holds train/ and test/."
        )
    problems = _Problems(on_error)
    try:
        return _load(
            root_path,
            size_hw,
            channels,
            metadata_csv,
            wanted,
            named,
            problems,
            progress,
            num_workers,
        )
    finally:
        problems.warn()  # also when an error stops loading: it may explain the error


def _load(
    root_path: Path,
    size_hw: tuple[int, int] | None,
    channels: int | None,
    metadata_csv: str | Path | None,
    wanted: tuple[str, ...],
    named: bool,
    problems: _Problems,
    progress: Callable[[int], None] | None,
    num_workers: int | None,
) -> Dataset:
    """The body of :func:`load_image_folder`, after its arguments have been checked."""
    walker = _Walker(root_path, problems)

    top = [e for e in walker.scan(root_path, "") if not _is_hidden(e.name)]
    top_dirs = [e.name for e in top if e.is_dir()]
    strange = [d for d in top_dirs if d not in SPLITS]
    if strange:
        warnings.warn(
            f"Ignoring folder(s) {_listing(strange)} in {root_path}: split folders must be "
            f"named {', '.join(SPLITS)}.",
            UserWarning,
            stacklevel=3,
        )

    files: list[_File] = []
    split_classes: dict[str, set[str]] = {}
    for split in wanted:
        split_dir = root_path / split
        usable = split_dir.is_dir()
        if split_dir.is_symlink() and walker.escapes(split_dir, split):
            usable = False
        if not usable:
            if split in _REQUIRED_SPLITS or named:
                found = f" (found: {_listing(top_dirs)})" if top_dirs else ""
                raise InvalidInputError(
                    f"Split folder {split_dir} is missing{found}. Create {split}/ with one "
                    "subfolder per class holding its images."
                )
            continue
        split_files, classes = walker.collect_split(split)
        if not split_files and split in _REQUIRED_SPLITS:
            raise InvalidInputError(
                f"Split folder {split_dir} holds no usable images. Put images into "
                f"{split}/<class name>/ as PNG, JPEG or BMP files."
            )
        if not split_files:
            problems.report(
                f"Split folder {split_dir} holds no usable images",
                f"Add images to {split}/<class name>/ or delete the folder.",
            )
            continue
        files.extend(split_files)
        split_classes[split] = classes

    if walker.unknown:
        warnings.warn(
            f"Ignoring {len(walker.unknown)} file(s) that are not "
            f"{'/'.join(sorted(IMAGE_EXTENSIONS))} images in {root_path}: "
            f"{_listing(walker.unknown, 5)}",
            UserWarning,
            stacklevel=3,
        )

    class_names = tuple(sorted(set().union(*split_classes.values())))
    if not class_names:
        raise InvalidInputError(
            f"No class folders with images under {root_path}. Put images into "
            "train/<class name>/ and test/<class name>/."
        )
    untrained = sorted(set(class_names) - split_classes.get("train", set()))
    if untrained:
        where = {
            c: "/".join(s for s, names in split_classes.items() if c in names) for c in untrained
        }
        warnings.warn(
            f"Class(es) {_listing([f'{c} (in {where[c]})' for c in untrained])} have no folder "
            "in train/; a model cannot learn them from this data.",
            UserWarning,
            stacklevel=3,
        )

    meta_table = None if metadata_csv is None else _read_metadata(Path(metadata_csv), problems)

    decoded = _decode_all(files, channels, size_hw, walker, problems, progress, num_workers)

    class_index = {name: i for i, name in enumerate(class_names)}
    split_map: dict[str, Split] = {}
    for split in wanted:
        if split not in split_classes:
            continue
        kept: list[tuple[_File, _Decoded]] = sorted(
            (
                (f, d)
                for f, d in zip(files, decoded, strict=True)
                if f.split == split and d is not None
            ),
            key=lambda fd: fd[0].rel,
        )
        if not kept:
            if split in _REQUIRED_SPLITS:
                raise InvalidInputError(
                    f"No image in {root_path / split} could be read (all were skipped). Fix "
                    "the files listed in the warning."
                )
            continue
        ids = [f.rel for f, _ in kept]
        pixels = np.stack([d.pixels for _, d in kept])
        if pixels.ndim == 4:
            pixels = pixels.transpose(0, 3, 1, 2)
        labels = np.array(
            [
                POOL_PLACEHOLDER_LABEL if f.class_name is None else class_index[f.class_name]
                for f, _ in kept
            ],
            dtype=np.int64,
        )
        scenarios, meta = (None, None) if meta_table is None else _split_metadata(meta_table, ids)
        split_map[split] = make_split(split, ids, pixels, labels, scenarios, meta)
        if split == "pool" and any(f.class_name is None for f, _ in kept):
            logger.info(
                "Pool: %d unlabeled image(s) directly in pool/ get placeholder label %d.",
                sum(f.class_name is None for f, _ in kept),
                POOL_PLACEHOLDER_LABEL,
            )

    if meta_table is not None:
        loaded = {sid for s in split_map.values() for sid in s.ids.tolist()}
        other_splits = set(SPLITS) - set(wanted)
        orphans = [
            p for p in meta_table.index if p not in loaded and p.split("/")[0] not in other_splits
        ]
        if orphans:
            warnings.warn(
                f"{len(orphans)} row(s) of metadata file {metadata_csv} name files that were "
                f"not loaded (missing, skipped, or not images): {_listing(orphans, 5)}",
                UserWarning,
                stacklevel=3,
            )

    dataset = Dataset(name=root_path.resolve().name, class_names=class_names, splits=split_map)
    logger.info("Loaded %s: %s.", root_path, dataset.describe())
    return dataset


def _decode_all(
    files: list[_File],
    channels: int | None,
    size_hw: tuple[int, int] | None,
    walker: _Walker,
    problems: _Problems,
    progress: Callable[[int], None] | None,
    num_workers: int | None,
) -> list[_Decoded | None]:
    """Decode ``files`` in parallel; ``None`` marks a skipped file."""
    workers = num_workers or min(8, os.cpu_count() or 1)
    workers = max(1, min(workers, len(files)))
    out: list[_Decoded | None] = []
    first_of_kind: dict[bool, tuple[str, str]] = {}  # grey? -> (file, mode)
    first_of_size: dict[tuple[int, int], str] = {}
    pending = 0
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dnnsafety-load")
    try:
        results = executor.map(lambda f: _decode(f.path, channels, size_hw), files)
        for file, result in zip(files, results, strict=True):
            pending += 1
            if progress is not None and pending >= _PROGRESS_EVERY:
                progress(pending)
                pending = 0
            if isinstance(result, str):
                problems.report(
                    f"Image {walker.show(file.rel)} {result}",
                    "Replace or delete the file (or load with on_error='skip').",
                )
                out.append(None)
                continue
            if channels is None:
                grey = _is_grey(result.mode)
                first_of_kind.setdefault(grey, (walker.show(file.rel), result.mode))
                if len(first_of_kind) > 1:
                    g_file, g_mode = first_of_kind[True]
                    c_file, c_mode = first_of_kind[False]
                    raise InvalidInputError(
                        f"The images mix greyscale and colour: {g_file} is greyscale (mode "
                        f"{g_mode}) and {c_file} is colour (mode {c_mode}). Pass channels=1 "
                        "to load all as greyscale or channels=3 to load all as RGB."
                    )
            if size_hw is None:
                first_of_size.setdefault(result.size, walker.show(file.rel))
                if len(first_of_size) > 1:
                    (s1, f1), (s2, f2) = list(first_of_size.items())[:2]
                    raise InvalidInputError(
                        f"The images have different sizes: {f1} is {s1[0]}x{s1[1]} and {f2} is "
                        f"{s2[0]}x{s2[1]} (height x width). Pass image_size (e.g. "
                        f"image_size={s1[0]} or ({s1[0]}, {s1[1]})) to resize them all."
                    )
            out.append(result)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if progress is not None and pending:
        progress(pending)
    return out
