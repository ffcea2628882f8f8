"""``dnnsafety mitigate``: fine-tune with a strategy that needs no new labels; keep the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.cli.summary import print_before_after
from dnnsafety.pipeline import Pipeline
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.runs import RunDir


class _MitigationChoice(RegistryChoice):
    """A mitigation name; a selection strategy's name is refused naming the labelled path
    (`select`, then `retrain --labels`) rather than as an unknown name."""

    def _check(self, name: str) -> str:
        from dnnsafety.pipeline.mitigated import check_mitigation

        check_mitigation(name)
        return name


@click.command("mitigate")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--strategy",
    required=True,
    type=_MitigationChoice(MITIGATIONS),
    help="The mitigation (no new labels), e.g. adversarial; its parameters with "
    "--set 'retrain.params.<strategy>={...}'.",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Fine-tuning runs."
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(run_dir: Path, strategy: str, seeds: int, settings: Any) -> None:
    """Fine-tune RUN_DIR's model with a mitigation (e.g. adversarial fine-tuning) and keep it.

    The fine-tuning is the one `dnnsafety compare` runs for that strategy ([retrain] settings,
    [retrain.params.<strategy>]). Writes retrained/<strategy>/model.pt (the first run's model
    as a state dict; also model.ts, TorchScript, when the run's model is TorchScript) and
    result.json (test accuracy overall and per scenario before and after, and robust
    accuracy when the strategy trains against an attack, for every run).
    """
    from dnnsafety.pipeline.mitigated import mitigate_and_save
    from dnnsafety.pipeline.robust_eval import check_robust_settings
    from dnnsafety.report.sections.retraining import robust_label

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=tuple(settings))
    check_robust_settings(config.retrain)  # before Pipeline saves a bad --set in config.toml
    with run.lock(), run.logging_to_file():
        result = mitigate_and_save(Pipeline(run, config), strategy, seeds)
    robust = [(robust_label(result), "robust_accuracy")] if "robust" in result else []
    print_before_after(f"Test accuracy before -> after fine-tuning with {strategy}", result, robust)
    if "robust" in result:
        click.echo(
            f"  ({result['robust']['n']} test inputs attacked, the same for both models; "
            "clean errors count as failures)"
        )
    files = ", ".join(result["model_files"])
    click.echo(f"\nWrote {result['path']} (fine-tuned model: {files}; result.json)")
