"""``dnnsafety attack``: adversarial test inputs, robust accuracy per budget, detection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.adversarial import ATTACKS
from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.config import parse_value
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


def _floats(value: str | None) -> list[float] | None:
    if not value:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


@click.command("attack")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--attack", "attack", type=RegistryChoice(ATTACKS), default="pgd", show_default=True)
@click.option(
    "--eps",
    type=float,
    help="Budget of the stored adversarial inputs, pixel units of [0, 1] (L-inf for fgsm, pgd, "
    "tpgd, square; L2 for cw, deepfool). Default 8/255 (L-inf) or 1.0 (L2).",
)
@click.option("--eps-list", help="Comma-separated budgets of the robust-accuracy curve.")
@click.option("--n", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Test inputs attacked (a seeded random subset; 0 = all).")  # fmt: skip
@click.option(
    "--detectors",
    help="Comma-separated detectors to evaluate (default: squeeze,magnet,knn,mahalanobis,lrp; "
    "'none' to skip).",
)
@click.option("--alpha", type=float, default=0.05, show_default=True,
              help="Conformal level of the detectors' flags.")  # fmt: skip
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="An attack parameter, e.g. --param steps=20.")  # fmt: skip
@click.option(
    "--derive",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write a run folder whose test split holds the clean and adversarial inputs "
    "(then `dnnsafety analyze` it).",
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path,
    attack: str,
    eps: float | None,
    eps_list: str | None,
    n: int,
    detectors: str | None,
    alpha: float,
    params: tuple[str, ...],
    derive: Path | None,
    settings: Any,
) -> None:
    """Attack the model of RUN_DIR on its test inputs (FGSM, PGD, TPGD, CW-L2, DeepFool, Square).

    Writes adversarial/<attack>/ (inputs.npz with the clean and adversarial images and
    predictions, predictions.csv, robustness.png, roc.png, examples.png) and adds the attack to
    adversarial.json: robust accuracy per budget and, per label-free detector fitted on clean
    data only, the AUROC of successful adversarial inputs against clean ones. ONNX models get
    the black-box square attack only.
    """
    from dnnsafety.pipeline.attack import check_attack_supported, derive_run, run_attack

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=settings)
    attack_params: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        attack_params[key.strip()] = parse_value(value.strip())
    names = None
    if detectors is not None:
        names = [d.strip() for d in detectors.split(",") if d.strip() and d.strip() != "none"]
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        check_attack_supported(pipe, attack)
        record = run_attack(pipe, attack, eps, _floats(eps_list), n, attack_params, names, alpha)
        derived = derive_run(pipe, attack, derive) if derive is not None else None
    click.echo(
        f"{attack} at eps {record.eps:.4g} ({record.norm}) on {record.n} test inputs: clean "
        f"accuracy {record.clean_accuracy:.3f}, robust accuracy {record.robust_accuracy:.3f}, "
        f"attack success {record.success_rate:.3f}"
    )
    for row in record.curve:
        click.echo(f"  eps {row['eps']:.4g}: robust accuracy {row['robust_accuracy']:.3f}")
    for name, det in record.detection.items():
        auroc = det.get("auroc")
        click.echo(f"  detector {name}: AUROC {'-' if auroc is None else f'{auroc:.3f}'}")
    click.echo(f"Wrote {run / 'adversarial.json'} and {run / record.files['inputs']}")
    if derived is not None:
        click.echo(f"Derived run folder: {derived} (next: dnnsafety analyze {derived})")
