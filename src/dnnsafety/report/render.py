"""Assemble the registered sections into one self-contained HTML page and write it.

The page is rendered by jinja2 templates (``templates/``, autoescaped) with the stylesheet and
script of ``static/`` inlined, and images embedded as ``data:`` URIs, so the file needs no
network and can be moved or mailed alone.
"""

from __future__ import annotations

import datetime
import functools
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import Extension
from markupsafe import Markup

from dnnsafety.report.format import as_float, num, pct, script_json
from dnnsafety.report.load import UNKNOWN_SCENARIO, RunData, load_run
from dnnsafety.report.sections import ReportSection, registered
from dnnsafety.report.sections.overview import main_split
from dnnsafety.runs import write_text

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
# A malformed optional file must not stop the rest of the report.
SECTION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError)
_GLUE = re.compile(r"(?:(?<=>)|(?<=%\})|(?<=#\}))[ \t]*\n\s*|[ \t]*\n\s*(?=<|\{%|\{#)")
_BREAK = re.compile(r"[ \t]*\n\s*")


class CompactLines(Extension):
    """Templates are written one element a line; the page keeps no layout whitespace.

    A line break and the indentation around it disappear next to a tag (``>``/``<``) or a
    ``{% %}``/``{# #}`` block, and become one space inside text, so templates stay readable
    and the page is as compact as markup written on one line.
    """

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return _BREAK.sub(" ", _GLUE.sub("", source.rstrip()))


@functools.cache
def environment() -> jinja2.Environment:
    """The report's template environment (autoescape on, undefined names are errors)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dnnsafety.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=[CompactLines],
        keep_trailing_newline=True,
    )
    env.filters["script_json"] = script_json
    return env


@functools.cache
def static(name: str) -> Markup:
    """A file of ``report/static/`` (CSS or JavaScript we ship), to inline as it is."""
    text = resources.files("dnnsafety.report").joinpath("static", name).read_text("utf-8")
    return Markup(text)


def _render_section(run: RunData, section: ReportSection) -> dict[str, Any] | None:
    """``{id, title, html}`` of one section, ``None`` when the run has nothing for it."""
    env = environment()
    try:
        context = section.build(run)
        if context is None:
            return None
        html = env.get_template(section.template).render(section=section, **context)
    except SECTION_ERRORS as exc:
        log.warning("report section %r could not be rendered: %r", section.title, exc)
        html = env.get_template("error.html.j2").render(section=section, error=exc)
    return {"id": section.name, "title": section.title, "html": Markup(html)}


def _kpis(run: RunData) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    chosen = main_split(run)
    if chosen is not None:
        split, part = chosen
        items.append((f"{split} accuracy", pct(part.get("accuracy"))))
        items.append((f"{split} errors", num(part.get("errors"))))
        scenarios = {
            k: a
            for k, v in (part.get("per_scenario") or {}).items()
            if isinstance(v, dict)
            and k != UNKNOWN_SCENARIO
            and (a := as_float(v.get("accuracy"))) is not None
        }
        if len(scenarios) > 1:
            worst = min(scenarios, key=lambda k: scenarios[k])
            items.append((f"worst scenario: {worst}", pct(scenarios[worst])))
    if run.clusters is not None and isinstance(run.clusters.get("clusters"), list):
        items.append(("root-cause clusters", num(len(run.clusters["clusters"]))))
    if run.comparison is not None:
        strategies = run.comparison.get("strategies")
        if isinstance(strategies, dict):
            items.append(("retraining strategies", num(len(strategies))))
    return items


def _facts(run: RunData) -> list[str]:
    dataset = (run.dataset or {}).get("name") or ((run.config or {}).get("data") or {}).get("name")
    model = ((run.config or {}).get("model") or {}).get("arch")
    facts = [str(run.path.resolve())]
    if dataset:
        facts.append(f"dataset {dataset}")
    if model:
        facts.append(f"model {model}")
    return facts


def render_html(run: RunData) -> str:
    """The whole report page for ``run``, as one HTML string with every resource inlined."""
    sections = [s for section in registered() if (s := _render_section(run, section))]
    return (
        environment()
        .get_template("page.html.j2")
        .render(
            name=run.path.resolve().name,
            facts=_facts(run),
            kpis=_kpis(run),
            sections=sections,
            stamp=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            css=static("report.css"),
            js=static("report.js"),
        )
    )


def render_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Render the results of a run folder into one self-contained ``report.html``.

    The page shows only what the run folder holds: a run that was trained and evaluated gets
    the run summary and model performance; ``dnnsafety analyze`` adds the root-cause clusters
    and the layer selection; ``analysis/map.json`` adds the 2-D map and ``comparison.json`` the
    retraining comparison. Images are embedded, so the file can be moved or mailed alone.

    Parameters
    ----------
    run_dir
        A run folder on which ``dnnsafety evaluate`` has run.
    output
        Where to write the page; default ``RUN_DIR/report.html``.

    Returns
    -------
    Path
        The path of the written page.

    Raises
    ------
    RunDirError
        When ``run_dir`` is missing or holds no ``metrics.json`` / ``samples.parquet``.
    """
    run = load_run(run_dir)
    target = Path(output) if output is not None else run.path / REPORT_FILE
    write_text(target, render_html(run))
    log.debug("wrote %s", target)
    return target
