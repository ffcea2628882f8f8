"""The optional metadata table: one row per image, matched by its path."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from dnnsafety.data.dataset import NOMINAL, UNKNOWN_SCENARIO
from dnnsafety.data.imagefolder._common import _listing, _Problems
from dnnsafety.exceptions import InvalidInputError


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
