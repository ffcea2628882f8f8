"""Plain-text summaries printed at the end of commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dnnsafety.data.dataset import NOMINAL, UNKNOWN_SCENARIO


def accuracy_table(metrics: dict[str, Any], split: str = "test") -> str:
    """Accuracy per scenario of one split, nominal first, as aligned text (overall only when
    the data has no ground-truth scenarios)."""
    part = metrics.get("splits", {}).get(split)
    if not part:
        return f"(no {split} split)"
    per_scenario = part.get("per_scenario") or {}
    if not per_scenario:
        return f"{part['n']} images, accuracy {part['accuracy'] * 100:.1f}%"
    rows = sorted(per_scenario.items(), key=lambda kv: (kv[0] != NOMINAL, kv[0]))
    width = max(len("scenario"), *(len(s) for s, _ in rows))
    lines = [f"{'scenario':<{width}}  {'n':>6}  accuracy", f"{'-' * width}  {'-' * 6}  --------"]
    for scen, r in rows:
        lines.append(f"{scen:<{width}}  {r['n']:>6}  {r['accuracy'] * 100:7.1f}%")
    lines.append(f"{'all':<{width}}  {part['n']:>6}  {part['accuracy'] * 100:7.1f}%")
    return "\n".join(lines)


def print_metrics(run_dir: Path) -> None:
    """Print the test accuracy table of a run."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics.get("splits", {}).get("test") or {}
    what = "per scenario " if test.get("per_scenario") else ""
    click.echo(f"\nTest accuracy {what}({run_dir}):")
    click.echo(accuracy_table(metrics))


def print_clusters(run_dir: Path, limit: int = 12) -> None:
    """Print the root-cause clusters of a run, largest first."""
    data = json.loads((run_dir / "clusters.json").read_text())
    clusters = data["clusters"]
    if not clusters:
        click.echo(f"\nNo clusters: the model made {data['n_errors']} error(s) on {data['split']}.")
        return
    if data.get("method") == "safe":
        how = (
            f"{data['features']} features -> {data['reduce']} -> {data['cluster']}; "
            f"{data['n_noise']} noise points"
        )
    else:
        how = f"layer {data['layer']}, {data['settings']['ruleset']} LRP rules"
    click.echo(
        f"\n{len(clusters)} root-cause clusters of {data['n_errors']} {data['split']} errors "
        f"({how}):"
    )
    for c in clusters[:limit]:
        true = max(c["true_labels"], key=c["true_labels"].get)
        pred = max(c["predicted_labels"], key=c["predicted_labels"].get)
        distinct = [
            f"{d['parameter']} {d['direction']} "
            f"({d['cluster_mean']:.2g} vs {d['all_errors_mean']:.2g})"
            for d in c.get("distinctive_parameters", [])[:3]
        ]
        line = (
            f"  #{c['id']:<3} {c['size']:>5} errors ({c['share_of_errors'] * 100:4.1f}%)  "
            f"mostly {true} -> {pred}"
        )
        click.echo(line + (f"; {', '.join(distinct)}" if distinct else ""))
    if len(clusters) > limit:
        click.echo(f"  ... and {len(clusters) - limit} more")
    click.echo(f"\nWrote {run_dir / 'clusters.json'} and {run_dir / 'analysis'}/")


def print_comparison(run_dir: Path) -> None:
    """Print the strategy comparison of a run: test accuracy, mean [95% CI] over runs."""
    data = json.loads((run_dir / "comparison.json").read_text())
    scen = [s for s in data["scenarios"] if s not in (NOMINAL, UNKNOWN_SCENARIO)]
    # without ground-truth scenarios there is no rare-scenario accuracy to show
    show_rare = any(s != UNKNOWN_SCENARIO for s in data["scenarios"])
    w = max(14, *(len(n) + 2 for n in data["strategies"]))
    head = f"{'strategy':<{w}}{'labels':>7}{'overall':>18}" + (f"{'rare':>18}" * show_rare)
    head += "".join(f"{s[:12]:>14}" for s in scen)
    click.echo(
        f"\nTest accuracy after retraining, mean [95% CI] over {len(data['seeds'])} run(s); "
        f"budget {data['budget']} labels, bag of {data['bag_size']}:"
    )
    click.echo(head)
    orig = data["original"]
    click.echo(
        f"{'original':<{w}}{0:>7}{_pct(orig['overall']):>18}"
        + (f"{_pct(orig.get('rare')):>18}" if show_rare else "")
        + "".join(f"{_pct(orig['per_scenario'][s]):>14}" for s in scen)
    )
    rows = list(data["strategies"].items())
    if data.get("control"):
        rows.insert(0, ("no new labels", data["control"]))
    for name, entry in rows:
        summ = entry["summary"]

        def cell(v: dict[str, float | None], width: int = 18) -> str:
            text = _pct(v["mean"])
            low, high = v["low"], v["high"]
            if low is not None and high is not None and low == low:
                text += f" ±{(high - low) / 2:.1%}"
            return f"{text:>{width}}"

        click.echo(
            f"{name:<{w}}{entry['cost']:>7}{cell(summ['overall'])}"
            + (cell(summ["rare"]) if show_rare else "")
            + "".join(f"{_pct(summ['per_scenario'][s]['mean']):>14}" for s in scen)
        )
    from dnnsafety.retraining.experiment import NEEDS_SPACE

    for ours in NEEDS_SPACE:
        if ours not in data["strategies"]:
            continue
        versus = data["strategies"][ours]["versus"]
        parts = [f"{o}: A12 {v['a12']:.2f} (p={v['p_value']:.3f})" for o, v in versus.items()]
        first: dict[str, Any] = next(iter(versus.values()), {})
        metric = first.get("metric", "rare")
        what = "rare-scenario" if metric == "rare" else "overall"
        if parts and len(data["seeds"]) > 1:
            click.echo(f"{ours} vs others on {what} accuracy: " + "; ".join(parts))
        elif parts:
            click.echo("(one run per strategy: run `dnnsafety compare --seeds 5` for A12 and p)")
            break
    click.echo(f"\nWrote {run_dir / 'comparison.json'}")


def _pct(value: float | None) -> str:
    """A share as a percentage; '-' when unknown."""
    if value is None or value != value:
        return "-"
    return f"{value:.1%}"
