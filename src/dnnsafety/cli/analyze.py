"""``dnnsafety analyze``: group the model's errors into root-cause clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.cli.summary import print_agreement, print_clusters
from dnnsafety.clustering import CLUSTERERS, REDUCERS
from dnnsafety.config import RunConfig
from dnnsafety.features import FEATURE_SOURCES
from dnnsafety.pipeline import Pipeline
from dnnsafety.report import render_report
from dnnsafety.runs import RunDir


@click.command("analyze")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["default", "hudd-compat"]),
    help="Improved default, or the released HUDD tool's behaviour.",
)
@click.option("--layers", help="Comma-separated layer names (default: every conv/linear/pool).")
@click.option("--split", help="Which split's errors to analyse (default: test).")
@click.option(
    "--features",
    type=RegistryChoice(FEATURE_SOURCES, extra=("hudd",)),
    help="Black-box analysis (SAFE) with this feature source ('hudd': the white-box HUDD"
    " analysis). Default: the run's configuration, initially backbone + umap + guarded.",
)
@click.option("--reduce", type=RegistryChoice(REDUCERS), help="Black-box reduction.")
@click.option("--cluster", type=RegistryChoice(CLUSTERERS), help="Black-box clusterer.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
@click.option(
    "--as",
    "second",
    metavar="NAME",
    help="Keep this analysis as a second one named NAME (under analysis/alt/NAME/) beside the"
    " run's own, and compare the two; the run's clusters stay those later stages use.",
)
def command(
    run_dir: Path,
    mode: str | None,
    layers: str | None,
    split: str | None,
    features: str | None,
    reduce: str | None,
    cluster: str | None,
    settings: Any,
    second: str | None,
) -> None:
    """Group the error-inducing inputs of RUN_DIR into root-cause clusters.

    Black-box by default (SAFE: frozen MobileNetV2 features -> UMAP -> DBSCAN, then no cluster
    may hold most errors: such a cluster is split per true class and by silhouette), which
    needs only the model's predictions. Other black-box pipelines with --features, --reduce,
    --cluster (e.g. --cluster dbscan for the plain DBSCAN). White-box (HUDD: LRP heatmaps per
    layer, Ward clustering, layer choice) with --features hudd, --layers or --mode, unchanged.
    Writes clusters.json, the column `cluster` of
    samples.parquet (-1 = noise), and under analysis/: contact sheets, representative images
    and the error map (plus the per-layer table and WICD plots for HUDD).

    With --as NAME the analysis goes to analysis/alt/NAME/ instead (e.g. `--features hudd --as
    hudd` beside the default black-box one), the run's own analysis is left as it is (run
    first if it has not), and agreement.json + agreement.png there compare the two (adjusted
    Rand index, contingency table, best-matching clusters); the report shows them side by side.
    """
    run = RunDir(run_dir, create=False)
    overrides: dict[str, Any] = {}
    if mode:
        overrides["analysis.mode"] = mode
    if split:
        overrides["analysis.split"] = split
    if features == "hudd" or (features is None and (mode or layers)):  # white-box by name
        features = ""
        overrides["analysis.features"] = ""
    for key, value in (("features", features), ("reduce", reduce), ("cluster", cluster)):
        if value:
            overrides[f"analysis.{key}"] = value
    if layers:
        overrides["analysis.layers"] = [n.strip() for n in layers.split(",") if n.strip()]
    config = resolve_config(run_dir, None, settings=settings, overrides=overrides)
    if (reduce or cluster) and features is None and not str(config.analysis.features):
        config.analysis.features = "backbone"
    explicit = features == "" or bool(layers) or bool(mode)  # white-box asked for by name
    if second is not None:
        _second_analysis(run, run_dir, config, second, explicit)
        return
    with run.lock(), run.logging_to_file():
        Pipeline(run, config).analyze(white_box=True if explicit else None)
    print_clusters(run_dir)
    click.echo(f"Report: {render_report(run_dir)}")


def _second_analysis(
    run: RunDir, run_dir: Path, config: RunConfig, name: str, white_box: bool
) -> None:
    """Run ``config``'s analysis as the second analysis ``name`` and print the agreement."""
    from dnnsafety.pipeline.analyze.alternative import analyze_alternative, check_name

    check_name(name)
    main = resolve_config(run_dir, None)  # the run's own configuration, unchanged
    with run.lock(), run.logging_to_file():
        done = analyze_alternative(Pipeline(run, main), name, config.analysis, white_box)
    print_agreement(done.agreement)
    click.echo(f"Report: {render_report(run_dir)}")
