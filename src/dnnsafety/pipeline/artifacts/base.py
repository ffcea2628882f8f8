"""What the typed artifacts share: versions, errors, field checks, reading and writing."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from dnnsafety.exceptions import RunDirError
from dnnsafety.runs import RunDir, write_json

SCHEMA_VERSION = 1
"""Version of the layout written today (1: version 0 plus the ``schema_version`` key)."""
KNOWN_VERSIONS = frozenset({0, 1})
"""Versions :meth:`from_json` reads; a file without ``schema_version`` is version 0."""

JSONObject = dict[str, Any]


class ArtifactError(RunDirError):
    """A run folder's result file is missing, malformed or of a version this code cannot read."""


class Problem(Exception):
    """What is wrong with a file's content; ``from_json`` turns it into an
    :class:`ArtifactError` naming the file."""


# --------------------------------------------------------------------------- field checks


def kind_of(value: Any) -> str:
    """The JSON kind of ``value`` for messages (``null``, ``str``, ``list`` ...)."""
    return "null" if value is None else type(value).__name__


def get_int(data: JSONObject, key: str, *, optional: bool = False) -> Any:
    """``data[key]``, which must be an integer (or absent / null when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(f"{key!r} must be an integer, not {kind_of(value)}")
    return value


def get_str(data: JSONObject, key: str, *, optional: bool = False) -> Any:
    """``data[key]``, which must be a string (or absent / null when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise Problem(f"{key!r} must be a string, not {kind_of(value)}")
    return value


def get_bool(data: JSONObject, key: str, *, optional: bool = False) -> Any:
    """``data[key]``, which must be true or false (or absent / null when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise Problem(f"{key!r} must be true or false, not {kind_of(value)}")
    return value


def get_list(data: JSONObject, key: str, *, optional: bool = False) -> Any:
    """``data[key]``, which must be a list (or absent / null when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, list):
        raise Problem(f"{key!r} must be a list, not {kind_of(value)}")
    return value


def get_object(data: JSONObject, key: str, *, optional: bool = False) -> Any:
    """``data[key]``, which must be an object (or absent / null when ``optional``)."""
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise Problem(f"{key!r} must be an object, not {kind_of(value)}")
    return value


def get_plugin(data: JSONObject, key: str) -> Any:
    """``data[key]``, a plug-in as written: its name, or an object ``{name, ...}``."""
    value = data.get(key)
    if not isinstance(value, str | dict):
        raise Problem(f"{key!r} must be a name or an object, not {kind_of(value)}")
    return value


def fields_to_json(obj: Any) -> JSONObject:
    """The dataclass's fields as a JSON object; ``None`` fields are left out (absent keys)."""
    out: JSONObject = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None or not f.metadata.get("json", True):
            continue
        if hasattr(value, "to_json"):
            value = value.to_json()
        elif isinstance(value, dict) and any(hasattr(v, "to_json") for v in value.values()):
            value = {k: v.to_json() for k, v in value.items()}
        out[f.name] = value
    return out


def read_version(data: JSONObject) -> int:
    """The file's ``schema_version`` (0 when absent); :class:`Problem` when unknown."""
    version = data.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise Problem(f"'schema_version' must be an integer, not {kind_of(version)}")
    if version not in KNOWN_VERSIONS:
        newest = max(KNOWN_VERSIONS)
        what = "newer than" if version > newest else "not one of"
        raise Problem(
            f"schema_version {version} is {what} the versions this dnnsafety reads (up to "
            f"{newest}); it was written by another dnnsafety version"
        )
    return version


# --------------------------------------------------------------------------- the artifacts


class Artifact:
    """What the artifacts share: their file, the command that writes it, the error format.

    A template: :meth:`from_json` checks the object and its version and turns every
    :class:`Problem` into an :class:`ArtifactError` naming the file; each artifact writes only
    :meth:`_parse`. :meth:`to_json` writes the dataclass fields (``None`` ones left out).
    """

    FILE: ClassVar[str] = ""
    COMMAND: ClassVar[str] = ""
    WHAT: ClassVar[str] = ""

    def to_json(self) -> JSONObject:
        """The file's content (keys of absent optional fields are left out)."""
        return fields_to_json(self)

    @classmethod
    def from_json(cls, data: Any, source: str | Path | None = None) -> Self:
        """Parse the file's content; ``source`` (its path) goes into error messages.

        Raises
        ------
        ArtifactError
            When ``data`` is not this file's content in a known version.
        """
        try:
            if not isinstance(data, dict):
                raise Problem(f"it holds {kind_of(data)}, not a JSON object")
            return cls._parse(data, read_version(data), source)
        except Problem as exc:
            raise cls._error(str(exc), source) from None

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        """The artifact of the JSON object ``data`` of layout ``version``; raises
        :class:`Problem` on a bad field."""
        raise NotImplementedError

    @classmethod
    def _error(cls, problem: str, source: str | Path | None) -> ArtifactError:
        run = Path(source).parents[len(Path(cls.FILE).parts) - 1] if source else "RUN"
        name = str(source) if source else cls.FILE
        return ArtifactError(
            f"{name} is not a {cls.WHAT} this dnnsafety can read: {problem}. Re-run "
            f"`dnnsafety {cls.COMMAND} {run}` to write it again."
        )


# --------------------------------------------------------------------------- reading and writing

A = TypeVar("A", bound=Artifact)


def _folder(run: RunDir | str | Path) -> Path:
    return run.path if isinstance(run, RunDir) else Path(run)


def artifact_path(cls: type[Artifact], run: RunDir | str | Path) -> Path:
    """Where ``cls``'s file lives in the run folder ``run``."""
    return _folder(run) / cls.FILE


def read_artifact(cls: type[A], run: RunDir | str | Path) -> A:
    """Read and check ``cls``'s file of the run folder ``run``.

    Raises
    ------
    ArtifactError
        When the file is missing, not JSON, malformed or of an unknown version; the message
        names the file and the command that writes it again.
    """
    path = artifact_path(cls, run)
    folder = _folder(run)
    if not path.is_file():
        raise ArtifactError(
            f"{str(folder)!r} has no {cls.FILE}: run `dnnsafety {cls.COMMAND} {folder}` first."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise cls._error(f"it is not readable JSON ({exc})", path) from None
    return cls.from_json(data, source=path)


def write_artifact(run: RunDir | str | Path, artifact: Artifact) -> None:
    """Write ``artifact`` to its file in the run folder ``run`` (atomically, as standard JSON)."""
    write_json(artifact_path(type(artifact), run), artifact.to_json())
