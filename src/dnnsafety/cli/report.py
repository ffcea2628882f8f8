"""``dnnsafety report``: one self-contained HTML page with the results of a run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the page (default: RUN_DIR/report.html).",
)
def command(run_dir: Path, output: Path | None) -> None:
    """Render the results of RUN_DIR into one self-contained report.html.

    The page embeds its images, styles and scripts, so it opens from disk in any browser and
    can be shared as a single file. Sections appear as the run folder has their results:
    summary and performance after `evaluate`, clusters and layers after `analyze`, the 2-D map
    and the retraining comparison when their files exist.
    """
    from dnnsafety.report import render_report

    click.echo(render_report(run_dir, output))
