"""``adversarial.json``: attacks, robust accuracy and detection of ``dnnsafety attack``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    JSONObject,
    Problem,
    fields_to_json,
    get_int,
    get_list,
    get_object,
    get_str,
    kind_of,
)


def _number(data: JSONObject, key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem(f"{key!r} must be a number, not {kind_of(value)}")
    return float(value)


@dataclass(frozen=True)
class AttackRecord:
    """One attack of ``adversarial.json``.

    Attributes
    ----------
    params
        The attack's parameters (library settings).
    norm
        ``"linf"`` or ``"l2"``: the norm of ``eps``.
    eps
        The budget of the stored adversarial inputs (pixel units of ``[0, 1]``).
    n
        Test inputs attacked.
    clean_accuracy, robust_accuracy
        Accuracy on the clean inputs and on their adversarial versions at ``eps``.
    success_rate
        Share of correctly classified inputs the library reports as flipped at ``eps``.
    curve
        Robust accuracy per budget: ``{"eps", "robust_accuracy", "success_rate",
        "clean_accuracy", "n"}`` rows.
    detection
        Per detector: ``auroc`` (successful adversarial vs clean test inputs), ``fpr`` /
        ``tpr`` (ROC points), ``flagged_adversarial`` and ``flagged_clean`` (shares flagged at
        the calibrated ``alpha``), or ``error`` when it could not run.
    files
        Paths (relative to the run folder) of the inputs, predictions and pictures.
    median_perturbation
        Median perturbation of the successful inputs, ``{"linf", "l2"}``.
    """

    params: JSONObject
    norm: str
    eps: float
    n: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float
    curve: list[JSONObject]
    detection: JSONObject
    files: JSONObject
    median_perturbation: JSONObject | None = None

    def to_json(self) -> JSONObject:
        return fields_to_json(self)

    @classmethod
    def from_json(cls, data: Any, name: str = "") -> AttackRecord:
        if not isinstance(data, dict):
            raise Problem(f"attack {name!r} holds {kind_of(data)}, not a JSON object")
        return cls(
            params=get_object(data, "params"),
            norm=get_str(data, "norm"),
            eps=_number(data, "eps"),
            n=get_int(data, "n"),
            clean_accuracy=_number(data, "clean_accuracy"),
            robust_accuracy=_number(data, "robust_accuracy"),
            success_rate=_number(data, "success_rate"),
            curve=get_list(data, "curve"),
            detection=get_object(data, "detection"),
            files=get_object(data, "files"),
            median_perturbation=get_object(data, "median_perturbation", optional=True),
        )


@dataclass(frozen=True)
class Adversarial(Artifact):
    """``adversarial.json``: one :class:`AttackRecord` per attack run on the folder.

    Attributes
    ----------
    attacks
        Attack name -> record, in the order they ran (a rerun replaces its entry).
    alpha
        Conformal level of the detectors' flags.
    schema_version
        Layout version (:data:`SCHEMA_VERSION`).
    """

    FILE: ClassVar[str] = "adversarial.json"
    COMMAND: ClassVar[str] = "attack"
    WHAT: ClassVar[str] = "adversarial evaluation"

    attacks: dict[str, AttackRecord]
    alpha: float = 0.05
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        attacks = get_object(data, "attacks")
        return cls(
            attacks={str(k): AttackRecord.from_json(v, str(k)) for k, v in attacks.items()},
            alpha=_number(data, "alpha"),
            schema_version=version,
        )
