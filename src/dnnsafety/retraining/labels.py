"""The labels of the unsafe set, read back from the CSV a person filled in.

The selection goes out as images + ``labels.csv`` (:mod:`dnnsafety.pipeline.labels` writes
them into the run folder); :func:`read_labels` reads the filled-in file back and names every
bad row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from dnnsafety.exceptions import InvalidInputError

MAX_LABELS_BYTES = 64 * 2**20
"""The largest labels file read (64 MiB: about a million rows of long ids)."""


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
