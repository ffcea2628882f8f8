"""The report's sections: one module per stage, each registered with :func:`register_section`.

A section is a function that reads the loaded run (:class:`~dnnsafety.report.load.RunData`) and
returns the context of its template, or ``None`` when the run folder has nothing for it, plus
a template under ``report/templates/sections/``. Every module of this package is imported by
:func:`registered`, so a new stage adds its section with one module and one template here,
without touching the others; ``order`` places it on the page.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dnnsafety.report.load import RunData

Context = dict[str, Any]
Builder = Callable[[RunData], Context | None]


@dataclass(frozen=True)
class ReportSection:
    """One registered section.

    Attributes
    ----------
    name
        Its anchor on the page (``#name``), unique.
    title
        Its heading and navigation label.
    order
        Its place on the page, ascending.
    build
        ``build(run)``: the template context, or ``None`` to leave the section out. The
        context's ``lead`` (optional) is shown under the heading by the section template.
    template
        Its template, relative to ``report/templates/``.
    """

    name: str
    title: str
    order: int
    build: Builder
    template: str


SECTIONS: dict[str, ReportSection] = {}


def register_section(
    name: str, title: str, order: int, template: str | None = None
) -> Callable[[Builder], Builder]:
    """Decorator registering a context builder as the section ``name``.

    ``template`` defaults to ``sections/<name>.html.j2``.

    Raises
    ------
    ValueError
        When a section of that name is already registered.
    """

    def decorate(build: Builder) -> Builder:
        if name in SECTIONS:
            raise ValueError(f"report section {name!r} is registered twice")
        SECTIONS[name] = ReportSection(
            name, title, order, build, template or f"sections/{name}.html.j2"
        )
        return build

    return decorate


def registered() -> list[ReportSection]:
    """Every section, in page order (every module of this package imported first)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.name))
