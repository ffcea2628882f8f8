"""The selection handed out for labelling (images + a CSV) and read back, in the run folder.

``dnnsafety select`` writes, under ``selection/<strategy>/``: ``images/<sample_id>.png``,
``labels.csv`` (columns ``sample_id,label``, the label empty), ``classes.txt`` (the valid
labels) and ``selection.json`` (what was selected and why: cluster, distance, cost). A person
fills in ``label`` with a class name or index; ``dnnsafety retrain --labels labels.csv``
reads it back with :func:`dnnsafety.retraining.labels.read_labels`, which names every bad row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.runs import RunDir, atomic_folder, safe_name, write_json, write_text
from dnnsafety.selection import Selection

SELECTION_DIR = "selection"


def selection_dir(run: RunDir, strategy: str) -> Path:
    """Folder of a strategy's selection in the run folder."""
    return run / SELECTION_DIR / strategy


def export_selection(
    run: RunDir,
    strategy: str,
    selection: Selection,
    images: torch.Tensor,
    class_names: Sequence[str],
    meta: dict[str, Any],
) -> Path:
    """Write the images, the CSV to fill in and ``selection.json``; returns the CSV path."""
    folder = selection_dir(run, strategy)
    # the images replace an earlier selection's as one folder (they derive from the pool,
    # so one swap instead of a synced write per file)
    with atomic_folder(folder / "images") as tmp:
        for sid, image in zip(selection.ids, images, strict=True):
            arr = (image.detach().float().clamp(0, 1).numpy() * 255).astype(np.uint8)
            arr = arr[0] if arr.shape[0] == 1 else arr[:3].transpose(1, 2, 0)
            Image.fromarray(arr).save(tmp / f"{safe_name(str(sid), keep='-_.')}.png")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sample_id", "label"])
    for sid in selection.ids:
        writer.writerow([str(sid), ""])
    csv_path = folder / "labels.csv"
    write_text(csv_path, out.getvalue())
    write_text(folder / "classes.txt", "\n".join(f"{i}\t{n}" for i, n in enumerate(class_names)))
    record: dict[str, Any] = {
        "strategy": strategy,
        **meta,
        "cost": int(selection.cost),
        "ids": [str(s) for s in selection.ids],
        "info": selection.info,
    }
    if selection.cluster is not None:
        record["cluster"] = [int(c) for c in selection.cluster]
    if selection.distance is not None:
        record["distance"] = [float(d) for d in selection.distance]
    write_json(folder / "selection.json", record)
    return csv_path


def load_selection(run: RunDir, strategy: str) -> tuple[Selection, dict[str, Any]]:
    """The selection ``dnnsafety select`` saved for ``strategy``."""
    path = selection_dir(run, strategy) / "selection.json"
    if not path.is_file():
        raise InvalidInputError(
            f"No selection for strategy {strategy!r} in {str(run.path)!r}: run `dnnsafety "
            f"select {run.path} --strategy {strategy}` first."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or "ids" not in data or "cost" not in data:
        raise InvalidInputError(
            f"{str(path)!r} is damaged: run `dnnsafety select {run.path} --strategy "
            f"{strategy}` again."
        )
    cluster = np.asarray(data["cluster"], dtype=np.int64) if "cluster" in data else None
    distance = np.asarray(data["distance"], dtype=np.float64) if "distance" in data else None
    selection = Selection(
        np.asarray(data["ids"], dtype=object),
        int(data["cost"]),
        cluster=cluster,
        distance=distance,
        info=data.get("info", {}),
    )
    return selection, data


def selection_classes(run: RunDir, strategy: str) -> tuple[str, ...]:
    """The class names a selection's labels refer to, without loading the dataset.

    Read from the ``classes.txt`` that :func:`export_selection` wrote, or else from the run's
    ``metrics.json``.
    """
    path = selection_dir(run, strategy) / "classes.txt"
    if path.is_file():
        names = []
        for line in path.read_text(encoding="utf-8").splitlines():
            index, sep, name = line.partition("\t")
            if sep and index.strip().isdigit():
                names.append(name)
        if names:
            return tuple(names)
    metrics = run / "metrics.json"
    if metrics.is_file():
        try:
            recorded = json.loads(metrics.read_text(encoding="utf-8")).get("class_names")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            recorded = None
        if isinstance(recorded, list) and recorded:
            return tuple(str(n) for n in recorded)
    raise InvalidInputError(
        f"{str(run.path)!r} records no class names (selection/{strategy}/classes.txt and "
        f"metrics.json are missing): run `dnnsafety select {run.path} --strategy {strategy}` "
        "again."
    )


def pool_size(run: RunDir) -> int | None:
    """How many images the run's pool holds (from ``dataset.json``), or ``None`` if unknown."""
    path = run / "dataset.json"
    try:
        n = json.loads(path.read_text(encoding="utf-8")).get("pool", {}).get("n")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) else None
