"""Plain-text summaries printed at the end of commands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dnnsafety.data.dataset import NOMINAL, UNKNOWN_SCENARIO
from dnnsafety.pipeline.artifacts import AnalysisAgreement, Clusters, Comparison, read_artifact


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
    found = read_artifact(Clusters, run_dir)
    clusters = found.clusters
    if not clusters:
        click.echo(f"\nNo clusters: the model made {found.n_errors} error(s) on {found.split}.")
        return
    from dnnsafety.pipeline.analyze import analysis_of

    data = found.to_json()
    how = analysis_of(data).describe(data)
    click.echo(
        f"\n{len(clusters)} root-cause clusters of {found.n_errors} {found.split} errors ({how}):"
    )
    for c in clusters[:limit]:
        distinct = [
            f"{d['parameter']} {d['direction']} "
            f"({d['cluster_mean']:.2g} vs {d['all_errors_mean']:.2g})"
            for d in c.get("distinctive_parameters", [])[:3]
        ]
        line = (
            f"  #{c['id']:<3} {c['size']:>5} {'error ' if c['size'] == 1 else 'errors'} "
            f"({c['share_of_errors'] * 100:4.1f}%)  "
            f"{confusion_line(c)}"
        )
        click.echo(line + (f"; {', '.join(distinct)}" if distinct else ""))
        best = next(iter(c.get("rules") or []), None)
        if isinstance(best, dict) and "text" in best:
            click.echo(
                f"        rule: {best['text']}: precision {best['precision']:.2f}, "
                f"recall {best['recall']:.2f} (support {best['support']})"
            )
    if len(clusters) > limit:
        click.echo(f"  ... and {len(clusters) - limit} more")
    click.echo(f"\nWrote {run_dir / 'clusters.json'} and {run_dir / 'analysis'}/")


def confusion_line(cluster: dict[str, Any]) -> str:
    """The cluster's most common (true -> predicted) pair and its share of the members.

    ``clusters.json`` files written before pairs were recorded have only the two label
    distributions; their most common values are then shown apart, since they need not
    occur together in any member.
    """
    pairs = cluster.get("confusions")
    if pairs:
        top = pairs[0]
        return (
            f"most common: {top['true']} -> {top['predicted']} "
            f"({top['count']} of {cluster['size']}, {top['share']:.0%})"
        )
    parts = []
    for what, key in (("true", "true_labels"), ("predicted", "predicted_labels")):
        counts: dict[str, int] = cluster.get(key) or {}
        if counts:
            name, n = max(counts.items(), key=lambda kv: kv[1])
            parts.append(f"{what} mostly {name} ({n / sum(counts.values()):.0%})")
    return ", ".join(parts)


def print_before_after(
    title: str,
    result: dict[str, Any],
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    """Test accuracy before -> after of a kept model's ``result.json`` (``retrain``,
    ``mitigate``): overall, each ``(label, key)`` of ``extra`` (e.g. robust accuracy), then
    per scenario; the mean over the runs after."""
    before, runs = result["original"], result["runs"]

    def mean(key: str) -> float:
        return sum(float(r[key]) for r in runs) / len(runs)

    rows = [("overall", before["overall"], mean("overall"))]
    rows += [(label, before[key], mean(key)) for label, key in extra]
    for scen, acc in sorted(before["per_scenario"].items()):
        rows.append((scen, acc, sum(r["per_scenario"][scen] for r in runs) / len(runs)))
    width = max(22, *(len(name) for name, _, _ in rows))
    click.echo(f"\n{title} ({len(runs)} run(s)):")
    for name, old, new in rows:
        click.echo(f"  {name:<{width}} {old:7.1%} -> {new:7.1%}")


def print_comparison(run_dir: Path) -> None:
    """Print the strategy comparison of a run: test accuracy, mean [95% CI] over runs."""
    data = read_artifact(Comparison, run_dir).to_json()
    scen = [s for s in data["scenarios"] if s not in (NOMINAL, UNKNOWN_SCENARIO)]
    # without ground-truth scenarios there is no rare-scenario accuracy to show
    show_rare = any(s != UNKNOWN_SCENARIO for s in data["scenarios"])
    w = max(14, *(len(n) + 2 for n in data["strategies"]))
    robust = data.get("robust") or {}
    show_robust = bool(robust)
    head = f"{'strategy':<{w}}{'labels':>7}{'overall':>18}" + (f"{'robust':>18}" * show_robust)
    head += f"{'rare':>18}" * show_rare
    head += f"{'worst scenario':>18}{'mean scenario':>18}" * show_rare
    head += "".join(f"{s[:12]:>14}" for s in scen)
    from dnnsafety.report.sections.retraining import (
        MIN_RUNS_FOR_STATISTICS,
        has_statistics,
        runs_per_strategy,
    )

    stats = has_statistics(data)
    n_runs = runs_per_strategy(data)
    what = (
        f"mean ± half the 95% CI over {n_runs} runs"
        if stats
        else "one run per strategy"
        if n_runs == 1
        else f"{n_runs} runs per strategy"
    )
    labelled = any(entry.get("cost") for entry in data["strategies"].values())
    spent = (
        f"budget {data['budget']} labels, {data['bag_size']} new training images per run"
        if labelled
        else "no new labels (mitigations only)"
    )
    click.echo(f"\nTest accuracy after retraining, {what}; {spent}:")
    if show_robust:
        from dnnsafety.report.sections.retraining import robust_label

        click.echo(
            f"Column robust: the {robust_label(data)} on {robust.get('n')} test inputs (the "
            "same inputs and attack seed for every model)."
        )
    click.echo(head)
    orig = data["original"]
    click.echo(
        f"{'original':<{w}}{0:>7}{_pct(orig['overall']):>18}"
        + (f"{_pct(orig.get('robust_accuracy')):>18}" if show_robust else "")
        + (f"{_pct(orig.get('rare')):>18}" if show_rare else "")
        + "".join(
            f"{_pct(orig.get(k)):>18}" for k in ("worst_scenario", "mean_scenario") * show_rare
        )
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
            if stats and low is not None and high is not None and low == low:
                text += f" ±{(high - low) / 2:.1%}"
            return f"{text:>{width}}"

        none: dict[str, float | None] = {"mean": None, "low": None, "high": None}
        click.echo(
            f"{name:<{w}}{entry['cost']:>7}{cell(summ['overall'])}"
            + (cell(summ.get("robust_accuracy") or none) if show_robust else "")
            + (cell(summ["rare"]) if show_rare else "")
            + "".join(
                cell(summ.get(k) or none) for k in ("worst_scenario", "mean_scenario") * show_rare
            )
            + "".join(f"{_pct(summ['per_scenario'][s]['mean']):>14}" for s in scen)
        )
    _print_cluster_accuracy(data, rows, w)
    from dnnsafety.pipeline.strategies import cluster_strategies

    if not stats:
        click.echo(
            f"No confidence intervals, best marks or A12 / p-values: they need at least "
            f"{MIN_RUNS_FOR_STATISTICS} runs per strategy, and one run cannot tell a "
            f"strategy's effect from the luck of its seed. Run `dnnsafety compare {run_dir} "
            "--seeds 5` for them."
        )
    for ours in cluster_strategies() if stats else ():
        if ours not in data["strategies"]:
            continue
        versus = data["strategies"][ours]["versus"]
        parts = [f"{o}: A12 {v['a12']:.2f} (p={v['p_value']:.3f})" for o, v in versus.items()]
        first: dict[str, Any] = next(iter(versus.values()), {})
        metric = first.get("metric", "rare")
        if parts:
            where = "rare-scenario" if metric == "rare" else "overall"
            click.echo(f"{ours} vs others on {where} accuracy: " + "; ".join(parts))
    click.echo(f"\nWrote {run_dir / 'comparison.json'}")


def _print_cluster_accuracy(data: dict[str, Any], rows: list[tuple[str, Any]], width: int) -> None:
    """Accuracy on each root-cause cluster's test errors (0 for the original model), per
    strategy: which causes a strategy fixes."""
    ids = [str(c) for c in data.get("clusters") or []]
    if not ids:
        return
    shown = ids[:12]
    click.echo(
        "\nAccuracy on the test errors of each root-cause cluster (original model: 0%)"
        + (f", first {len(shown)} of {len(ids)} clusters" if len(shown) < len(ids) else "")
        + ":"
    )
    click.echo(f"{'strategy':<{width}}" + "".join(f"{'#' + c:>8}" for c in shown))
    for name, entry in rows:
        per = entry["summary"].get("per_cluster") or {}
        click.echo(
            f"{name:<{width}}"
            + "".join(f"{_pct((per.get(c) or {}).get('mean')):>8}" for c in shown)
        )


def _pct(value: float | None) -> str:
    """A share as a percentage; '-' when unknown."""
    if value is None or value != value:
        return "-"
    return f"{value:.1%}"


def print_agreement(agreement: AnalysisAgreement, limit: int = 12) -> None:
    """Print how a second analysis of a run agrees with the main one."""
    first, second = agreement.first, agreement.second
    a, b = agreement.analyses.get(first, {}), agreement.analyses.get(second, {})
    ari = "n/a" if agreement.ari is None else f"{agreement.ari:.3f}"
    click.echo(
        f"\n{second} ({b.get('method', '?')}, {b.get('n_clusters', '?')} clusters) vs {first} "
        f"({a.get('method', '?')}, {a.get('n_clusters', '?')} clusters) on "
        f"{agreement.n_common} {agreement.split} errors: adjusted Rand index {ari} over the "
        f"{agreement.n_shared} errors both clustered."
    )
    for m in agreement.matches[:limit]:
        other = "noise" if m["second"] == -1 else f"#{m['second']}"
        click.echo(
            f"  {first} #{m['first']:<3} ({m['first_size']:>4}) best match {second} {other:<5}"
            f" shared {m['shared']:>4}, Jaccard {m['jaccard']:.2f}"
        )
    if len(agreement.matches) > limit:
        click.echo(f"  ... and {len(agreement.matches) - limit} more")
    for name, summary in ((first, a), (second, b)):
        scores = summary.get("scores")
        if isinstance(scores, dict):
            click.echo(
                f"  ground truth, {name}: purity {_num(scores.get('purity'))} (one cluster: "
                f"{_num(scores.get('purity_trivial'))}), mean per-cause F1 "
                f"{_num(scores.get('mean_f1'))}, coverage {_num(scores.get('coverage'))}"
            )


def _num(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.3f}"
