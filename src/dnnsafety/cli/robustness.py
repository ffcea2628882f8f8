"""``dnnsafety robustness``: corruption, missing-data and fault sweeps of a run's model."""

from __future__ import annotations

from pathlib import Path

import click

from dnnsafety.cli.common import resolve_config
from dnnsafety.runs import RunDir


@click.command("robustness")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--corruptions",
    default="all",
    show_default=True,
    help="Comma-separated corruptions or families (noise, blur, weather, digital, scenario); "
    "'all': ImageNet-C's 15; 'none': skip.",
)
@click.option(
    "--severities", default="1,2,3,4,5", show_default=True, help="Severities (1-5) to run."
)
@click.option(
    "--missing",
    default="all",
    show_default=True,
    help="Missing-data kinds (dropped_pixels, dropped_lines, dropped_patches, "
    "dropped_channel); 'none': skip.",
)
@click.option(
    "--faults",
    type=click.Choice(["none", "bitflip"]),
    default="none",
    show_default=True,
    help="Fault campaign: single bit flips in float32 weights.",
)
@click.option("--n", "n_faults", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bit flips to inject (each alone).")  # fmt: skip
@click.option(
    "--bits",
    default="all",
    show_default=True,
    help="Bit positions: all, exponent, sign, mantissa or e.g. 23-30.",
)
@click.option("--ranger", is_flag=True, help="Also run the flips on the Ranger-clipped model.")
@click.option(
    "--reference",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A run folder swept before (e.g. the model before fine-tuning): the reference of "
    "the corruption errors and mCE.",
)
@click.option("--max-images", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Test images used at most (nominal ones).")  # fmt: skip
@click.option("--fault-images", type=click.IntRange(min=1), default=500, show_default=True,
              help="Test images each fault is judged on.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def command(
    run_dir: Path,
    corruptions: str,
    severities: str,
    missing: str,
    faults: str,
    n_faults: int,
    bits: str,
    ranger: bool,
    reference: Path | None,
    max_images: int,
    fault_images: int,
    seed: int,
) -> None:
    """Sweep RUN_DIR's model over corruptions, missing data and hardware faults.

    Writes robustness.json: accuracy per corruption x severity (with the corruption errors
    and mCE against --reference), accuracy against the missing rate, and the per-layer and
    per-bit silent-data-corruption rates of single bit flips. Finished cells are saved as
    they end; rerun the same command after an interruption to continue.
    """
    from dnnsafety.exceptions import ConfigError
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.pipeline.robustness import (
        RobustnessSettings,
        parse_bits,
        parse_names,
        run_robustness,
    )
    from dnnsafety.robustness.corruptions import MISSING, names_of

    try:
        sev = tuple(int(s) for s in severities.split(",") if s.strip())
    except ValueError:
        raise ConfigError(
            f"--severities must be integers like 1,3,5; got {severities!r}."
        ) from None
    settings = RobustnessSettings(
        corruptions=tuple(names_of(corruptions)) if parse_names(corruptions) else (),
        severities=sev,
        missing=parse_names(missing, MISSING),
        faults=faults,
        n_faults=n_faults,
        bits=parse_bits(bits),
        ranger=ranger,
        max_images=max_images,
        fault_images=fault_images,
        seed=seed,
    )
    settings.validate()
    run = RunDir(run_dir, create=False)
    config = resolve_config(run_dir, None)
    with run.lock(), run.logging_to_file():
        pipe = Pipeline(run, config)
        if pipe.needs_training:
            pipe.train()
        result = run_robustness(pipe, settings, reference)
    click.echo(f"clean accuracy {result.clean_accuracy:.1%} on {result.images['n']} images")
    if result.accuracy:
        worst = sorted(
            ((sum(c.values()) / len(c), n) for n, c in result.accuracy.items()), key=lambda t: t[0]
        )[:3]
        click.echo("lowest mean accuracy: " + ", ".join(f"{n} {a:.1%}" for a, n in worst))
    if result.mce is not None:
        click.echo(f"mCE against {reference}: {result.mce:.3f}")
    if result.faults:
        f = result.faults
        click.echo(f"bit flips: {f['n']}, SDC rate {f['rate']:.2%} (faults with an SDC "
                   f"{f['critical']:.1%})")  # fmt: skip
        if "ranger" in f:
            r = f["ranger"]
            click.echo(f"exponent-bit SDC rate {r['exponent_rate']:.2%} -> "
                       f"{r['exponent_rate_ranger']:.3%} with Ranger")  # fmt: skip
    click.echo(f"Wrote {run / 'robustness.json'}")
