"""The retraining comparison (``comparison.json``): strategies, each other and the original."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from statistics import fmean
from typing import Any

from dnnsafety.report.html import (
    PALETTE,
    Cell,
    Section,
    acc_colour,
    as_dict,
    as_float,
    as_int,
    as_list,
    cluster_colour,
    esc,
    num,
    pct,
    seconds,
    table,
    text,
)
from dnnsafety.report.load import RunData

CHART_W, GROUP_H, BAR_GAP = 960, 230, 2
SIGNIFICANCE = 0.05
MIN_RUNS_FOR_STATISTICS = 2
"""Runs per strategy below which confidence intervals, best-value marks and A12 / p-values
are not shown: from one run per strategy they would be artefacts (an "interval" of one value,
A12 = 0 or 1 with p = 1, a "best" that is the luck of one seed)."""


def runs_per_strategy(data: dict[str, Any]) -> int:
    """The fewest runs any strategy of a comparison has (0 without strategies)."""
    counts = [len(as_list(s.get("runs"))) for s in _strategies(data).values()]
    return min(counts, default=0)


def has_statistics(data: dict[str, Any]) -> bool:
    """Whether every strategy has :data:`MIN_RUNS_FOR_STATISTICS` runs or more."""
    return runs_per_strategy(data) >= MIN_RUNS_FOR_STATISTICS


def _ci_cell(summary: Any, interval: bool = True) -> tuple[Cell, float | None]:
    """A coloured ``mean [low–high]`` cell (the interval only with ``interval``) and its mean."""
    entry = as_dict(summary)
    mean = as_float(entry.get("mean"))
    low, high = as_float(entry.get("low")), as_float(entry.get("high"))
    ci = ""
    if interval and low is not None and high is not None:
        ci = f' <span class="note">[{pct(low)}–{pct(high)}]</span>'
    return Cell(pct(mean) + ci, numeric=True, style=f"background:{acc_colour(mean)}"), mean


def _run_mean(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [v for r in runs if (v := as_float(r.get(key))) is not None]
    return fmean(values) if values else None


def _mark_best(
    rows: list[list[Cell]], values: list[list[float | None]], better: Sequence[Callable[..., Any]]
) -> None:
    """Add the ``best`` class to the best cell of each column (ties all marked; equal: none)."""
    for col, pick in enumerate(better):
        column = [v[col] for v in values]
        present = [v for v in column if v is not None]
        if len(set(present)) < 2:
            continue
        best = pick(present)
        for row, value in zip(rows, column, strict=True):
            if value is not None and abs(value - best) < 1e-12:
                cell = row[col + 1]
                row[col + 1] = replace(cell, css=f"{cell.css} best".strip())


def _strategies(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in as_dict(data.get("strategies")).items() if isinstance(v, dict)}


def _scenarios(data: dict[str, Any]) -> list[str]:
    names = data.get("scenarios")
    if isinstance(names, list):
        return [str(s) for s in names]
    return sorted(str(s) for s in as_dict(as_dict(data.get("original")).get("per_scenario")))


def _main_table(data: dict[str, Any]) -> str:
    stats = has_statistics(data)
    scenarios = _scenarios(data)
    original = as_dict(data.get("original"))
    headers = ["strategy", "labels spent", "overall", "rare scenarios", *scenarios]
    headers += ["improved", "worsened", "time / run"]
    base: list[Cell] = [Cell("<i>original model</i>"), Cell("–", numeric=True)]
    base.append(_ci_cell({"mean": original.get("overall")})[0])
    base.append(_ci_cell({"mean": original.get("rare")})[0])
    per_scenario = as_dict(original.get("per_scenario"))
    base += [_ci_cell({"mean": per_scenario.get(s)})[0] for s in scenarios]
    base += [Cell("–", numeric=True)] * 3
    rows, values = [], []
    for name, strategy in _strategies(data).items():
        cells, means = _strategy_row(text(name), strategy, scenarios, stats)
        rows.append(cells)
        values.append(means)
    if stats:
        _mark_best(rows, values, [min, max, max, *([max] * len(scenarios)), max, min])
    extra, css = [], ["sel"]
    control = as_dict(data.get("control"))
    if control.get("runs"):
        label = Cell("<i>fine-tuned, no new labels</i>")
        extra.append(_strategy_row(label, control, scenarios, stats)[0])
        css.append("")
    return table(headers, [base, *extra, *rows], "", css + [""] * len(rows))


def _strategy_row(
    label: Cell, strategy: dict[str, Any], scenarios: list[str], stats: bool = True
) -> tuple[list[Cell], list[float | None]]:
    """Cells of one strategy (or the control) and the values the best-marking compares."""
    runs = [r for r in strategy.get("runs") or [] if isinstance(r, dict)]
    summary = as_dict(strategy.get("summary"))
    overall, overall_mean = _ci_cell(summary.get("overall"), stats)
    rare, rare_mean = _ci_cell(summary.get("rare"), stats)
    cells = [label, Cell(num(strategy.get("cost")), numeric=True), overall, rare]
    means: list[float | None] = [as_float(strategy.get("cost")), overall_mean, rare_mean]
    for scenario in scenarios:
        cell, mean = _ci_cell(as_dict(summary.get("per_scenario")).get(scenario), stats)
        cells.append(cell)
        means.append(mean)
    improved, worsened = _run_mean(runs, "improved"), _run_mean(runs, "worsened")
    cells += [Cell(num(improved, 1), numeric=True), Cell(num(worsened, 1), numeric=True)]
    cells.append(Cell(seconds(_run_mean(runs, "seconds")), numeric=True))
    means += [improved, worsened]
    return cells, means


def _id_key(cid: str) -> int:
    try:
        return int(cid)
    except ValueError:
        return -1


def _cluster_table(data: dict[str, Any]) -> str | None:
    original = as_dict(as_dict(data.get("original")).get("per_cluster"))
    listed = data.get("clusters")
    ids = [str(c) for c in listed] if isinstance(listed, list) else sorted(original, key=_id_key)
    if not ids:
        return None
    headers: list[str | Cell] = ["strategy"]
    for cid in ids:
        colour = cluster_colour(_id_key(cid))
        dot = f'<span class="dot" style="background:{colour}"></span> '
        headers.append(Cell(f'{dot}<a href="#cluster-{esc(cid)}">{esc(cid)}</a>', numeric=True))
    base = [Cell("<i>original model</i>"), *(_ci_cell({"mean": original.get(c)})[0] for c in ids)]
    stats = has_statistics(data)
    rows, values = [], []
    for name, strategy in _strategies(data).items():
        per_cluster = as_dict(as_dict(strategy.get("summary")).get("per_cluster"))
        cells, means = [text(name)], []
        for cid in ids:
            cell, mean = _ci_cell(per_cluster.get(cid), stats)
            cells.append(cell)
            means.append(mean)
        rows.append(cells)
        values.append(means)
    if stats:
        _mark_best(rows, values, [max] * len(ids))
    return table(headers, [base, *rows], "compact", ["sel"] + [""] * len(rows))


def _chart(data: dict[str, Any]) -> str | None:
    """Grouped bars (overall, then each scenario) with 95% CI whiskers and the original level."""
    strategies = _strategies(data)
    groups = ["overall", *_scenarios(data)]
    if not strategies:
        return None
    stats = has_statistics(data)
    original = as_dict(data.get("original"))
    plot_h, top, left = GROUP_H - 50, 12, 40
    group_w = (CHART_W - left - 10) / len(groups)
    bar_w = max(4.0, min(64.0, (group_w - 24) / len(strategies) - BAR_GAP))
    parts = []
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(
            f'<line x1="{left}" x2="{CHART_W - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick * 100:.0f}%</text>'
        )
    for g, group in enumerate(groups):
        used = len(strategies) * (bar_w + BAR_GAP) - BAR_GAP
        x0 = left + g * group_w + 12 + (group_w - 24 - used) / 2
        for s, (name, strategy) in enumerate(strategies.items()):
            summary = as_dict(strategy.get("summary"))
            entry = summary.get("overall") if group == "overall" else None
            if group != "overall":
                entry = as_dict(summary.get("per_scenario")).get(group)
            mean = as_float(as_dict(entry).get("mean"))
            if mean is None:
                continue
            x = x0 + s * (bar_w + BAR_GAP)
            y = top + plot_h * (1 - max(0.0, min(1.0, mean)))
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{top + plot_h - y:.1f}"'
                f' fill="{PALETTE[s % len(PALETTE)]}"><title>{esc(name)}, {esc(group)}: '
                f"{pct(mean)}</title></rect>"
            )
            low, high = as_float(as_dict(entry).get("low")), as_float(as_dict(entry).get("high"))
            if stats and low is not None and high is not None:
                y_lo, y_hi = (top + plot_h * (1 - max(0.0, min(1.0, v))) for v in (low, high))
                cx = x + bar_w / 2
                parts.append(
                    f'<path d="M{cx:.1f},{y_lo:.1f}V{y_hi:.1f}M{cx - 3:.1f},{y_lo:.1f}h6'
                    f'M{cx - 3:.1f},{y_hi:.1f}h6" stroke="#111827" stroke-width="1.2"/>'
                )
        base = original.get("overall") if group == "overall" else None
        if group != "overall":
            base = as_dict(original.get("per_scenario")).get(group)
        level = as_float(base)
        if level is not None:
            y = top + plot_h * (1 - max(0.0, min(1.0, level)))
            parts.append(
                f'<line x1="{x0 - 8:.1f}" x2="{x0 + used + 8:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="#111827" stroke-dasharray="4 3"><title>original {esc(group)}: '
                f"{pct(level)}</title></line>"
            )
        parts.append(
            f'<text x="{x0 + used / 2:.1f}" y="{top + plot_h + 18}" '
            f'text-anchor="middle">{esc(group)}</text>'
        )
    legend = "".join(
        f'<span class="item"><span class="dot" style="background:{PALETTE[s % len(PALETTE)]}">'
        f"</span> {esc(name)}</span>"
        for s, name in enumerate(strategies)
    )
    legend += (
        '<span class="item"><svg width="22" height="8"><line x1="0" x2="22" y1="4" y2="4"'
        ' stroke="#111827" stroke-dasharray="4 3"/></svg> original model</span>'
    )
    return (
        f'<svg class="bars" viewBox="0 0 {CHART_W} {GROUP_H}" role="img" '
        f'aria-label="accuracy per scenario">{"".join(parts)}</svg>'
        f'<div class="legend">{legend}</div>'
    )


def _a12_table(data: dict[str, Any]) -> str | None:
    strategies = _strategies(data)
    names = list(strategies)
    if not has_statistics(data) or not any(as_dict(s.get("versus")) for s in strategies.values()):
        return None
    rows = []
    for name in names:
        versus = as_dict(strategies[name].get("versus"))
        cells = [text(name)]
        for other in names:
            entry = as_dict(versus.get(other))
            a12, p_value = as_float(entry.get("a12")), as_float(entry.get("p_value"))
            if other == name or a12 is None:
                cells.append(Cell("–", numeric=True))
                continue
            significant = p_value is not None and p_value < SIGNIFICANCE
            shade = "#dcfce7" if a12 > 0.5 else "#fee2e2" if a12 < 0.5 else "transparent"
            html = f"{a12:.2f} <span class='note'>p={num(p_value, 3)}</span>"
            cells.append(
                Cell(f"<b>{html}</b>" if significant else html, numeric=True,
                     style=f"background:{shade}" if significant else "")
            )  # fmt: skip
        rows.append(cells)
    return table(["strategy \\ versus", *names], rows, "compact")


def retraining_section(run: RunData) -> Section | None:
    """Strategies compared over seeds, or ``None`` when the run has no ``comparison.json``."""
    data = run.comparison
    if data is None or not _strategies(data):
        return None
    seeds = as_list(data.get("seeds"))
    budget = num(as_int(data.get("budget")))
    n_runs = runs_per_strategy(data)
    if has_statistics(data):
        lead = (
            f"Each strategy spent a labelling budget of {budget} and was retrained with"
            f" {len(seeds)} seeds; cells show the mean over seeds and its 95% confidence"
            " interval. ★ marks the best value of each column."
        )
    else:
        lead = (
            f"Each strategy spent a labelling budget of {budget} and was retrained"
            f" {'once' if n_runs == 1 else f'{n_runs} times'}; cells show that run's"
            f" accuracy. Confidence intervals, best-value marks and effect sizes (A12, p)"
            f" need at least {MIN_RUNS_FOR_STATISTICS} runs per strategy and are not shown:"
            " one run cannot tell a strategy's effect from the luck of its seed. Run"
            " <code>dnnsafety compare RUN_DIR --seeds 5</code> for them."
        )
    cards = [
        f'<div class="card"><h3>Strategies</h3><div class="scroll">{_main_table(data)}</div></div>'
    ]
    chart = _chart(data)
    if chart:
        cards.append(f'<div class="card"><h3>Accuracy per scenario</h3>{chart}</div>')
    clusters = _cluster_table(data)
    if clusters:
        cards.append(
            '<div class="card"><h3>Per cluster: before → after</h3><div class="scroll">'
            f"{clusters}</div><p class='note'>Accuracy on the test errors of each cluster, so"
            " the original model scores 0% by construction.</p></div>"
        )
    a12 = _a12_table(data)
    if a12:
        cards.append(
            '<div class="card"><h3>Pairwise effect sizes (Vargha–Delaney A12)</h3>'
            f'<div class="scroll">{a12}</div><p class="note">A12: probability that a run of the'
            f" row strategy beats one of the column strategy on {_metric(data)} accuracy (0.5 ="
            f" no difference; Mann–Whitney U p-value beside it); bold and shaded when"
            f" p &lt; {SIGNIFICANCE}.</p></div>"
        )
    body = f'<div class="stack">{"".join(cards)}</div>'
    return Section("retraining", "Retraining", body, lead)


def _metric(data: dict[str, Any]) -> str:
    """Which accuracy the A12 / p-values compare (rare scenarios unless the test set has none)."""
    for strategy in _strategies(data).values():
        for entry in as_dict(strategy.get("versus")).values():
            if as_dict(entry).get("metric") == "overall":
                return "overall"
    return "rare-scenario"
