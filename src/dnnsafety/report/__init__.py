"""Render the results of a run folder as one self-contained HTML page (computes nothing)."""

from dnnsafety.report.render import render_html, render_report

__all__ = ["render_html", "render_report"]
