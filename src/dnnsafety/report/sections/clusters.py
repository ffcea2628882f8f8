"""The root-cause cluster gallery: one card per cluster of error-inducing inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dnnsafety.report.format import (
    Cell,
    Table,
    as_dict,
    as_float,
    as_int,
    as_list,
    cluster_colour,
    dominant,
    num,
    pct,
    table,
    text,
)
from dnnsafety.report.load import UNKNOWN_SCENARIO, Image, RunData
from dnnsafety.report.sections import Context, register_section

VARIANCE_RATIO_SHARED = 0.5
VISIBLE_PARAMETERS = 6
ROLE_ORDER = {"medoid": 0, "nearest": 1, "farthest": 2}


def describe_value(value: Any) -> str:
    """A compact rendering of a settings value (dicts as ``k=v`` pairs)."""
    if isinstance(value, dict):
        parts = [
            f"{k}=({describe_value(v)})" if isinstance(v, dict) else f"{k}={describe_value(v)}"
            for k, v in value.items()
        ]
        return ", ".join(parts) or "–"
    if isinstance(value, list):
        return ", ".join(describe_value(v) for v in value) or "–"
    if isinstance(value, float):
        return num(value, 3)
    return str(value) if value not in (None, "") else "–"


def _lead(data: dict[str, Any], clusters: list[dict[str, Any]]) -> Context:
    """The facts of the lead: ``(text, code)`` parts joined by ``; `` and the parameters."""
    parts: list[tuple[str, str]] = []
    method = data.get("method")
    if method:
        parts.append(("method ", str(method)))
    if data.get("layer"):
        parts.append(("layer ", str(data["layer"])))
    for key in ("features", "reduce", "cluster"):
        if data.get(key) not in (None, "", {}):
            parts.append((f"{key} {describe_value(data[key])}", ""))
    if as_int(data.get("n_noise")):
        parts.append((f"{num(data['n_noise'])} errors left as noise (in no cluster)", ""))
    settings = data.get("settings")
    if isinstance(settings, dict) and settings:
        parts.append((f"settings: {describe_value(settings)}", ""))
    params = data.get("params")
    return {
        "n_clusters": len(clusters),
        "n_errors": num(as_int(data.get("n_errors"))),
        "split": str(data.get("split", "test")),
        "parts": parts,
        "params": [(str(k), describe_value(v)) for k, v in params.items()]
        if isinstance(params, dict) and params
        else [],
    }


def _label_line(counts: Any, size: int) -> Context | None:
    top = dominant(counts)
    if top is None:
        return None
    name, n, total = top
    others = len(counts) - 1
    return {
        "name": name,
        "detail": f"({n}/{total or size}, {pct(n / (total or 1), 0)})",
        "others": f"+{others} other{'s' if others > 1 else ''}" if others else "",
    }


def _confusion_line(cluster: dict[str, Any], size: int) -> Context | None:
    """The most common true -> predicted pair with its share; ``None`` without pairs."""
    pairs = [p for p in as_list(cluster.get("confusions")) if isinstance(p, dict)]
    if not pairs:
        return None
    top = pairs[0]
    count = as_int(top.get("count")) or 0
    return {
        "name": f"{top.get('true')} → {top.get('predicted')}",
        "detail": f"({count}/{size}, {pct(count / (size or 1), 0)})",
        "others": "",
    }


def _representatives(run: RunData, cluster: dict[str, Any]) -> Context:
    """Embedded representative images, else the representatives' ids by role."""
    images = cluster.get("representative_images")
    figures: list[tuple[str, str, Image]] = []
    if isinstance(images, list):
        entries = [e for e in images if isinstance(e, dict)]
        entries.sort(key=lambda e: ROLE_ORDER.get(str(e.get("role")), 3))
        for entry in entries:
            image = run.image(entry.get("path"))
            if image is not None:
                figures.append((str(entry.get("role", "")), str(entry.get("id", "")), image))
    if figures:
        return {"figures": figures, "ids": []}
    reps = cluster.get("representatives")
    if not isinstance(reps, dict):
        return {"figures": [], "ids": []}
    pairs = [("medoid", [reps.get("medoid")])]
    pairs += [(k, as_list(reps.get(k))) for k in ("nearest", "farthest")]
    ids = [(role, [str(i) for i in found if i is not None]) for role, found in pairs]
    return {"figures": [], "ids": [(role, found) for role, found in ids if found]}


def _chips(cluster: dict[str, Any]) -> list[str]:
    chips = []
    for d in cluster.get("distinctive_parameters") or []:
        if not isinstance(d, dict) or "parameter" not in d:
            continue
        detail = ""
        if (
            as_float(d.get("cluster_mean")) is not None
            and as_float(d.get("all_errors_mean")) is not None
        ):
            fmt = _fixed([d["cluster_mean"], d["all_errors_mean"]])
            detail = f" ({fmt(d['cluster_mean'])} vs {fmt(d['all_errors_mean'])} over all errors)"
        chips.append(f"{d['parameter']} {d.get('direction', '')}{detail}")
    return chips


def rule_lines(cluster: dict[str, Any], limit: int = 3) -> list[str]:
    """The cluster's metadata rules (``clusters.json`` ``rules``, best first) as text:
    ``fog > 0.62 and brightness <= 0.4: precision 0.91, recall 0.84 (support 57)``."""
    lines = []
    for rule in as_list(cluster.get("rules"))[:limit]:
        if not isinstance(rule, dict) or "text" not in rule:
            continue
        precision, recall = as_float(rule.get("precision")), as_float(rule.get("recall"))
        lines.append(
            f"{rule['text']}: precision {'–' if precision is None else f'{precision:.2f}'}, "
            f"recall {'–' if recall is None else f'{recall:.2f}'} "
            f"(support {num(rule.get('support'))})"
        )
    return lines


def _fixed(values: list[Any]) -> Callable[[Any], str]:
    """A formatter with as many decimals as the largest of ``values`` needs for 3 digits."""
    numbers = [abs(v) for v in map(as_float, values) if v is not None]
    scale = max(numbers, default=0.0)
    decimals = 3 if scale == 0 else min(5, max(0, 2 - math.floor(math.log10(scale))))

    def fmt(value: Any) -> str:
        number = as_float(value)
        return "–" if number is None else f"{number:.{decimals}f}"

    return fmt


def _metadata_rows(cluster: dict[str, Any]) -> tuple[list[list[Cell]], list[str], int]:
    """Rows of the metadata table (distinctive first), their row classes and the shared count."""
    metadata = cluster.get("metadata")
    if not isinstance(metadata, dict):
        return [], [], 0
    ratios = as_dict(cluster.get("variance_ratio"))
    distinct = {
        str(d.get("parameter"))
        for d in cluster.get("distinctive_parameters") or []
        if isinstance(d, dict)
    }
    shared = {str(p) for p in cluster.get("shared_parameters") or []}
    shared |= {p for p, r in ratios.items() if (as_float(r) or 1.0) < VARIANCE_RATIO_SHARED}

    def rank(name: str) -> tuple[int, float, str]:
        group = 0 if name in distinct else 1 if name in shared else 2
        return group, as_float(ratios.get(name)) or 9.0, name

    rows, classes = [], []
    for name in sorted(metadata, key=rank):
        stats = as_dict(metadata[name])
        if "top" in stats:
            spread = f"{stats['top']} ({pct(stats.get('share'), 0)})"
            centre = "–"
        else:
            fmt = _fixed([stats.get("min"), stats.get("max")])
            spread = f"{fmt(stats.get('min'))} – {fmt(stats.get('max'))}"
            centre = f"{fmt(stats.get('mean'))} ± {fmt(stats.get('std'))}"
        ratio = as_float(ratios.get(name))
        rows.append(
            [
                text(name),
                Cell(spread, numeric=True),
                Cell(centre, numeric=True),
                Cell(num(ratio, 2) if ratio is not None else "–", numeric=True),
            ]
        )
        classes.append("distinct" if name in distinct else "shared" if name in shared else "")
    return rows, classes, sum(1 for c in classes if c)


def _metadata(cluster: dict[str, Any]) -> Context | None:
    rows, classes, n_shared = _metadata_rows(cluster)
    if not rows:
        return None
    headers = ["parameter", "range / most common", "mean ± std", "variance ratio"]
    visible = min(n_shared, VISIBLE_PARAMETERS)
    return {
        "visible": table(headers, rows[:visible], "meta", classes) if visible else None,
        "full": table(headers, rows, "meta", classes),
        "n": len(rows),
    }


def _sheet(run: RunData, cluster: dict[str, Any]) -> Context | None:
    image = run.image(cluster.get("contact_sheet"))
    if image is None:
        return None
    return {
        "image": image,
        "name": str(cluster.get("contact_sheet")),
        "tall": image.height > image.width * 0.2,
    }


def cluster_card(run: RunData, cluster: dict[str, Any], n_errors: int | None) -> Context:
    """The context of one cluster's card."""
    cid_int = as_int(cluster.get("id"))
    size = as_int(cluster.get("size")) or 0
    share = size / n_errors if n_errors else as_float(cluster.get("share_of_errors"))
    pairs = [
        ("true label", _label_line(cluster.get("true_labels"), size)),
        ("predicted", _label_line(cluster.get("predicted_labels"), size)),
    ]
    confusion = _confusion_line(cluster, size)
    if confusion is not None:
        pairs.insert(0, ("most common error", confusion))
    scenarios = cluster.get("scenarios")
    if isinstance(scenarios, dict) and set(scenarios) - {UNKNOWN_SCENARIO}:  # ground truth
        pairs.append(("scenario", _label_line(cluster["scenarios"], size)))
    members = cluster.get("members")
    return {
        "id": str(cluster.get("id", "?")),
        "title": "Noise" if cid_int == -1 else f"Cluster {cluster.get('id', '?')}",
        "colour": cluster_colour(cid_int if cid_int is not None else -1),
        "size": num(size),
        "share": pct(share),
        "width": f"{min(1.0, share or 0.0) * 100:.1f}",
        "cause": cluster.get("captures_cause"),
        "pairs": pairs,
        "reps": _representatives(run, cluster),
        "chips": _chips(cluster),
        "rules": rule_lines(cluster),
        "metadata": _metadata(cluster),
        "sheet": _sheet(run, cluster),
        "members": [str(m) for m in members] if isinstance(members, list) else [],
    }


@register_section("clusters", "Root-cause clusters", order=30)
def clusters_section(run: RunData) -> Context | None:
    """The gallery of root-cause clusters (``clusters.json``), or ``None`` without one."""
    data = run.clusters
    if data is None:
        return None
    clusters = [c for c in data.get("clusters") or [] if isinstance(c, dict)]
    n_errors = as_int(data.get("n_errors"))
    return {
        "n_errors": num(n_errors),
        "cards": [cluster_card(run, c, n_errors) for c in clusters],
        "lead": _lead(data, clusters) if clusters else None,
    }


__all__ = ["Table", "cluster_card", "clusters_section", "describe_value"]
