"""The labelling workflow: the unsafe set goes out as images + a CSV, labels come back.

``dnnsafety select`` writes, under ``selection/<strategy>/``: ``images/<sample_id>.png``,
``labels.csv`` (columns ``sample_id,label``, the label empty), ``classes.txt`` (the valid
labels) and ``selection.json`` (what was selected and why: cluster, distance, cost). A person
fills in ``label`` with a class name or index; ``dnnsafety retrain --labels labels.csv``
reads it back with :func:`read_labels`, which names every bad row.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.runs import RunDir, safe_name, write_bytes, write_json, write_text
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
    shutil.rmtree(folder / "images", ignore_errors=True)  # images of an earlier selection
    for sid, image in zip(selection.ids, images, strict=True):
        arr = (image.detach().float().clamp(0, 1).numpy() * 255).astype(np.uint8)
        arr = arr[0] if arr.shape[0] == 1 else arr[:3].transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        write_bytes(folder / "images" / f"{safe_name(str(sid), keep='-_.')}.png", buf.getvalue())
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
    import json

    path = selection_dir(run, strategy) / "selection.json"
    if not path.is_file():
        raise InvalidInputError(
            f"No selection for strategy {strategy!r} in {str(run.path)!r}: run `dnnsafety "
            f"select {run.path} --strategy {strategy}` first."
        )
    data = json.loads(path.read_text(encoding="utf-8"))
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


def read_labels(path: Path, expected: Sequence[str], class_names: Sequence[str]) -> dict[str, int]:
    """Labels from a filled-in CSV (``sample_id,label``), checked against the selection.

    A label is a class name or index. Every problem is reported at once, with row numbers:
    missing or invalid labels, duplicate ids, ids that were not selected, selected ids absent
    from the file.
    """
    if not path.is_file():
        raise InvalidInputError(f"Labels file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{str(path)!r} is not UTF-8 text; save the CSV as UTF-8."
        ) from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "sample_id" not in fields or "label" not in fields:
        raise InvalidInputError(
            f"{str(path)!r} needs the columns sample_id,label; found {', '.join(fields) or 'none'}."
        )
    by_name = {name: i for i, name in enumerate(class_names)}
    wanted = set(expected)
    labels: dict[str, int] = {}
    problems: list[str] = []
    first_row: dict[str, int] = {}
    for row_no, raw_row in enumerate(reader, start=2):
        if None in raw_row:
            problems.append(
                f"row {row_no}: more fields than the header (quote a label that has a comma)"
            )
            continue
        row = {(k or "").strip(): (v or "").strip() for k, v in raw_row.items()}
        sid, raw = row.get("sample_id", ""), row.get("label", "")
        if sid in first_row:
            problems.append(
                f"row {row_no}: duplicate sample_id {sid!r} (first in row {first_row[sid]})"
            )
            continue
        first_row[sid] = row_no
        if sid not in wanted:
            problems.append(f"row {row_no}: unknown sample_id {sid!r} (not in the selection)")
            continue
        if not raw:
            problems.append(f"row {row_no}: missing label for {sid!r}")
            continue
        value = by_name.get(raw)
        if value is None and raw.lstrip("-").isdigit() and 0 <= int(raw) < len(class_names):
            value = int(raw)
        if value is None:
            problems.append(
                f"row {row_no}: label {raw!r} for {sid!r} is not a class name or index "
                f"0..{len(class_names) - 1}"
            )
            continue
        labels[sid] = value
    absent = [s for s in expected if s not in first_row]
    if absent:
        problems.append(
            f"{len(absent)} selected id(s) missing from the file: {', '.join(absent[:5])}"
            + (" ..." if len(absent) > 5 else "")
        )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InvalidInputError(f"{str(path)!r} has {len(problems)} problem(s):\n  {shown}{more}")
    return labels
