"""``dnnsafety detect``: an out-of-distribution monitor with a calibrated false-alarm rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnnsafety.cli.common import RegistryChoice, resolve_config
from dnnsafety.detection import DETECTORS
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir


@click.command("detect")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--detector",
    type=RegistryChoice(DETECTORS),
    help="Detector (default: knn, deep kNN on the penultimate features).",
)
@click.option(
    "--features",
    help="Feature source for feature detectors (default: activations for white-box models, "
    "backbone otherwise).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Flag inputs whose conformal p-value is <= alpha (the false-alarm rate on "
    "in-distribution inputs).",
)
@click.option(
    "--data-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Deployment: score this folder of new images with the saved detector instead.",
)
@click.option(
    "--pool-store",
    type=click.Path(exists=True, path_type=Path),
    help="Scale: score this pool (a pool store .zarr, an .npz with x_pool, or an image "
    "folder) chunk by chunk with the saved detector (docs/scale.md).",
)
@click.option(
    "--scheduler",
    help="Where --pool-store chunks run: local, threads, processes or tcp://host:port "
    "(default: compute.scheduler).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV for --data-path (default: RUN_DIR/detection/predictions.csv) or --pool-store "
    "(default: RUN_DIR/detection/pool_scores.csv).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any config value.")
def command(
    run_dir: Path,
    detector: str | None,
    features: str | None,
    alpha: float,
    data_path: Path | None,
    pool_store: Path | None,
    scheduler: str | None,
    out: Path | None,
    batch_size: int,
    settings: Any,
) -> None:
    """Fit a detector on RUN_DIR's training inputs, calibrate it on val, score every split.

    Adds <detector>_score, <detector>_p (conformal p-value) and is_ood.<detector> to
    samples.parquet and writes detection.json (false-alarm rate, AUROC / FPR@95 per scenario,
    misclassification AUROC) and the fitted detector under detection/. With --data-path,
    scores a folder of new images with that saved detector and writes a CSV (path,
    prediction, confidence, score, p_value, flag); with --pool-store, a pool of any size,
    chunk by chunk on --scheduler (sample_id, prediction, confidence, score, p_value, flag).
    """
    from dnnsafety.pipeline.detect import DEFAULT_DETECTOR, DETECTION_DIR, detect, score_folder

    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None, settings=tuple(settings))
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        if data_path is not None:
            target = out or run / DETECTION_DIR / "predictions.csv"
            n, flagged = score_folder(pipe, data_path, target, batch_size=batch_size)
            click.echo(f"Scored {n} images: {flagged} flagged. Wrote {target}")
            return
        if pool_store is not None:
            from dnnsafety.compute import make_executor
            from dnnsafety.data.pool import open_pool
            from dnnsafety.pipeline.detect_pool import score_pool

            target = out or run / DETECTION_DIR / "pool_scores.csv"
            compute = pipe.config.compute
            with make_executor(scheduler or compute.scheduler, compute.workers) as executor:
                n, flagged = score_pool(
                    pipe, open_pool(pool_store), target, executor, batch_size=batch_size
                )
            click.echo(f"Scored {n} pool images: {flagged} flagged. Wrote {target}")
            return
        result = detect(pipe, detector or DEFAULT_DETECTOR, features=features, alpha=alpha)
    fa = result.false_alarm.get("val_half") or {}
    click.echo(
        f"{result.detector}: fitted on {result.n_fit}, calibrated on {result.n_calibration} "
        f"inputs; flagged at alpha={alpha}: "
        + ", ".join(f"{k} {v:.1%}" for k, v in result.flagged.items() if v is not None)
    )
    if fa.get("rate") is not None:
        click.echo(f"False-alarm rate on held-out val inputs: {fa['rate']:.3f} (alpha {alpha})")
    if result.misclassification:
        click.echo(f"Misclassification AUROC (test): {result.misclassification['auroc']:.3f}")
    for name, m in (result.per_scenario or {}).items():
        click.echo(f"  {name:<20} AUROC {m['auroc']:.3f}  FPR@95 {m['fpr95']:.3f}")
    click.echo(f"Wrote {run / 'detection.json'} and columns {result.detector}_* of samples.parquet")
