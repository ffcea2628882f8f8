"""Render the results of a run folder as one self-contained HTML page (computes nothing).

The page is built from jinja2 templates (``templates/``) and the stylesheet and script of
``static/``; each part of the page is a section registered in :mod:`dnnsafety.report.sections`.
"""

from dnnsafety.report.render import render_html, render_report

__all__ = ["render_html", "render_report"]
