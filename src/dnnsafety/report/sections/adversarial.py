"""The section of `dnnsafety attack`: robust accuracy vs budget, detection ROC, examples."""

from __future__ import annotations

from typing import Any

from dnnsafety.exceptions import DnnSafetyError
from dnnsafety.pipeline.artifacts import Adversarial, artifact_path, read_artifact
from dnnsafety.report.format import Cell, accuracy, as_dict, num, table, text
from dnnsafety.report.load import RunData
from dnnsafety.report.sections import Context, register_section


def _eps(value: Any, norm: str) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value * 255:.3g}/255" if norm == "linf" else num(value)


@register_section("adversarial", "Adversarial inputs", order=58)
def adversarial_section(run: RunData) -> Context | None:
    """One block per attack in ``adversarial.json``: robust accuracy per budget, detection
    AUROC per detector with the ROC plot, and the example perturbations."""
    if not artifact_path(Adversarial, run.path).is_file():
        return None
    try:
        data = read_artifact(Adversarial, run.path)
    except DnnSafetyError as exc:
        return {"error": str(exc), "attacks": [], "summary": None}
    rows, attacks = [], []
    for name, rec in data.attacks.items():
        rows.append(
            [
                text(name),
                text(rec.norm),
                Cell(_eps(rec.eps, rec.norm), numeric=True),
                Cell(num(rec.n), numeric=True),
                accuracy(rec.clean_accuracy),
                accuracy(rec.robust_accuracy),
                Cell(num(rec.success_rate), numeric=True),
            ]
        )
        curve = table(
            ["eps", "robust accuracy", "attack success"],
            [
                [
                    Cell(_eps(r.get("eps"), rec.norm), numeric=True),
                    accuracy(r.get("robust_accuracy")),
                    Cell(num(r.get("success_rate")), numeric=True),
                ]
                for r in rec.curve
                if isinstance(r, dict)
            ],
        )
        det_rows = []
        for det, res in rec.detection.items():
            res = as_dict(res)
            auroc = res.get("auroc")
            note = "" if res.get("error") is None else str(res["error"])
            det_rows.append(
                [
                    text(det),
                    Cell(num(auroc) if auroc is not None else "–", numeric=True, note=note),
                    Cell(num(res.get("flagged_adversarial")), numeric=True),
                    Cell(num(res.get("flagged_clean")), numeric=True),
                ]
            )
        files = as_dict(rec.files)
        attacks.append(
            {
                "name": name,
                "curve": curve,
                "detection": table(
                    [
                        "detector",
                        "AUROC",
                        f"adversarial flagged (alpha {data.alpha:g})",
                        "clean flagged",
                    ],
                    det_rows,
                )
                if det_rows
                else None,
                "robustness": run.image(files.get("robustness")),
                "roc": run.image(files.get("roc")),
                "examples": run.image(files.get("examples")),
                "inputs": files.get("inputs"),
            }
        )
    summary = table(["attack", "norm", "eps", "inputs", "clean", "robust", "attack success"], rows)
    return {"summary": summary, "attacks": attacks, "error": None}
