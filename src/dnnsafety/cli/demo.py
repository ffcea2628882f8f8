"""``dnnsafety demo``: the main job on the built-in traffic-sign simulator."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click

from dnnsafety.cli.common import DATASET_CHOICE, resolve_config
from dnnsafety.cli.summary import (
    print_agreement,
    print_clusters,
    print_comparison,
    print_metrics,
)
from dnnsafety.config import AnalysisConfig, RunConfig
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir

DEMO_STRATEGIES = ("closest", "random", "entropy")
DEMO_FINETUNE_EPOCHS = 3
"""Fine-tuning epochs of the demo's comparison (``compare`` defaults to 5), so that the demo
fits 10 minutes with setup; ``--set retrain.epochs=5`` restores the default. On signs the
fine-tunes' validation accuracy is within 0.1 point of its 5-epoch best by epoch 3."""


def second_analysis(main: AnalysisConfig) -> tuple[str, AnalysisConfig]:
    """The demo's second analysis: HUDD (white-box) beside a black-box main analysis, the
    default black-box one beside a white-box main analysis."""
    from dnnsafety.pipeline.analyze import analysis_for

    if analysis_for(main).white_box:
        return "blackbox", AnalysisConfig(split=main.split)
    return "hudd", dataclasses.replace(main, features="", mode="default")


@click.command("demo")
@click.option(
    "--out",
    default=Path("runs/demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder.",
)
@click.option(
    "--dataset",
    type=DATASET_CHOICE,
    default="signs",
    show_default=True,
    help="Built-in dataset to use.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any config value, e.g. --set retrain.epochs=5.",
)
def command(out: Path, dataset: str, seed: int, settings: tuple[str, ...]) -> None:
    """The whole loop on a built-in dataset: train, analyse, select, retrain, compare, report.

    The training set under-represents some conditions (at night, in fog, occluded, tilted);
    the test set has many of them, so the accuracy table shows which scenarios break the model.
    The analysis groups the test errors into root-cause clusters (the default black-box
    analysis; --set analysis.features='' for LRP heatmaps), and a second analysis of the
    other kind (white-box HUDD beside the black-box default, or the reverse) is kept beside
    it for the report's side-by-side comparison; then
    HUDD's ClosestU picks the pool images that resemble each cluster, and retraining with them
    is compared with random and entropy selection at the same labelling budget (3 fine-tuning
    epochs each, where ``compare`` defaults to 5). Everything ends up in report.html.
    """
    from dnnsafety.pipeline.analyze import analysis_for
    from dnnsafety.pipeline.analyze.alternative import analyze_alternative
    from dnnsafety.pipeline.bias import run_bias
    from dnnsafety.pipeline.detect import detect
    from dnnsafety.pipeline.retrain import compare
    from dnnsafety.pipeline.robustness import DEMO_SWEEP, run_robustness
    from dnnsafety.report import render_report

    t0 = time.perf_counter()
    run = RunDir(out)
    base = RunConfig()
    base.retrain.epochs = DEMO_FINETUNE_EPOCHS
    config = resolve_config(None, None, dataset=dataset, seed=seed, settings=settings, base=base)
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        pipe.check_supported("demo")
        pipe.train()
        pipe.evaluate()
        pipe.analyze()
        name, analysis = second_analysis(config.analysis)
        second = None
        if pipe.support.white_box or not analysis_for(analysis).white_box:
            second = analyze_alternative(pipe, name, analysis)
        detect(pipe)  # the default out-of-distribution monitor
        run_bias(pipe)
        compare(pipe, list(DEMO_STRATEGIES), seeds=1)
        run_robustness(pipe, DEMO_SWEEP)
    print_metrics(out)
    print_clusters(out)
    if second is not None:
        print_agreement(second.agreement)
    print_comparison(out)
    report = render_report(out)
    click.echo(f"\nDemo finished in {time.perf_counter() - t0:.0f}s. Results in {out}/")
    click.echo(f"Open the report: {report.resolve().as_uri()}")
