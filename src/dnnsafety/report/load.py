"""Read the result files of a run folder for the report; optional files may be missing.

Nothing here computes results: files are read as they are (``clusters.json``,
``analysis/layers.json`` and ``comparison.json`` through their typed artifacts,
:mod:`dnnsafety.pipeline.artifacts`), malformed optional files are logged and treated as
absent, and images are only embedded when they are PNG files inside the run folder (a path in
a JSON file cannot make the report read anything else).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dnnsafety.exceptions import RunDirError
from dnnsafety.pipeline.artifacts import (
    AnalysisAgreement,
    ArtifactError,
    BiasReport,
    Clusters,
    Comparison,
    LayerTable,
    artifact_path,
    read_artifact,
)
from dnnsafety.runs import CONFIG_FILE, SAMPLES_FILE, STAGES_FILE, RunDir

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 64 * 1024 * 1024
SAMPLE_COLUMNS = ("sample_id", "label", "pred", "scenario")
UNKNOWN_SCENARIO = "unknown"  # the data gave no ground-truth scenario: not shown as one


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG header, or ``None`` when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@dataclass(frozen=True)
class Image:
    """An embedded PNG: its ``data:`` URI and pixel size."""

    uri: str
    width: int
    height: int


@dataclass
class RunData:
    """Everything the report shows, read from one run folder.

    Attributes other than ``path`` and ``metrics`` are ``None`` when their file is missing or
    unreadable.
    """

    path: Path
    metrics: dict[str, Any]
    dataset: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    config_text: str | None = None
    training: dict[str, Any] | None = None
    stages: dict[str, Any] | None = None
    clusters: dict[str, Any] | None = None
    layers: dict[str, Any] | None = None
    projection: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    retrained: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: pd.DataFrame | None = None
    bias: dict[str, Any] | None = None
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    _images: dict[str, Image | None] = field(default_factory=dict, repr=False)

    @property
    def class_names(self) -> list[str]:
        """Class names from metrics.json (or dataset.json), as strings."""
        names = self.metrics.get("class_names")
        if not isinstance(names, list) and self.dataset is not None:
            names = self.dataset.get("classes")
        return [str(n) for n in names] if isinstance(names, list) else []

    def image(self, relative: Any) -> Image | None:
        """The PNG at ``relative`` (a path inside the run folder) as an :class:`Image`.

        ``None`` when the path is not a string, leaves the run folder, is missing or is not a
        PNG file. Each file is read once, however often it is shown.
        """
        if not isinstance(relative, str) or not relative:
            return None
        if relative not in self._images:
            self._images[relative] = self._load_image(relative)
        return self._images[relative]

    def _load_image(self, relative: str) -> Image | None:
        root = self.path.resolve()
        try:
            target = (root / relative).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        if not target.is_relative_to(root) or not target.is_file():
            log.debug("image %r is not a file inside the run folder; not shown", relative)
            return None
        if target.stat().st_size > MAX_IMAGE_BYTES:
            log.warning("image %s is larger than %d bytes; not embedded", target, MAX_IMAGE_BYTES)
            return None
        data = target.read_bytes()
        size = png_size(data)
        if size is None:
            log.warning("%s is not a PNG file; not embedded", target)
            return None
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return Image(uri, *size)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s is unreadable (%s); its section is left out", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("%s does not hold a JSON object; its section is left out", path)
        return None
    return data


def _read_artifact(
    cls: type[Clusters | LayerTable | Comparison | BiasReport | AnalysisAgreement], run: Path
) -> dict[str, Any] | None:
    """The content of a typed artifact (:mod:`dnnsafety.pipeline.artifacts`) as its dataclass
    writes it; ``None`` (with a warning that says how to re-run) when missing or unreadable."""
    if not artifact_path(cls, run).is_file():
        return None
    try:
        return read_artifact(cls, run).to_json()
    except ArtifactError as exc:
        log.warning("%s; its section is left out", str(exc).rstrip("."))
        return None


def _read_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s is unreadable (%s)", path, exc)
        return None, None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        log.warning("%s is not valid TOML (%s)", path, exc)
        return None, text


def _read_samples(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
        columns = [c for c in SAMPLE_COLUMNS if c in names]
        if "sample_id" not in columns:
            return None
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning("%s is unreadable (%s); sample details are left out", path, exc)
        return None


def load_run(run_dir: str | Path) -> RunData:
    """Read the result files of ``run_dir``.

    Raises
    ------
    RunDirError
        When ``run_dir`` is not a folder, or holds no ``metrics.json`` and ``samples.parquet``
        (i.e. ``dnnsafety evaluate`` has not run there).
    """
    run = RunDir(run_dir, create=False)
    path = run.path
    missing = [name for name in (METRICS_FILE, SAMPLES_FILE) if not (path / name).is_file()]
    if missing:
        raise RunDirError(
            f"{str(path)!r} is not an evaluated run folder: {' and '.join(missing)} missing. "
            f"Run `dnnsafety evaluate {path}` first (or pass the folder a run wrote)."
        )
    metrics = _read_json(path / METRICS_FILE)
    if metrics is None:
        raise RunDirError(
            f"{str(path / METRICS_FILE)!r} is not a valid metrics file; re-run "
            f"`dnnsafety evaluate {path}`."
        )
    config, config_text = _read_config(path / CONFIG_FILE)
    return RunData(
        path=path,
        metrics=metrics,
        dataset=_read_json(path / "dataset.json"),
        config=config,
        config_text=config_text,
        training=_read_json(path / "training.json"),
        stages=_read_json(path / STAGES_FILE),
        clusters=_read_artifact(Clusters, path),
        layers=_read_artifact(LayerTable, path),
        projection=_read_json(path / "analysis" / "map.json"),
        comparison=_read_artifact(Comparison, path),
        retrained=_read_retrained(path / "retrained"),
        samples=_read_samples(path / SAMPLES_FILE),
        bias=_read_artifact(BiasReport, path),
        alternatives=_read_alternatives(path),
    )


def _read_retrained(folder: Path) -> dict[str, dict[str, Any]]:
    """``retrained/<strategy>/result.json`` of every `dnnsafety retrain`, by strategy."""
    if not folder.is_dir():
        return {}
    found = {p.parent.name: _read_json(p) for p in sorted(folder.glob("*/result.json"))}
    return {k: v for k, v in found.items() if isinstance(v, dict)}


ALT_DIR = "analysis/alt"


def _read_alternatives(path: Path) -> dict[str, dict[str, Any]]:
    """Second analyses (``analysis/alt/<name>/``): their ``clusters`` and ``agreement`` with
    the main analysis, by name; those missing either file are left out."""
    folder = path / ALT_DIR
    if not folder.is_dir():
        return {}
    found: dict[str, dict[str, Any]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        clusters = _read_artifact(Clusters, sub)
        agreement = _read_artifact(AnalysisAgreement, sub)
        if clusters is not None and agreement is not None:
            found[sub.name] = {"clusters": clusters, "agreement": agreement}
    return found
