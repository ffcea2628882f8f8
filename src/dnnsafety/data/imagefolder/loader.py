"""The loader: checks the arguments, walks the splits, decodes, builds the Dataset."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from dnnsafety.data.dataset import SPLITS, Dataset, Split, make_split
from dnnsafety.data.imagefolder._common import (
    IMAGE_EXTENSIONS,
    POOL_PLACEHOLDER_LABEL,
    _is_hidden,
    _listing,
    _Problems,
)
from dnnsafety.data.imagefolder.decode import _decode_all, _Decoded
from dnnsafety.data.imagefolder.metadata import _read_metadata, _split_metadata
from dnnsafety.data.imagefolder.walk import _File, _Walker
from dnnsafety.exceptions import ConfigError, InvalidInputError

logger = logging.getLogger(__name__)


_REQUIRED_SPLITS = ("train", "test")


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
