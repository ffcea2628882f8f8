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
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.runs import RunDir, safe_name, write_bytes, write_json, write_text
from dnnsafety.selection import Selection

SELECTION_DIR = "selection"
MAX_LABELS_BYTES = 64 * 2**20
"""The largest labels file read (64 MiB: about a million rows of long ids)."""


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


def read_labels(
    path: Path,
    expected: Sequence[str],
    class_names: Sequence[str],
    max_rows: int | None = None,
) -> dict[str, int]:
    """Labels from a filled-in CSV (``sample_id,label``), checked against the selection.

    The file is read row by row, never whole: a file over :data:`MAX_LABELS_BYTES`, or with
    more data rows than ``max_rows`` (the pool size: no selection can be larger), is refused
    before its content is kept. A label is a class name or index. Every problem is reported
    at once, with row numbers: missing or invalid labels, duplicate ids, ids that were not
    selected, selected ids absent from the file.

    Parameters
    ----------
    path
        The CSV file; UTF-8 (a byte-order mark is allowed), a header row naming ``sample_id``
        and ``label`` (other columns are ignored).
    expected
        The sample ids of the selection.
    class_names
        The dataset's classes; label ``i`` means ``class_names[i]``.
    max_rows
        The most data rows the file may have; default: no limit but the size cap.

    Returns
    -------
    dict
        Sample id -> class index, one entry per expected id.

    Raises
    ------
    InvalidInputError
        For a missing, oversized, unreadable or badly filled file; the message names the file,
        the rows and the fix.
    """
    if not path.is_file():
        raise InvalidInputError(
            f"Labels file {str(path)!r} does not exist. Pass the labels.csv that `dnnsafety "
            "select` wrote (selection/<strategy>/labels.csv), filled in."
        )
    size = path.stat().st_size
    if size > MAX_LABELS_BYTES:
        raise InvalidInputError(
            f"{str(path)!r} is {size / 2**20:.0f} MiB, more than a labels file can be "
            f"({MAX_LABELS_BYTES // 2**20} MiB; one short row per selected image, "
            f"{len(expected)} here). Pass the labels.csv that `dnnsafety select` wrote."
        )
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return _parse_labels(csv.reader(fh), str(path), expected, class_names, max_rows)
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{str(path)!r} is not UTF-8 text; save the CSV as UTF-8."
        ) from None


def _parse_labels(
    reader: Iterator[list[str]],
    name: str,
    expected: Sequence[str],
    class_names: Sequence[str],
    max_rows: int | None,
) -> dict[str, int]:
    """The body of :func:`read_labels`: checks every row of an open CSV reader."""
    try:
        header = [f.strip() for f in next(reader, [])]
    except csv.Error as exc:
        raise InvalidInputError(f"{name!r}: the header row is not valid CSV ({exc}).") from None
    if "sample_id" not in header or "label" not in header:
        raise InvalidInputError(
            f"{name!r} needs the columns sample_id,label; found {', '.join(header) or 'none'}."
        )
    id_col, label_col = header.index("sample_id"), header.index("label")
    by_name = {cls: i for i, cls in enumerate(class_names)}
    wanted = set(expected)
    labels: dict[str, int] = {}
    problems = _ProblemList()
    first_row: dict[str, int] = {}
    row_no = 1
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise InvalidInputError(
                f"{name!r}, row {row_no + 1}: not valid CSV ({exc}). Save the file as plain "
                "CSV (sample_id,label per row)."
            ) from None
        if fields is None:
            break
        row_no += 1
        if max_rows is not None and row_no - 1 > max_rows:
            raise InvalidInputError(
                f"{name!r} has more than {max_rows} data rows, more than the pool has images; "
                "it cannot be the labels of this run's selection. Pass the labels.csv that "
                "`dnnsafety select` wrote."
            )
        if not any(f.strip() for f in fields):
            continue  # a blank line
        if len(fields) > len(header):
            problems.add(
                f"row {row_no}: more fields than the header (quote a label that has a comma)"
            )
            continue
        sid = fields[id_col].strip() if id_col < len(fields) else ""
        raw = fields[label_col].strip() if label_col < len(fields) else ""
        if sid in first_row:
            problems.add(
                f"row {row_no}: duplicate sample_id {sid!r} (first in row {first_row[sid]})"
            )
            continue
        if sid not in wanted:
            problems.add(f"row {row_no}: unknown sample_id {sid!r} (not in the selection)")
            continue
        first_row[sid] = row_no
        if not raw:
            problems.add(f"row {row_no}: missing label for {sid!r}")
            continue
        value = by_name.get(raw)
        if value is None and raw.lstrip("-").isdigit() and 0 <= int(raw) < len(class_names):
            value = int(raw)
        if value is None:
            problems.add(
                f"row {row_no}: label {raw!r} for {sid!r} is not a class name or index "
                f"0..{len(class_names) - 1}"
            )
            continue
        labels[sid] = value
    absent = [s for s in expected if s not in first_row]
    if absent:
        problems.add(
            f"{len(absent)} selected id(s) missing from the file: {', '.join(absent[:5])}"
            + (" ..." if len(absent) > 5 else "")
        )
    problems.raise_if_any(name)
    return labels


class _ProblemList:
    """The first few problems of a file, and how many there were (bounded memory)."""

    SHOWN = 20

    def __init__(self) -> None:
        self.items: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.items) < self.SHOWN:
            self.items.append(text)

    def raise_if_any(self, name: str) -> None:
        if not self.count:
            return
        shown = "\n  ".join(self.items)
        more = f"\n  ... and {self.count - len(self.items)} more" if self.count > self.SHOWN else ""
        raise InvalidInputError(f"{name!r} has {self.count} problem(s):\n  {shown}{more}")
