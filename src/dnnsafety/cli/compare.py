"""``dnnsafety compare``: selection strategies side by side at one labelling budget."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.cli.summary import print_comparison
from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline import Pipeline
from dnnsafety.pipeline.robust_eval import ROBUST_STEPS
from dnnsafety.report import render_report
from dnnsafety.report.sections.retraining import MIN_RUNS_FOR_STATISTICS
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.runs import RunDir
from dnnsafety.selection import SELECTORS


@click.command("compare")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--strategies",
    type=RegistryChoice(SELECTORS, many=True, also=(MITIGATIONS,)),
    help="Comma-separated strategies: selectors (labels from the pool) and mitigations (no new "
    "labels). Default: closest,random,entropy,deepgini.",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    help="Labels per strategy (default: 3% of the pool).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), help="Retraining runs per strategy (default: 5)."
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path,
    strategies: str | None,
    budget: int | None,
    seeds: int | None,
    settings: Any,
) -> None:
    """Compare unsafe-set selection strategies by retraining RUN_DIR's model with each.

    Labels come from the held-back pool labels (an experiment). Writes comparison.json
    (original and per-strategy, per-run test accuracy overall, on the rare scenarios, per
    scenario and per cluster; labelling cost; A12 and Mann-Whitney p between strategies) and
    the columns selected.<strategy> of samples.parquet.

    Beside a strategy that trains against an attack (adversarial), every model's robust
    accuracy too (PGD-10 on retrain.robust_n test inputs; --set retrain.robust=always|never).
    """
    from dnnsafety.pipeline.retrain import check_comparison, compare
    from dnnsafety.pipeline.robust_eval import (
        check_robust_settings,
        measures_robust,
        threat_budgets,
    )
    from dnnsafety.pipeline.strategies import needs_analysis

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=tuple(settings))
    names = (
        [s.strip() for s in strategies.split(",") if s.strip()]
        if strategies
        else list(config.retrain.strategies)
    )
    # before Pipeline saves the configuration: a bad --set must not stay in config.toml
    check_robust_settings(config.retrain)
    try:
        budgets = threat_budgets(config.retrain, names)
    except ConfigError:  # a bad mitigation parameter: the pipeline's check names where it lives
        budgets = []
    robust_n = config.retrain.robust_n if measures_robust(config.retrain.robust, budgets) else None
    if not (click.get_current_context().obj or {}).get("quiet"):
        n_seeds = seeds or config.retrain.seeds
        lines = cost_lines(
            run_dir, names, n_seeds, config.retrain.epochs, config.retrain.params, robust_n
        )
        for line in lines:
            click.echo(line)
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        # strategies, their parameters, the model's support, [retrain] robust: before the
        # analysis
        check_comparison(pipe, names, announce=False)
        if needs_analysis(names):
            pipe.analyze()
        else:
            pipe.evaluate()
        compare(pipe, names, budget, seeds)
    print_comparison(run_dir)
    click.echo(f"Report: {render_report(run_dir)}")


def cost_lines(
    run_dir: Path,
    names: list[str],
    seeds: int,
    epochs: int,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    robust_n: int | None = None,
) -> list[str]:
    """What ``compare`` is about to cost, said before it starts, and how to make it cheaper.

    Every strategy and the no-new-labels control are fine-tuned once per seed. The time
    estimate multiplies the fine-tunes and epochs by the mean epoch time of the run's own
    training (``training.json``), and a mitigation's epochs by its
    :meth:`~dnnsafety.retraining.mitigation.Mitigation.epoch_cost` (built with its
    ``params[name]``: adversarial fine-tuning attacks every batch); without that file there
    is no estimate. With ``robust_n`` (robust accuracy measured), every fine-tuned model and
    the original also meet one PGD-10 attack of ``robust_n`` test inputs: about
    ``ROBUST_STEPS + 1`` forward and backward passes per input, counted as that share of a
    training epoch (sizes from ``dataset.json``).
    """
    factors = {name: _epoch_cost(name, (params or {}).get(name) or {}) for name in names}
    n_finetunes = (len(names) + 1) * seeds
    lines = [
        f"compare: {len(names)} strateg{'y' if len(names) == 1 else 'ies'} "
        f"({', '.join(names)}) + the no-new-labels control, {seeds} seed(s) each = "
        f"{n_finetunes} fine-tunes of {epochs} epoch(s) on the training set + the new images."
    ]
    epoch_s = _mean_epoch_seconds(run_dir / "training.json")
    if epoch_s is not None:
        total = seeds * (1 + sum(factors.values())) * epochs * epoch_s
        slower = [f"{name} {f:.1f}x" for name, f in factors.items() if f != 1.0]
        weighted = f", epochs of {', '.join(slower)} as long" if slower else ""
        attacked = _robust_seconds(run_dir, robust_n, epoch_s) if robust_n else None
        robust = ""
        if attacked is not None:
            total += (n_finetunes + 1) * attacked[1]
            robust = (
                f", plus robust accuracy: PGD-{ROBUST_STEPS} on {attacked[0]} test inputs for "
                f"each of {n_finetunes + 1} models, about {attacked[1]:.1f}s each"
            )
        lines.append(
            f"Estimated time: about {_duration(total)} ({n_finetunes} x {epochs} epochs x "
            f"{epoch_s:.1f}s per epoch of the original training{weighted}{robust}), plus "
            "selecting; runs already saved in this folder are reused."
        )
    else:  # a model trained elsewhere: no epoch time of this machine to go by
        lines.append(
            "No time estimate: the model was not trained in this run folder (no "
            "training.json), so there is no epoch time to go by; each fine-tune's time is "
            "logged as it ends."
        )
    cheaper = []
    if seeds > MIN_RUNS_FOR_STATISTICS:
        cheaper.append(
            f"fewer runs with --seeds {MIN_RUNS_FOR_STATISTICS} (the fewest that give "
            "confidence intervals and A12)"
        )
    if len(names) > 2:
        cheaper.append(f"fewer strategies with --strategies {','.join(names[:2])}")
    if epochs > 1:
        cheaper.append(f"shorter runs with --set retrain.epochs={max(1, epochs // 2)}")
    if cheaper:
        lines.append("Cheaper: " + ", ".join(cheaper) + ".")
    return lines


def _epoch_cost(name: str, params: Mapping[str, Any]) -> float:
    """A mitigation's epoch time relative to a plain epoch; 1.0 for selectors and for
    parameters the mitigation does not take (the run itself reports those)."""
    if name not in MITIGATIONS.names():
        return 1.0
    try:
        return float(MITIGATIONS.create(name, params).epoch_cost())
    except (ConfigError, TypeError):
        return 1.0


def _robust_seconds(run_dir: Path, robust_n: int, epoch_s: float) -> tuple[int, float] | None:
    """``(inputs attacked, seconds)`` of one model's robust accuracy: ``ROBUST_STEPS + 1``
    forward and backward passes over ``min(robust_n, test size)`` inputs, priced as that
    share of an epoch over the training split (``dataset.json``); ``None`` when unknown."""
    import json

    try:
        sizes = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8"))
        n_train, n_test = int(sizes["train"]["n"]), int(sizes["test"]["n"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if n_train < 1:
        return None
    n = min(robust_n, n_test)
    return n, (ROBUST_STEPS + 1) * n / n_train * epoch_s


def _mean_epoch_seconds(path: Path) -> float | None:
    """Mean seconds per epoch recorded in ``training.json``; ``None`` when unknown."""
    import json

    try:
        history = json.loads(path.read_text(encoding="utf-8")).get("history") or []
        times = [float(h["seconds"]) for h in history if float(h["seconds"]) > 0]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return sum(times) / len(times) if times else None


def _duration(seconds: float) -> str:
    """A rough duration: seconds, minutes or hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
