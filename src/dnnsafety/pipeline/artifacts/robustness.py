"""``robustness.json``: corruption, missing-data and fault sweeps of ``dnnsafety robustness``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    JSONObject,
    Problem,
    get_int,
    get_object,
    get_str,
)


def _grid(data: JSONObject, key: str, optional: bool = True) -> Any:
    """``{row: {column: number}}`` (or absent when ``optional``)."""
    value = get_object(data, key, optional=optional)
    if value is None:
        return None
    for row, cells in value.items():
        if not isinstance(cells, dict):
            raise Problem(f"{key}.{row} must be an object of numbers")
        for col, v in cells.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise Problem(f"{key}.{row}.{col} must be a number")
    return value


@dataclass(frozen=True)
class Robustness(Artifact):
    """``robustness.json``.

    Attributes
    ----------
    images
        What the sweeps ran on: ``{split, n, selection}``.
    clean_accuracy
        The model's accuracy on those images, unchanged.
    accuracy
        ``{corruption: {severity: accuracy}}`` (severities as strings, "1" to "5").
    families
        ``{corruption: family}`` (noise, blur, weather, digital, scenario).
    missing
        ``{kind: {rate: accuracy}}`` (rates as strings).
    corruption_errors
        ``{corruption: CE}`` against ``reference`` (ImageNet-C's corruption error).
    mce
        The mean corruption error over ``corruption_errors``.
    reference
        The reference model of the CE: ``{run, clean_accuracy}``.
    faults
        The fault campaign: ``{kind, n, bits, rate, critical, by_layer, by_bit, ranger?}``.
    settings
        Seed, severities, rates and the command's options.
    schema_version
        Layout version.
    """

    FILE: ClassVar[str] = "robustness.json"
    COMMAND: ClassVar[str] = "robustness"
    WHAT: ClassVar[str] = "robustness sweep"

    images: JSONObject
    clean_accuracy: float
    accuracy: dict[str, dict[str, float]] | None = None
    families: dict[str, str] | None = None
    missing: dict[str, dict[str, float]] | None = None
    corruption_errors: dict[str, float] | None = None
    mce: float | None = None
    reference: JSONObject | None = None
    faults: JSONObject | None = None
    settings: JSONObject | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        clean = data.get("clean_accuracy")
        if isinstance(clean, bool) or not isinstance(clean, int | float):
            raise Problem("'clean_accuracy' must be a number")
        mce = data.get("mce")
        if mce is not None and (isinstance(mce, bool) or not isinstance(mce, int | float)):
            raise Problem("'mce' must be a number")
        images = get_object(data, "images")
        get_int(images, "n")
        get_str(images, "split")
        return cls(
            images=images,
            clean_accuracy=float(clean),
            accuracy=_grid(data, "accuracy"),
            families=get_object(data, "families", optional=True),
            missing=_grid(data, "missing"),
            corruption_errors=get_object(data, "corruption_errors", optional=True),
            mce=None if mce is None else float(mce),
            reference=get_object(data, "reference", optional=True),
            faults=get_object(data, "faults", optional=True),
            settings=get_object(data, "settings", optional=True),
            schema_version=version,
        )
