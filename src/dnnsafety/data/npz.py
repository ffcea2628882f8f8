"""Load a dataset saved as a NumPy ``.npz`` archive into a :class:`Dataset`.

The archive holds one array per key (see :func:`load_npz` for the keys). It is read with
``allow_pickle=False``: arrays of Python objects are refused, since unpickling them could run
arbitrary code.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np

from dnnsafety.data.dataset import NOMINAL, SPLITS, UNKNOWN_LABEL, Dataset, Split, make_split
from dnnsafety.exceptions import InvalidInputError

__all__ = ["load_npz"]

logger = logging.getLogger(__name__)

_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
_LAYOUTS = ("NHWC", "NCHW")
_CHANNELS = (1, 3)

Layout = Literal["NHWC", "NCHW"]


def _fail(path: Path, key: str, problem: str, fix: str) -> InvalidInputError:
    return InvalidInputError(f"{path}: key {key!r} {problem}. {fix}")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the archive, without ever unpickling."""
    if not path.is_file():
        raise InvalidInputError(f"Data file {path} does not exist; check the path.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(
            f"{path} is not a readable .npz archive ({exc}). Save the data with numpy.savez or "
            "numpy.savez_compressed."
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidInputError(
            f"{path} holds a single array, not an .npz archive of named arrays. Save it with "
            "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
        )
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = np.asarray(archive[key])
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                    raise _fail(
                        path,
                        key,
                        "holds Python objects (dtype=object), which are not loaded because "
                        "unpickling can run arbitrary code",
                        "Save it as a numeric array, or as a fixed-width string array for "
                        "names, e.g. np.array(names, dtype=str).",
                    ) from None
                raise _fail(path, key, f"cannot be read ({exc})", "Re-save the archive.") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise _fail(
                    path, key, f"cannot be read ({exc})", "The archive is damaged; re-save it."
                ) from None
    return arrays


def _strings(path: Path, key: str, arr: np.ndarray, n: int | None) -> list[str]:
    """A 1-D string (or, for ids, integer) array as a list of str, checking its length."""
    if arr.ndim != 1:
        raise _fail(path, key, f"must be 1-D, got shape {arr.shape}", "Flatten it.")
    if arr.dtype.kind == "U":
        out = [str(v) for v in arr.tolist()]
    elif arr.dtype.kind == "S":
        try:
            out = [bytes(v).decode("utf-8") for v in arr.tolist()]
        except UnicodeDecodeError:
            raise _fail(
                path, key, "holds bytes that are not UTF-8 text", "Store it as a str array."
            ) from None
    elif arr.dtype.kind in "iu" and key.startswith("ids_"):
        out = [str(v) for v in arr.tolist()]
    else:
        raise _fail(
            path, key, f"must hold strings, got dtype {arr.dtype}", "Store it as a str array."
        )
    if n is not None and len(out) != n:
        raise _fail(
            path, key, f"has {len(out)} entries for {n} images", "Give one entry per image."
        )
    return out


def _guess_layout(shape: tuple[int, ...]) -> Layout | None:
    """``NHWC``/``NCHW`` from a 4-D shape; ``None`` when both or neither fit."""
    first, last = shape[1] in _CHANNELS, shape[3] in _CHANNELS
    if last and not first:
        return "NHWC"
    if first and not last:
        return "NCHW"
    return None


def _images(path: Path, key: str, arr: np.ndarray, layout: Layout | None) -> np.ndarray:
    """``N x C x H x W`` uint8 or float32 in [0, 1] from any accepted layout and dtype."""
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        if layout is None:
            raise _fail(
                path,
                key,
                f"has shape {arr.shape}, whose channel axis cannot be told",
                "Images must be N x H x W, N x H x W x C or N x C x H x W with C = 1 or 3; if "
                "both the second and last axis have size 1 or 3, add a key layout='NHWC' or "
                "layout='NCHW'.",
            )
        if layout == "NHWC":
            arr = arr.transpose(0, 3, 1, 2)
        if arr.shape[1] not in _CHANNELS:
            raise _fail(
                path,
                key,
                f"has {arr.shape[1]} channels in layout {layout}",
                "Use 1 (greyscale) or 3 (RGB) channels.",
            )
    else:
        raise _fail(
            path,
            key,
            f"must be 3-D (N x H x W) or 4-D (N x H x W x C or N x C x H x W), got shape "
            f"{arr.shape}",
            "Reshape the images.",
        )
    if arr.shape[0] == 0:
        raise _fail(path, key, "holds no images", "Drop the key or add images.")
    if min(arr.shape[2:]) < 1:
        raise _fail(path, key, f"has empty images (shape {arr.shape})", "Fix the array.")
    kind = arr.dtype.kind
    if kind == "u" and arr.dtype.itemsize == 1:
        return arr
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise _fail(
                path,
                key,
                f"holds integers {lo}..{hi}",
                "Integer images must lie in 0..255 (uint8); float images in [0, 1].",
            )
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise _fail(path, key, "contains NaN or infinite values", "Clean the images.")
        lo_f, hi_f = float(arr.min()), float(arr.max())
        if lo_f < 0.0 or hi_f > 1.0:
            raise _fail(
                path,
                key,
                f"holds floats in {lo_f:.3g}..{hi_f:.3g}",
                "Float images must lie in [0, 1]; divide 0..255 data by 255.",
            )
        return arr.astype(np.float32, copy=False)
    raise _fail(
        path,
        key,
        f"has dtype {arr.dtype}",
        "Images must be uint8 (0..255) or float (0..1).",
    )


def _labels(path: Path, key: str, arr: np.ndarray, n: int) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _fail(
            path,
            key,
            f"must be 1-D (one class index per image), got shape {arr.shape}",
            "For one-hot labels store y.argmax(axis=1).",
        )
    if arr.dtype.kind not in "iu":
        raise _fail(
            path,
            key,
            f"must hold integer class indices, got dtype {arr.dtype}",
            "Store y.astype(np.int64).",
        )
    if len(arr) != n:
        raise _fail(path, key, f"has {len(arr)} labels for {n} images", "Give one label per image.")
    if len(arr) and int(arr.max()) > np.iinfo(np.int64).max:
        raise _fail(path, key, f"holds the huge label {int(arr.max())}", "Labels must be 0..K-1.")
    if len(arr) and int(arr.min()) < 0:
        raise _fail(
            path, key, f"holds the negative label {int(arr.min())}", "Labels must be 0..K-1."
        )
    return arr.astype(np.int64)


def _resolve_layouts(
    path: Path, arrays: dict[str, np.ndarray], x_keys: list[str]
) -> dict[str, Layout | None]:
    given = arrays.get("layout")
    if given is not None:
        text = ""
        if given.size == 1 and given.dtype.kind in "US":
            value = given.reshape(-1)[0].item()
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        if text.strip().upper() not in _LAYOUTS:
            raise _fail(path, "layout", f"must be 'NHWC' or 'NCHW', got {given!r}", "Fix the key.")
        fixed: Layout = "NHWC" if text.strip().upper() == "NHWC" else "NCHW"
        return dict.fromkeys(x_keys, fixed)
    guesses: dict[str, Layout | None] = {
        k: _guess_layout(arrays[k].shape) if arrays[k].ndim == 4 else None for k in x_keys
    }
    decided = {g for k, g in guesses.items() if g is not None}
    if len(decided) == 1:  # an ambiguous array follows the others
        only = decided.pop()
        return {k: (g if g is not None else only) for k, g in guesses.items()}
    return guesses


def load_npz(path: str | Path) -> Dataset:
    """Load a dataset from a NumPy ``.npz`` archive.

    Parameters
    ----------
    path
        The archive. Keys (``<split>`` is ``train``, ``val``, ``test`` or ``pool``):

        ``x_train``, ``y_train``, ``x_test``, ``y_test``
            Required images and integer labels.
        ``x_val``, ``y_val``
            Optional validation split (both or neither).
        ``x_pool``, ``y_pool``
            Optional unlabeled pool; ``y_pool`` is optional. Without it every pool image gets
            :data:`~dnnsafety.data.dataset.UNKNOWN_LABEL` (-1), which the oracle refuses to
            reveal; give ``y_pool`` where labelling is simulated from the data.
        ``class_names``
            Optional string array; default ``"0"``, ``"1"``, ... up to the largest label.
        ``ids_<split>``
            Optional unique sample ids (strings or integers); default ``"<split>/<index>"``.
        ``scenario_<split>``
            Optional ground-truth scenario tag per image (evaluation only); empty strings
            mean ``"nominal"``. Without it the split's scenarios are unknown
            (:data:`~dnnsafety.data.dataset.UNKNOWN_SCENARIO`), never assumed nominal.
        ``layout``
            Optional ``"NHWC"`` or ``"NCHW"``, only needed when the layout is ambiguous.

    Returns
    -------
    Dataset
        Named after the file's stem.

    Raises
    ------
    InvalidInputError
        When a key is missing or malformed; the message names the key and the fix.

    Notes
    -----
    Images are uint8 in ``0..255`` (other integer types are accepted when their values lie in
    that range) or floats in ``[0, 1]``. Shapes ``N x H x W`` (greyscale), ``N x H x W x C``
    and ``N x C x H x W`` with ``C`` in (1, 3) are accepted. A 4-D array is read as NHWC when
    its last axis has size 1 or 3 and its second axis does not, as NCHW in the opposite case.
    When both (or neither) have size 1 or 3 the layout comes from the ``layout`` key, or from
    the other image arrays of the file when those are unambiguous and agree; otherwise the
    file is refused.
    """
    file = Path(path)
    arrays = _read_arrays(file)

    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise InvalidInputError(
            f"{file} lacks the key(s) {', '.join(missing)} (it has: "
            f"{', '.join(sorted(arrays)) or 'nothing'}). An .npz dataset needs x_train, y_train, "
            "x_test and y_test."
        )
    present = [s for s in SPLITS if f"x_{s}" in arrays]
    for split in SPLITS:
        for extra in (f"y_{split}", f"ids_{split}", f"scenario_{split}"):
            if extra in arrays and split not in present:
                raise _fail(
                    file, extra, f"is given but x_{split} is not", f"Add x_{split} or drop it."
                )
        if split in present and split != "pool" and f"y_{split}" not in arrays:
            raise InvalidInputError(f"{file}: x_{split} has no labels; add the key y_{split}.")
    known = {"class_names", "layout"} | {
        f"{prefix}_{s}" for s in SPLITS for prefix in ("x", "y", "ids", "scenario")
    }
    unknown = sorted(set(arrays) - known)
    if unknown:
        warnings.warn(
            f"{file}: ignoring unknown key(s) {', '.join(unknown)}; known keys are x_<split>, "
            "y_<split>, ids_<split>, scenario_<split>, class_names and layout.",
            UserWarning,
            stacklevel=2,
        )

    layouts = _resolve_layouts(file, arrays, [f"x_{s}" for s in present])
    images = {s: _images(file, f"x_{s}", arrays[f"x_{s}"], layouts[f"x_{s}"]) for s in present}
    labels: dict[str, np.ndarray] = {}
    for split in present:
        n = len(images[split])
        if f"y_{split}" in arrays:
            labels[split] = _labels(file, f"y_{split}", arrays[f"y_{split}"], n)

    if "class_names" in arrays:
        class_names = tuple(_strings(file, "class_names", arrays["class_names"], None))
        if not class_names:
            raise _fail(file, "class_names", "is empty", "List one name per class.")
        dupes = sorted({c for c in class_names if class_names.count(c) > 1})
        if dupes:
            raise _fail(
                file, "class_names", f"repeats {', '.join(dupes)}", "Class names must be unique."
            )
    else:
        top = max((int(y.max()) for y in labels.values() if len(y)), default=0)
        class_names = tuple(str(i) for i in range(top + 1))
    for split, y in labels.items():
        if len(y) and int(y.max()) >= len(class_names):
            raise _fail(
                file,
                f"y_{split}",
                f"holds label {int(y.max())}, outside the {len(class_names)} classes of "
                "class_names",
                "Labels must be 0..K-1 with K = len(class_names).",
            )

    shapes = {s: tuple(images[s].shape[1:]) for s in present}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"x_{s}: {'x'.join(map(str, shp))}" for s, shp in shapes.items())
        raise InvalidInputError(
            f"{file}: the splits have different image shapes (C x H x W) ({listed}). Resize "
            "them to one size."
        )

    splits: dict[str, Split] = {}
    for split in present:
        n = len(images[split])
        ids_key, scen_key = f"ids_{split}", f"scenario_{split}"
        if ids_key in arrays:
            ids = _strings(file, ids_key, arrays[ids_key], n)
            if len(set(ids)) != n:
                dup = next(i for i, c in Counter(ids).items() if c > 1)
                raise _fail(file, ids_key, f"repeats the id {dup!r}", "Ids must be unique.")
        else:
            ids = [f"{split}/{i}" for i in range(n)]
        scenarios = None
        if scen_key in arrays:
            scenarios = [s or NOMINAL for s in _strings(file, scen_key, arrays[scen_key], n)]
        # a pool without labels: unknown (-1), hidden like all pool labels
        y = labels[split] if split in labels else np.full(n, UNKNOWN_LABEL, dtype=np.int64)
        splits[split] = make_split(split, ids, images[split], y, scenarios)

    dataset = Dataset(name=file.stem, class_names=class_names, splits=splits)
    logger.info("Loaded %s: %s.", file, dataset.describe())
    return dataset
