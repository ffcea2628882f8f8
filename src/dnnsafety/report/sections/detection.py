"""The detection section: the calibrated out-of-distribution monitor (``detection.json``)."""

from __future__ import annotations

from dnnsafety.pipeline.artifacts import ArtifactError, Detection, read_artifact
from dnnsafety.report.format import number, table, text
from dnnsafety.report.load import RunData
from dnnsafety.report.sections import Context, register_section


def _pct(value: object) -> str:
    return "–" if not isinstance(value, int | float) else f"{100 * value:.1f}%"


@register_section("detection", "Out-of-distribution detection", order=55)
def detection_section(run: RunData) -> Context | None:
    """Calibration, false-alarm rates, AUROC / FPR@95 per scenario and the pictures written by
    ``dnnsafety detect``; left out when the run has no ``detection.json``."""
    try:
        det = read_artifact(Detection, run.path)
    except ArtifactError:
        return None
    name = det.detector
    alarms = [
        [text(k), number(v.get("alpha")), text(_pct(v.get("rate"))), number(v.get("n"))]
        for k, v in det.false_alarm.items()
        if isinstance(v, dict)
    ]
    scenarios = [
        [text(k), number(v.get("auroc")), number(v.get("fpr95")), number(v.get("n_ood"))]
        for k, v in (det.per_scenario or {}).items()
        if isinstance(v, dict)
    ]
    flagged = [[text(k), text(_pct(v))] for k, v in det.flagged.items()]
    misc = det.misclassification or {}
    return {
        "lead": (
            f"Detector {name}"
            + (f" on {det.features} features" if det.features else "")
            + f", fitted on {det.n_fit} training inputs and calibrated on {det.n_calibration} "
            f"validation inputs; inputs with a conformal p-value <= {det.alpha} are flagged."
        ),
        "detector": name,
        "alarm_table": table(["held-out ID data", "alpha", "false-alarm rate", "n"], alarms),
        "flag_table": table(["split", "flagged"], flagged),
        "scenario_table": (
            table(["scenario (vs nominal test)", "AUROC", "FPR@95", "n"], scenarios)
            if scenarios
            else None
        ),
        "misclassification": misc.get("auroc"),
        "hist": run.image(f"detection/{name}_hist.png"),
        "roc": run.image(f"detection/{name}_roc.png"),
        "gallery": run.image(f"detection/{name}_gallery.png"),
    }
