"""Save and load a fitted detector as plain arrays and JSON: no pickle, no code runs on load.

``<stem>.json`` holds the registered name, the constructor parameters and the scalar learned
attributes; ``<stem>.npz`` the array attributes (a dict of arrays, as the autoencoder's
weights, is stored key by key as ``attr/key``). Loading builds the class from
:data:`~dnnsafety.detection.DETECTORS` by name and sets the attributes back; detectors whose
state is a third-party model (the PyOD wrappers, ``_refit_on_load``) are refitted from their
saved training rows, deterministically. ``np.load(allow_pickle=False)`` refuses object arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dnnsafety.detection.base import DETECTORS, Detector
from dnnsafety.exceptions import InvalidInputError

__all__ = ["FORMAT_VERSION", "load_detector", "save_detector"]

FORMAT_VERSION = 1


def _learned(det: Detector) -> dict[str, Any]:
    return {k: v for k, v in vars(det).items() if k.endswith("_") and not k.startswith("_")}


def save_detector(det: Detector, stem: str | Path) -> tuple[Path, Path]:
    """Write ``det`` to ``<stem>.json`` and ``<stem>.npz``; return both paths.

    Raises
    ------
    InvalidInputError
        If a parameter is not JSON (a model object given to the constructor) or a learned
        attribute is neither an array, a dict of arrays, a JSON scalar nor refittable.
    """
    stem = Path(stem)
    det._require_fitted("saving it")
    params = det.get_params()
    try:
        json.dumps(params)
    except TypeError as exc:
        raise InvalidInputError(
            f"{type(det).__name__} has parameters that are not plain values ({exc}); it "
            "cannot be saved without pickle."
        ) from None
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    refit = bool(getattr(det, "_refit_on_load", False))
    for key, value in _learned(det).items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        elif isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
            arrays.update({f"{key}/{k}": v for k, v in value.items()})
            scalars[key] = {"dict_of_arrays": sorted(value)}
        elif isinstance(value, bool | int | float | str) or value is None:
            scalars[key] = {"value": value}
        elif isinstance(value, np.integer | np.floating):
            scalars[key] = {"value": value.item()}
        elif not refit:
            raise InvalidInputError(
                f"{type(det).__name__}.{key} ({type(value).__name__}) cannot be saved as arrays."
            )
    meta = {
        "format_version": FORMAT_VERSION,
        "name": det.name,
        "params": params,
        "scalars": scalars,
        "refit": refit,
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    with open(npz, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    js.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return js, npz


def load_detector(stem: str | Path) -> Detector:
    """The detector saved by :func:`save_detector` under ``stem``.

    Raises
    ------
    InvalidInputError
        If the files are missing, of another format version, or name an unknown detector.
    """
    stem = Path(stem)
    js, npz = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not js.is_file() or not npz.is_file():
        raise InvalidInputError(
            f"No saved detector at {stem} (.json and .npz): run `dnnsafety detect RUN_DIR` first."
        )
    meta = json.loads(js.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"{js} has format version {meta.get('format_version')!r}; this dnnsafety reads "
            f"{FORMAT_VERSION}. Run `dnnsafety detect RUN_DIR` again."
        )
    det: Detector = DETECTORS.create(meta["name"], meta["params"])
    with np.load(npz, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in arrays.items():
        if "/" not in key:
            setattr(det, key, value)
    for key, spec in meta["scalars"].items():
        if "dict_of_arrays" in spec:
            setattr(det, key, {k: arrays[f"{key}/{k}"] for k in spec["dict_of_arrays"]})
        else:
            setattr(det, key, spec["value"])
    if meta.get("refit"):
        det.refit(arrays["fit_x_"])
    return det
