"""``dnnsafety bias``: under-represented, high-error groups and metadata slices."""

from __future__ import annotations

from pathlib import Path

import click

from dnnsafety.bias import FlagRule
from dnnsafety.bias.groups import BASELINES
from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.clustering import CLUSTERERS, REDUCERS
from dnnsafety.config import PluginConfig
from dnnsafety.features import FEATURE_SOURCES
from dnnsafety.pipeline import Pipeline
from dnnsafety.pipeline.bias import BiasSettings, run_bias
from dnnsafety.runs import RunDir


@click.command("bias")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--features",
    type=RegistryChoice(FEATURE_SOURCES),
    help="Feature source to group in (default: the model's activations when its layers can be"
    " read, the ImageNet backbone otherwise).",
)
@click.option("--reduce", type=RegistryChoice(REDUCERS), default="pca", show_default=True)
@click.option(
    "--cluster", type=RegistryChoice(CLUSTERERS), default="kmeans-fixed", show_default=True
)
@click.option(
    "--groups",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Number of groups (for --cluster kmeans-fixed).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="False discovery rate (Benjamini-Hochberg) of the high-error test.",
)
@click.option(
    "--min-ratio",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Smallest representation ratio (test share / train share) of a flagged group.",
)
@click.option("--min-test", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--baseline",
    type=click.Choice(BASELINES),
    default="train-weighted",
    show_default=True,
    help="Error rate a group is tested against.",
)
@click.option("--slices", type=click.IntRange(min=1), default=5, show_default=True)
def command(
    run_dir: Path,
    features: str | None,
    reduce: str,
    cluster: str,
    groups: int,
    alpha: float,
    min_ratio: float,
    min_test: int,
    baseline: str,
    slices: int,
) -> None:
    """Find under-represented, high-error groups in RUN_DIR (after `dnnsafety evaluate`).

    Clusters the features of all training and test inputs; a group is flagged when its test
    error rate is significantly above the baseline (one-sided binomial test, Benjamini-
    Hochberg), it is --min-ratio times more common in test than in training and has
    --min-test test inputs. Also runs SliceLine over the test metadata. Writes bias.json,
    bias/group_NNN.png and the columns bias_group and is_bias_flagged of samples.parquet.
    """
    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None)
    params = {"n_clusters": groups} if cluster == "kmeans-fixed" else {}
    settings = BiasSettings(
        features=features or "",
        reduce=PluginConfig(reduce),
        cluster=PluginConfig(cluster, params),
        rule=FlagRule(alpha=alpha, min_ratio=min_ratio, min_test=min_test, baseline=baseline),
        slices=slices,
    )
    with run.lock(), run.logging_to_file():
        report = run_bias(Pipeline(run, config), settings)
    flagged = [g for g in report.groups if g.get("flagged")]
    click.echo(
        f"\n{len(report.groups)} groups in {report.features} features; {len(flagged)} flagged "
        f"(baseline error {report.baseline_error:.3f}):"
    )
    for g in flagged:
        scen = g.get("scenarios") or {}
        top = f", mostly {max(scen.items(), key=lambda kv: kv[1])[0]}" if scen else ""
        click.echo(
            f"  group {g['id']:>3}: {g['n_test']} test / {g['n_train']} train, ratio "
            f"{g['representation_ratio']:.1f}, error {g['error_rate']:.2f} "
            f"[{g['ci_low']:.2f}, {g['ci_high']:.2f}]{top}"
        )
    if report.slices:
        click.echo("Metadata slices:")
        for s in report.slices:
            click.echo(f"  {s['rule']}: error {s['error_rate']:.2f}, support {s['support']}")
    click.echo(f"Wrote {run / 'bias.json'}")
