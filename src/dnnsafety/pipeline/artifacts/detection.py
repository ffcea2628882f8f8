"""``detection.json``: the calibrated out-of-distribution monitor of ``dnnsafety detect``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    JSONObject,
    Problem,
    get_int,
    get_object,
    get_str,
    kind_of,
)


def _get_float(data: JSONObject, key: str, *, optional: bool = False) -> float | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem(f"{key!r} must be a number, not {kind_of(value)}")
    return float(value)


@dataclass(frozen=True)
class Detection(Artifact):
    """``detection.json``.

    Attributes
    ----------
    detector
        Registered detector name (:data:`dnnsafety.detection.DETECTORS`).
    params
        Its parameters.
    features
        The feature source for feature detectors (``None`` for logit / image detectors).
    alpha
        The level of the flags ``is_ood.<detector>`` (p-value ``<= alpha``).
    threshold
        Score above which an input is flagged at ``alpha`` (``None``: none can be, too few
        calibration inputs).
    n_fit, n_calibration
        Inputs fitted on (train) and calibrated on (val).
    false_alarm
        Empirical false-alarm rates on held-out in-distribution data: ``val_half``
        (calibrated on one random half of val, measured on the other) and ``nominal_test``
        (nominal test inputs, full calibration); each ``{alpha, rate, n}``.
    flagged
        Fraction flagged per split.
    per_scenario
        Per ground-truth scenario of the test split: ``{auroc, fpr95, n_id, n_ood}``, that
        scenario (OOD) against the nominal test inputs (ID); evaluation only.
    misclassification
        ``{auroc, n_errors, n_correct}``: errors vs correct test inputs by the same score.
    seconds
        Wall time of the stage.
    schema_version
        Layout version.
    """

    FILE: ClassVar[str] = "detection.json"
    COMMAND: ClassVar[str] = "detect"
    WHAT: ClassVar[str] = "detection result"

    detector: str
    params: JSONObject
    alpha: float
    n_fit: int
    n_calibration: int
    false_alarm: JSONObject
    flagged: JSONObject
    features: str | None = None
    threshold: float | None = None
    per_scenario: JSONObject | None = None
    misclassification: JSONObject | None = None
    seconds: float | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        alpha = _get_float(data, "alpha")
        assert alpha is not None
        return cls(
            detector=get_str(data, "detector"),
            params=get_object(data, "params"),
            alpha=alpha,
            n_fit=get_int(data, "n_fit"),
            n_calibration=get_int(data, "n_calibration"),
            false_alarm=get_object(data, "false_alarm"),
            flagged=get_object(data, "flagged"),
            features=get_str(data, "features", optional=True),
            threshold=_get_float(data, "threshold", optional=True),
            per_scenario=get_object(data, "per_scenario", optional=True),
            misclassification=get_object(data, "misclassification", optional=True),
            seconds=_get_float(data, "seconds", optional=True),
            schema_version=version,
        )
