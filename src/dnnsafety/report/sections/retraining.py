"""The retraining comparison (``comparison.json``): strategies, each other and the original."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from statistics import fmean
from typing import Any

from dnnsafety.report.format import (
    PALETTE,
    Cell,
    Table,
    acc_colour,
    as_dict,
    as_float,
    as_int,
    as_list,
    cluster_colour,
    num,
    pct,
    seconds,
    table,
    text,
)
from dnnsafety.report.load import UNKNOWN_SCENARIO, RunData
from dnnsafety.report.sections import Context, register_section

CHART_W, GROUP_H, BAR_GAP = 960, 230, 2
SIGNIFICANCE = 0.05
SCENARIO_SUMMARIES = ("worst_scenario", "mean_scenario")
"""Figures over the ground-truth scenarios shown beside the rare-scenario accuracy: the
worst-group accuracy and the accuracy averaged over scenarios."""
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
        ci = f"[{pct(low)}–{pct(high)}]"
    return Cell(pct(mean), numeric=True, style=f"background:{acc_colour(mean)}", note=ci), mean


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


def _main_table(data: dict[str, Any]) -> Table:
    stats = has_statistics(data)
    # without ground-truth scenarios there is no rare-scenario accuracy and no scenario column
    show_rare = any(s != UNKNOWN_SCENARIO for s in _scenarios(data))
    scenarios = [s for s in _scenarios(data) if s != UNKNOWN_SCENARIO]
    original = as_dict(data.get("original"))
    robust = robust_label(data)
    headers = ["strategy", "labels spent", "overall", *([robust] if robust else [])]
    headers += ["rare scenarios", "worst scenario", "mean over scenarios", *scenarios]
    headers += ["improved", "worsened", "time / run"]
    base: list[Cell] = [Cell("original model", italic=True), Cell("–", numeric=True)]
    base.append(_ci_cell({"mean": original.get("overall")})[0])
    if robust:
        base.append(_ci_cell({"mean": original.get("robust_accuracy")})[0])
    base.append(_ci_cell({"mean": original.get("rare")})[0])
    base += [_ci_cell({"mean": original.get(k)})[0] for k in SCENARIO_SUMMARIES]
    per_scenario = as_dict(original.get("per_scenario"))
    base += [_ci_cell({"mean": per_scenario.get(s)})[0] for s in scenarios]
    base += [Cell("–", numeric=True)] * 3
    rows, values = [], []
    for name, strategy in _strategies(data).items():
        cells, means = _strategy_row(text(name), strategy, scenarios, stats, bool(robust))
        rows.append(cells)
        values.append(means)
    ops = [min, max, *([max] if robust else []), max, max, max, *([max] * len(scenarios))]
    ops += [max, min]
    extra, css = [], ["sel"]
    control = as_dict(data.get("control"))
    if control.get("runs"):
        label = Cell("fine-tuned, no new labels", italic=True)
        extra.append(_strategy_row(label, control, scenarios, stats, bool(robust))[0])
        css.append("")
    if not show_rare:  # drop the rare, worst and mean-scenario columns
        first = 4 if robust else 3  # their first cell (the values have no label: one less)
        del headers[first : first + 3]
        for row in [base, *extra, *rows]:
            del row[first : first + 3]
        for means in values:
            del means[first - 1 : first + 2]
        del ops[first - 1 : first + 2]
    if stats:
        _mark_best(rows, values, ops)
    return table(headers, [base, *extra, *rows], "", css + [""] * len(rows))


def _strategy_row(
    label: Cell,
    strategy: dict[str, Any],
    scenarios: list[str],
    stats: bool = True,
    robust: bool = False,
) -> tuple[list[Cell], list[float | None]]:
    """Cells of one strategy (or the control) and the values the best-marking compares."""
    runs = [r for r in strategy.get("runs") or [] if isinstance(r, dict)]
    summary = as_dict(strategy.get("summary"))
    overall, overall_mean = _ci_cell(summary.get("overall"), stats)
    cells = [label, Cell(num(strategy.get("cost")), numeric=True), overall]
    means: list[float | None] = [as_float(strategy.get("cost")), overall_mean]
    if robust:
        cell, mean = _ci_cell(summary.get("robust_accuracy"), stats)
        cells.append(cell)
        means.append(mean)
    rare, rare_mean = _ci_cell(summary.get("rare"), stats)
    cells.append(rare)
    means.append(rare_mean)
    for key in SCENARIO_SUMMARIES:  # worst-group accuracy, mean over scenarios
        cell, mean = _ci_cell(summary.get(key), stats)
        cells.append(cell)
        means.append(mean)
    for scenario in scenarios:
        cell, mean = _ci_cell(as_dict(summary.get("per_scenario")).get(scenario), stats)
        cells.append(cell)
        means.append(mean)
    improved, worsened = _run_mean(runs, "improved"), _run_mean(runs, "worsened")
    cells += [Cell(num(improved, 1), numeric=True), Cell(num(worsened, 1), numeric=True)]
    cells.append(Cell(seconds(_run_mean(runs, "seconds")), numeric=True))
    means += [improved, worsened]
    return cells, means


def robust_label(data: dict[str, Any]) -> str:
    """The robust-accuracy column's title (e.g. ``robust accuracy (PGD-10, 8/255)``), or ``""``
    when the comparison did not measure it (``comparison.json`` ``robust``)."""
    spec = as_dict(data.get("robust"))
    eps = as_float(spec.get("eps"))
    if eps is None:
        return ""
    attack = f"{str(spec.get('attack', 'pgd')).upper()}-{spec.get('steps')}"
    return f"robust accuracy ({attack}, {eps * 255:.3g}/255)"


def _id_key(cid: str) -> int:
    try:
        return int(cid)
    except ValueError:
        return -1


def _cluster_table(data: dict[str, Any]) -> Table | None:
    original = as_dict(as_dict(data.get("original")).get("per_cluster"))
    listed = data.get("clusters")
    ids = [str(c) for c in listed] if isinstance(listed, list) else sorted(original, key=_id_key)
    if not ids:
        return None
    headers: list[str | Cell] = ["strategy"]
    for cid in ids:
        colour = cluster_colour(_id_key(cid))
        headers.append(Cell(cid, numeric=True, dot=colour, href=f"#cluster-{cid}"))
    base = [
        Cell("original model", italic=True),
        *(_ci_cell({"mean": original.get(c)})[0] for c in ids),
    ]
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


def _chart(data: dict[str, Any]) -> Context | None:
    """Grouped bars (overall, then each scenario) with 95% CI whiskers and the original level."""
    strategies = _strategies(data)
    groups = ["overall", *_scenarios(data)]
    if not strategies:
        return None
    stats = has_statistics(data)
    original = as_dict(data.get("original"))
    plot_h, top, left = GROUP_H - 50, 12, 40

    def height(value: float) -> float:
        return top + plot_h * (1 - max(0.0, min(1.0, value)))

    group_w = (CHART_W - left - 10) / len(groups)
    bar_w = max(4.0, min(64.0, (group_w - 24) / len(strategies) - BAR_GAP))
    ticks = [
        {"y": f"{top + plot_h * (1 - t):.1f}", "text_y": f"{top + plot_h * (1 - t) + 4:.1f}"}
        | {"label": f"{t * 100:.0f}%"}
        for t in (0, 0.25, 0.5, 0.75, 1.0)
    ]
    drawn = []
    for g, group in enumerate(groups):
        bars: list[Context] = []
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
            y = height(mean)
            bars.append(
                {
                    "x": f"{x:.1f}",
                    "y": f"{y:.1f}",
                    "width": f"{bar_w:.1f}",
                    "height": f"{top + plot_h - y:.1f}",
                    "fill": PALETTE[s % len(PALETTE)],
                    "title": f"{name}, {group}: {pct(mean)}",
                    "whisker": "",
                }
            )
            low, high = as_float(as_dict(entry).get("low")), as_float(as_dict(entry).get("high"))
            if stats and low is not None and high is not None:
                y_lo, y_hi, cx = height(low), height(high), x + bar_w / 2
                bars[-1]["whisker"] = (
                    f"M{cx:.1f},{y_lo:.1f}V{y_hi:.1f}M{cx - 3:.1f},{y_lo:.1f}h6"
                    f"M{cx - 3:.1f},{y_hi:.1f}h6"
                )
        base = original.get("overall") if group == "overall" else None
        if group != "overall":
            base = as_dict(original.get("per_scenario")).get(group)
        level = as_float(base)
        line = None
        if level is not None:
            line = {
                "x1": f"{x0 - 8:.1f}",
                "x2": f"{x0 + used + 8:.1f}",
                "y": f"{height(level):.1f}",
                "title": f"original {group}: {pct(level)}",
            }
        label = {"x": f"{x0 + used / 2:.1f}", "y": top + plot_h + 18, "text": group}
        drawn.append({"bars": bars, "level": line, "label": label})
    return {
        "width": CHART_W,
        "height": GROUP_H,
        "left": left,
        "right": CHART_W - 10,
        "ticks": ticks,
        "groups": drawn,
        "legend": [(PALETTE[s % len(PALETTE)], name) for s, name in enumerate(strategies)],
    }


def _a12_table(data: dict[str, Any]) -> Table | None:
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
            cells.append(
                Cell(
                    f"{a12:.2f}",
                    numeric=True,
                    note=f"p={num(p_value, 3)}",
                    bold=significant,
                    style=f"background:{shade}" if significant else "",
                )
            )
        rows.append(cells)
    return table(["strategy \\ versus", *names], rows, "compact")


@register_section("retraining", "Retraining", order=60)
def retraining_section(run: RunData) -> Context | None:
    """Strategies compared over seeds, or ``None`` when the run has no ``comparison.json``."""
    data = run.comparison
    if data is None or not _strategies(data):
        return None
    return {
        "stats": has_statistics(data),
        "budget": num(as_int(data.get("budget"))),
        # mitigations (adversarial fine-tuning, ...) spend no labels: no budget to state
        "labelled": any(as_int(as_dict(s).get("cost")) for s in _strategies(data).values()),
        # selectors beside mitigations: only the label-based ones spent the budget
        "mixed": len({bool(as_int(as_dict(s).get("cost"))) for s in _strategies(data).values()})
        == 2,
        "n_seeds": len(as_list(data.get("seeds"))),
        "robust": robust_label(data),
        "robust_n": as_int(as_dict(data.get("robust")).get("n")),
        "n_runs": runs_per_strategy(data),
        "min_runs": MIN_RUNS_FOR_STATISTICS,
        "main_table": _main_table(data),
        "chart": _chart(data),
        "cluster_table": _cluster_table(data),
        "a12_table": _a12_table(data),
        "metric": _metric(data),
        "significance": SIGNIFICANCE,
    }


def _metric(data: dict[str, Any]) -> str:
    """Which accuracy the A12 / p-values compare (rare scenarios unless the test set has none)."""
    for strategy in _strategies(data).values():
        for entry in as_dict(strategy.get("versus")).values():
            if as_dict(entry).get("metric") == "overall":
                return "overall"
    return "rare-scenario"
