"""Per-layer LRP heatmaps on disk, written batch by batch and resumable.

A heatmap folder holds one float32 ``.npy`` file per layer (``N x C x H x W`` or ``N x D``,
opened as a :class:`numpy.memmap`), ``targets.npy`` (explained class) and ``scores.npy``
(explained logit), ``ids.json`` (sample ids) and ``index.json``: layer names, shapes and files,
the rule set, a fingerprint of the arguments, ``rows_written`` and ``complete``.

:func:`compute_heatmaps` streams batches: it holds one batch of heatmaps in memory, writes its
rows into the memmaps, flushes them, and only then raises ``rows_written`` in ``index.json``
(an atomic rename, :func:`dnnsafety.runs.write_json`); ``complete`` becomes true after the last
batch. A run that stops halfway therefore leaves a folder whose index says how far it got:
calling :func:`compute_heatmaps` again with the same arguments resumes after the last recorded
row, and :meth:`HeatmapStore.open` refuses an incomplete folder unless asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ConfigError, InvalidInputError, RunDirError
from dnnsafety.features.lrp import (
    LayerInfo,
    RuleSet,
    _check_backend,
    as_batch,
    find_layers,
    get_ruleset,
    layer_relevance,
)
from dnnsafety.progress import progress_bar
from dnnsafety.runs import fingerprint, write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
IDS_FILE = "ids.json"
TARGETS_FILE = "targets.npy"
SCORES_FILE = "scores.npy"


def _file_name(position: int, layer: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", layer)
    return f"layer_{position:03d}_{safe}.npy"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{str(path)!r} is missing or unreadable ({exc}). Recompute the heatmaps with "
            "compute_heatmaps(..., overwrite=True)."
        ) from exc


class HeatmapStore:
    """A folder of per-layer heatmaps written by :func:`compute_heatmaps`.

    Use :meth:`open`; arrays are memory-mapped read-only, so a layer is read from disk only as
    far as it is used.
    """

    def __init__(self, path: Path, index: dict[str, Any], ids: list[str]) -> None:
        self.path = path
        self._index = index
        self._ids = np.asarray(ids, dtype=object)
        self._layers = {d["name"]: LayerInfo.from_dict(d) for d in index["layers"]}
        self._files = {d["name"]: d["file"] for d in index["layers"]}

    @classmethod
    def open(cls, path: str | Path, allow_incomplete: bool = False) -> HeatmapStore:
        """Open a heatmap folder.

        Parameters
        ----------
        path
            The folder given to :func:`compute_heatmaps`.
        allow_incomplete
            Open a folder whose run stopped before the last batch (only the first
            :attr:`rows_written` rows hold heatmaps).

        Raises
        ------
        RunDirError
            The folder is missing, unreadable, or incomplete (and ``allow_incomplete`` is false).
        """
        folder = Path(path)
        if not (folder / INDEX_FILE).is_file():
            raise RunDirError(
                f"{str(folder)!r} holds no heatmaps ({INDEX_FILE} is missing). Create it with "
                "dnnsafety.features.compute_heatmaps(model, images, ids, out_dir)."
            )
        index = _read_json(folder / INDEX_FILE)
        if not isinstance(index, dict) or index.get("format") != FORMAT_VERSION:
            raise RunDirError(
                f"{str(folder / INDEX_FILE)!r} is not a heatmap index of format "
                f"{FORMAT_VERSION}. Recompute with compute_heatmaps(..., overwrite=True)."
            )
        ids = _read_json(folder / IDS_FILE)
        store = cls(folder, index, [str(i) for i in ids])
        missing = [f for f in store._all_files() if not (folder / f).is_file()]
        if missing:
            raise RunDirError(
                f"Heatmap folder {str(folder)!r} lacks {', '.join(missing)}. Recompute with "
                "compute_heatmaps(..., overwrite=True)."
            )
        if not store.complete and not allow_incomplete:
            raise RunDirError(
                f"Heatmaps in {str(folder)!r} are incomplete: {store.rows_written} of "
                f"{len(store)} rows were written before the run stopped. Call compute_heatmaps "
                "again with the same arguments to resume, or open(..., allow_incomplete=True)."
            )
        return store

    def _all_files(self) -> list[str]:
        return [*self._files.values(), TARGETS_FILE, SCORES_FILE]

    # -- description ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index["n"])

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.rows_written}/{len(self)} rows"
        return (
            f"HeatmapStore({str(self.path)!r}, {len(self)} inputs, {len(self._layers)} layers, "
            f"ruleset={self.ruleset!r}, {state})"
        )

    @property
    def layers(self) -> list[str]:
        """All layer names, ``"input"`` first, in forward order."""
        return list(self._layers)

    @property
    def selectable_layers(self) -> list[str]:
        """Layers that layer selection may pick (all but the pixel-level map)."""
        return [name for name, info in self._layers.items() if not info.is_input]

    @property
    def ids(self) -> np.ndarray:
        """Sample ids, one per row."""
        return self._ids.copy()

    @property
    def ruleset(self) -> str:
        """Name of the LRP rule set."""
        return str(self._index["ruleset"])

    @property
    def complete(self) -> bool:
        """Whether every row was written."""
        return bool(self._index["complete"])

    @property
    def rows_written(self) -> int:
        """Number of leading rows that hold heatmaps."""
        return int(self._index["rows_written"])

    @property
    def info(self) -> dict[str, Any]:
        """A copy of the index (rule set, backend, layer descriptions, ...)."""
        return json.loads(json.dumps(self._index))

    def layer_info(self, layer: str) -> LayerInfo:
        """Description of one layer (module, call, shape, whether it is the input map)."""
        self._check_layer(layer)
        return self._layers[layer]

    def is_input(self, layer: str) -> bool:
        """Whether ``layer`` is the pixel-level map."""
        return self.layer_info(layer).is_input

    def _check_layer(self, layer: str) -> None:
        if layer not in self._layers:
            raise ConfigError(
                f"Unknown heatmap layer {layer!r}. This store has: {', '.join(self._layers)}."
            )

    # -- data -------------------------------------------------------------------------------------
    def array(self, layer: str) -> np.memmap:
        """The heatmaps of ``layer``: read-only memmap ``N x C x H x W`` (or ``N x D``)."""
        self._check_layer(layer)
        arr = np.load(self.path / self._files[layer], mmap_mode="r")
        if not isinstance(arr, np.memmap):  # pragma: no cover - np.load returns memmaps here
            raise RunDirError(f"{self._files[layer]!r} could not be memory-mapped.")
        return arr

    def flat(self, layer: str) -> np.memmap:
        """The heatmaps of ``layer`` flattened per input: read-only memmap ``N x D``."""
        arr = self.array(layer)
        flat: np.memmap = arr.reshape(len(arr), -1)  # type: ignore[assignment]
        return flat

    @property
    def targets(self) -> np.ndarray:
        """The explained class per input."""
        return np.load(self.path / TARGETS_FILE)

    @property
    def scores(self) -> np.ndarray:
        """The explained logit per input (the relevance the backward pass started from)."""
        return np.load(self.path / SCORES_FILE)


def _model_fingerprint(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _check_ids(ids: Sequence[Any] | np.ndarray, n: int) -> list[str]:
    id_list = [str(i) for i in np.asarray(ids, dtype=object).ravel()]
    if len(id_list) != n:
        raise InvalidInputError(f"Got {len(id_list)} sample ids for {n} images; they must match.")
    if len(set(id_list)) != n:
        raise InvalidInputError("Sample ids must be unique; some appear more than once.")
    return id_list


def _remove_old(folder: Path) -> None:
    """Delete the files of a previous heatmap run (only files this module writes)."""
    names = {INDEX_FILE, IDS_FILE, TARGETS_FILE, SCORES_FILE}
    for f in folder.iterdir():
        if f.name in names or (f.name.startswith("layer_") and f.suffix == ".npy"):
            f.unlink()


def _prepare(
    folder: Path, key: str, header: dict[str, Any], ids: list[str], overwrite: bool
) -> tuple[dict[str, Any], bool]:
    """Return the index to continue from and whether the files already exist."""
    index_path = folder / INDEX_FILE
    if index_path.exists():
        old = _read_json(index_path)
        if isinstance(old, dict) and old.get("key") == key and not overwrite:
            with contextlib.suppress(RunDirError):
                HeatmapStore.open(folder, allow_incomplete=True)
                return old, True
            logger.warning("heatmap files in %s are damaged; recomputing", folder)
        elif not overwrite:
            raise RunDirError(
                f"{str(folder)!r} already holds heatmaps computed with other arguments (model, "
                "images, layers, rule set or targets). Choose another folder or pass "
                "overwrite=True."
            )
        _remove_old(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / IDS_FILE, ids)
    index = {**header, "key": key, "rows_written": 0, "complete": False}
    return index, False


def compute_heatmaps(
    model: nn.Module,
    images: Tensor | np.ndarray,
    ids: Sequence[Any] | np.ndarray,
    out_dir: str | Path,
    layers: Sequence[str] | None = None,
    ruleset: str | RuleSet = "default",
    batch_size: int = 64,
    progress: bool = True,
    *,
    backend: str = "auto",
    targets: Tensor | np.ndarray | None = None,
    overwrite: bool = False,
) -> HeatmapStore:
    """Compute LRP heatmaps of every chosen layer and stream them into ``out_dir``.

    Parameters
    ----------
    model
        The classifier (left unchanged; see :func:`~dnnsafety.features.layer_relevance`).
    images
        ``N x C x H x W`` floats (tensor, array or memmap; read one batch at a time).
    ids
        N unique sample ids.
    out_dir
        Output folder. If it holds a run with the same arguments, that run is resumed (or
        returned when complete).
    layers
        Layer names, or ``None`` for the default candidates (see
        :func:`~dnnsafety.features.find_layers`). ``"input"`` is always stored.
    ruleset
        ``"default"`` or ``"hudd"``.
    batch_size
        Images per backward pass; at most one batch of heatmaps is held in memory.
    progress
        Show a progress bar (when the CLI enabled bars).
    backend
        ``"auto"``, ``"fast"`` or ``"zennit"``.
    targets
        Classes to explain (default: the predicted class of each image).
    overwrite
        Replace a folder that holds heatmaps computed with other arguments.

    Returns
    -------
    HeatmapStore
        The complete store.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(
            f"The 'batch_size' parameter of compute_heatmaps must be an int >= 1. "
            f"Got {batch_size!r}."
        )
    rules = get_ruleset(ruleset)
    _check_backend(backend)
    n = len(images)
    if n == 0:
        raise InvalidInputError("No images given; compute_heatmaps needs at least one.")
    id_list = _check_ids(ids, n)
    if targets is not None and len(targets) != n:
        raise InvalidInputError(f"Got {len(targets)} targets for {n} images; they must match.")
    rules.check(model)
    plan = find_layers(model, as_batch(images[:1], model), layers)

    target_key = None if targets is None else np.asarray(targets).astype(np.int64).tolist()
    header: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "n": n,
        "ruleset": rules.name,
        "layers": [
            {**info.to_dict(), "file": _file_name(i, info.name)} for i, info in enumerate(plan)
        ],
    }
    key = fingerprint(header, id_list, _model_fingerprint(model), target_key)
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise RunDirError(f"{str(folder)!r} exists and is not a folder; choose another out_dir.")
    index, exists = _prepare(folder, key, header, id_list, overwrite)
    if index["complete"]:
        logger.info("heatmaps in %s are complete; nothing to do", folder)
        return HeatmapStore.open(folder)

    mode = "r+" if exists else "w+"
    maps = {
        d["name"]: np.lib.format.open_memmap(
            folder / d["file"], mode=mode, dtype=np.float32, shape=(n, *d["shape"])
        )
        for d in header["layers"]
    }
    out_targets = np.lib.format.open_memmap(
        folder / TARGETS_FILE, mode=mode, dtype=np.int64, shape=(n,)
    )
    out_scores = np.lib.format.open_memmap(
        folder / SCORES_FILE, mode=mode, dtype=np.float32, shape=(n,)
    )
    start = int(index["rows_written"])
    if start:
        logger.info("resuming heatmaps in %s at row %d of %d", folder, start, n)
    write_json(folder / INDEX_FILE, index)
    bar = progress_bar(total=n, desc="LRP heatmaps", unit="img") if progress else None
    try:
        if bar is not None:
            bar.update(start)
        for lo in range(start, n, batch_size):
            hi = min(lo + batch_size, n)
            batch_targets = None if targets is None else np.asarray(targets)[lo:hi]
            result = layer_relevance(
                model, images[lo:hi], plan, rules, backend=backend, targets=batch_targets
            )
            for name, arr in maps.items():
                arr[lo:hi] = result.maps[name].to(torch.float32).numpy()
                arr.flush()
            out_targets[lo:hi] = result.targets.numpy()
            out_scores[lo:hi] = result.scores.to(torch.float32).numpy()
            out_targets.flush()
            out_scores.flush()
            index["rows_written"] = hi
            index["backend"] = result.backend
            write_json(folder / INDEX_FILE, index)
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
        del maps, out_targets, out_scores
    index["complete"] = True
    write_json(folder / INDEX_FILE, index)
    return HeatmapStore.open(folder)
