"""Features of a source, computed once per input and kept on disk.

A cache folder holds the vectors of one feature source with one identity (its name, every
parameter, the weights it loads, and what the caller adds: the model, the seed). Each input
is keyed by its sample id *and* a digest of its pixels, so the same id in two splits, or an
image that changed, is never confused. A request computes only the inputs the folder does not
hold yet, in parts of :data:`PART_ROWS` rows written as they finish (an interrupted extraction
keeps what it did), and reads the rest back: the errors, the correct reference, the pool and
the training set of a run are each embedded once, whichever command asks first.

Files: ``part_00000.npy`` (``n x D`` float32) with ``part_00000.json`` (its row keys), one pair
per computed part; a part's ``.json`` is written after its ``.npy``, both atomically, so a part
without its ``.json`` is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.runs import atomic_path, fingerprint

log = logging.getLogger(__name__)

PART_ROWS = 2048
"""Inputs per computed part (the unit an interrupted extraction keeps)."""
ANNOUNCE_ROWS = 1000
"""Extractions of at least this many inputs are announced in the log."""


def source_identity(source: Any) -> str:
    """A fingerprint of a feature source: its name, every parameter (defaults included) and
    what it loaded (``identity_``, e.g. the backbone's weights file)."""
    params = sorted((k, repr(v)) for k, v in source.get_params(deep=False).items())
    return fingerprint(source.name, params, str(getattr(source, "identity_", "")))


def row_keys(images: torch.Tensor | np.ndarray, ids: Sequence[Any]) -> list[str]:
    """One key per input: its id and a digest of its pixels."""
    if len(images) != len(ids):
        raise InvalidInputError(f"Got {len(ids)} ids for {len(images)} images; they must match.")
    arr = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    keys = []
    for i, sid in enumerate(ids):
        digest = hashlib.blake2b(np.ascontiguousarray(arr[i]).tobytes(), digest_size=8)
        keys.append(f"{sid}|{digest.hexdigest()}")
    return keys


class FeatureCache:
    """The cache folder of one source identity (see the module docstring).

    Parameters
    ----------
    folder
        Where the parts live (created on the first write).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._where: dict[str, tuple[int, int]] = {}
        self._parts: list[Path] = []
        if self.folder.is_dir():
            for index in sorted(self.folder.glob("part_*.json")):
                data = index.with_suffix(".npy")
                try:
                    keys = json.loads(index.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    log.warning("unreadable feature cache index %s; ignored", index)
                    continue
                if not data.is_file():
                    continue
                part = len(self._parts)
                self._parts.append(data)
                for row, key in enumerate(keys):
                    self._where[str(key)] = (part, row)

    def __len__(self) -> int:
        return len(self._where)

    def missing(self, keys: Sequence[str]) -> list[int]:
        """Positions in ``keys`` of the inputs the cache does not hold (first of repeats)."""
        seen: set[str] = set()
        out = []
        for i, key in enumerate(keys):
            if key not in self._where and key not in seen:
                seen.add(key)
                out.append(i)
        return out

    def add(self, keys: Sequence[str], features: np.ndarray) -> None:
        """Write one part: ``features`` (``len(keys) x D``) under ``keys``."""
        n = len(self._parts)
        stem = self.folder / f"part_{n:05d}"
        while stem.with_suffix(".json").exists() or stem.with_suffix(".npy").exists():
            n += 1
            stem = self.folder / f"part_{n:05d}"
        with atomic_path(stem.with_suffix(".npy")) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(features, dtype=np.float32), allow_pickle=False)
        with atomic_path(stem.with_suffix(".json")) as tmp:
            Path(tmp).write_text(json.dumps(list(keys)), encoding="utf-8")
        part = len(self._parts)
        self._parts.append(stem.with_suffix(".npy"))
        for row, key in enumerate(keys):
            self._where[key] = (part, row)

    def read(self, keys: Sequence[str]) -> np.ndarray:
        """``len(keys) x D`` float32 features of inputs the cache holds, in ``keys`` order."""
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        loaded = [np.load(p, mmap_mode="r", allow_pickle=False) for p in self._parts]
        dim = loaded[self._where[keys[0]][0]].shape[1]
        out = np.empty((len(keys), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            part, row = self._where[key]
            out[i] = loaded[part][row]
        return out


def cached_transform(
    folder: str | Path,
    source: Any,
    images: torch.Tensor,
    ids: Sequence[Any],
    desc: str = "features",
) -> np.ndarray:
    """``source.transform(images)``, computing only the inputs ``folder`` does not hold.

    Parameters
    ----------
    folder
        The cache folder of this source identity (:func:`source_identity` belongs in its name).
    source
        A fitted feature source.
    images
        ``N x C x H x W`` images in ``[0, 1]``.
    ids
        Their sample ids (``N``).
    desc
        What the progress bar and the log call the inputs.

    Returns
    -------
    numpy.ndarray
        ``N x D`` float32 features, in the order of ``ids``.
    """
    keys = row_keys(images, ids)
    cache = FeatureCache(folder)
    todo = cache.missing(keys)
    if todo and len(todo) >= ANNOUNCE_ROWS:
        log.info(
            "computing %s of %d inputs (%d already cached in %s)",
            desc,
            len(todo),
            len(keys) - len(todo),
            cache.folder,
        )
    parts = -(-len(todo) // PART_ROWS)
    for start in range(0, len(todo), PART_ROWS):
        rows = torch.as_tensor(np.asarray(todo[start : start + PART_ROWS], dtype=np.int64))
        what = desc if parts == 1 else f"{desc} ({start // PART_ROWS + 1}/{parts})"
        feats = source.transform(images[rows], desc=what)
        cache.add([keys[int(i)] for i in rows], feats)
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return cache.read(keys)
