"""The root-cause cluster gallery: one card per cluster of error-inducing inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dnnsafety.report.html import (
    Cell,
    Section,
    as_dict,
    as_float,
    as_int,
    as_list,
    cluster_colour,
    dominant,
    esc,
    num,
    pct,
    table,
    text,
)
from dnnsafety.report.load import UNKNOWN_SCENARIO, RunData

VARIANCE_RATIO_SHARED = 0.5
VISIBLE_PARAMETERS = 6
ROLE_ORDER = {"medoid": 0, "nearest": 1, "farthest": 2}


def describe_value(value: Any) -> str:
    """A compact escaped rendering of a settings value (dicts as ``k=v`` pairs)."""
    if isinstance(value, dict):
        parts = [
            f"{esc(k)}=({describe_value(v)})"
            if isinstance(v, dict)
            else f"{esc(k)}={describe_value(v)}"
            for k, v in value.items()
        ]
        return ", ".join(parts) or "–"
    if isinstance(value, list):
        return ", ".join(describe_value(v) for v in value) or "–"
    if isinstance(value, float):
        return num(value, 3)
    return esc(value) if value not in (None, "") else "–"


def _lead(data: dict[str, Any], clusters: list[dict[str, Any]]) -> str:
    n_errors = as_int(data.get("n_errors"))
    split = esc(data.get("split", "test"))
    parts = [f"<b>{len(clusters)}</b> clusters of <b>{num(n_errors)}</b> {split} errors"]
    method = data.get("method")
    if method:
        parts.append(f"method <code>{esc(method)}</code>")
    if data.get("layer"):
        parts.append(f"layer <code>{esc(data['layer'])}</code>")
    for key in ("features", "reduce", "cluster"):
        if data.get(key) not in (None, "", {}):
            parts.append(f"{key} {describe_value(data[key])}")
    if as_int(data.get("n_noise")):
        parts.append(f"{num(data['n_noise'])} errors left as noise (in no cluster)")
    settings = data.get("settings")
    if isinstance(settings, dict) and settings:
        parts.append(f"settings: {describe_value(settings)}")
    lead = "; ".join(parts) + ". Click an image to enlarge it."
    params = data.get("params")
    if isinstance(params, dict) and params:
        items = "".join(f"<dt>{esc(k)}</dt><dd>{describe_value(v)}</dd>" for k, v in params.items())
        lead += (
            f'<details><summary>Clustering parameters</summary><dl class="kv">{items}</dl>'
            "</details>"
        )
    return lead


def _label_line(counts: Any, size: int) -> str:
    top = dominant(counts)
    if top is None:
        return "–"
    name, n, total = top
    others = len(counts) - 1
    extra = (
        f' <span class="note">+{others} other{"s" if others > 1 else ""}</span>' if others else ""
    )
    return f"<b>{esc(name)}</b> ({n}/{total or size}, {pct(n / (total or 1), 0)}){extra}"


def _confusion_line(cluster: dict[str, Any], size: int) -> str | None:
    """The most common true -> predicted pair with its share; ``None`` without pairs."""
    pairs = [p for p in as_list(cluster.get("confusions")) if isinstance(p, dict)]
    if not pairs:
        return None
    top = pairs[0]
    count = as_int(top.get("count")) or 0
    return (
        f"<b>{esc(top.get('true'))} → {esc(top.get('predicted'))}</b> "
        f"({count}/{size}, {pct(count / (size or 1), 0)})"
    )


def _representatives(run: RunData, cluster: dict[str, Any]) -> str:
    images = cluster.get("representative_images")
    figures = []
    if isinstance(images, list):
        entries = [e for e in images if isinstance(e, dict)]
        entries.sort(key=lambda e: ROLE_ORDER.get(str(e.get("role")), 3))
        for entry in entries:
            image = run.image(entry.get("path"))
            if image is None:
                continue
            role, sample = esc(entry.get("role", "")), esc(entry.get("id", ""))
            figures.append(
                f'<figure title="{role}: {sample}"><img class="zoom" src="{image.uri}" '
                f'alt="{role} {sample}"><figcaption>{role}<br>{sample}</figcaption></figure>'
            )
    if figures:
        return f'<div class="reps">{"".join(figures)}</div>'
    reps = cluster.get("representatives")
    if not isinstance(reps, dict):
        return ""
    pairs = [("medoid", [reps.get("medoid")])]
    pairs += [(k, as_list(reps.get(k))) for k in ("nearest", "farthest")]
    lines = [
        f"{esc(role)}: " + ", ".join(f"<code>{esc(i)}</code>" for i in ids if i is not None)
        for role, ids in pairs
        if any(i is not None for i in ids)
    ]
    return f'<p class="note">{"<br>".join(lines)}</p>' if lines else ""


def _chips(cluster: dict[str, Any]) -> str:
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
        direction = esc(d.get("direction", ""))
        chips.append(f'<span class="chip hi">{esc(d["parameter"])} {direction}{detail}</span>')
    if not chips:
        return ""
    return '<div class="chips"><span class="note">distinctive:</span>' + "".join(chips) + "</div>"


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
            spread = f"{esc(stats['top'])} ({pct(stats.get('share'), 0)})"
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


def _metadata(cluster: dict[str, Any]) -> str:
    rows, classes, n_shared = _metadata_rows(cluster)
    if not rows:
        return ""
    headers = ["parameter", "range / most common", "mean ± std", "variance ratio"]
    visible = min(n_shared, VISIBLE_PARAMETERS)
    out = ""
    if visible:
        out += '<div class="scroll">' + table(headers, rows[:visible], "meta", classes) + "</div>"
    full = table(headers, rows, "meta", classes)
    out += (
        f"<details><summary>All {len(rows)} metadata parameters</summary>"
        f'<div class="scroll">{full}</div><p class="note">Variance ratio: variance inside the'
        " cluster / over all errors; below 0.5 the members share the parameter (bold), red rows"
        " also differ in mean from the other errors.</p></details>"
    )
    return out


def _sheet(run: RunData, cluster: dict[str, Any], cid: str) -> str:
    image = run.image(cluster.get("contact_sheet"))
    if image is None:
        return ""
    name = esc(cluster.get("contact_sheet"))
    tall = image.height > image.width * 0.2
    sheet = (
        f'<div class="sheet{" collapsed" if tall else ""}" id="sheet-{cid}">'
        f'<img class="zoom" src="{image.uri}" alt="contact sheet {name}" title="{name}"></div>'
    )
    if tall:
        sheet += (
            f'<button type="button" class="toggle" data-target="sheet-{cid}" '
            'data-more="Show the whole contact sheet" data-less="Show less">'
            "Show the whole contact sheet</button>"
        )
    return sheet


def _members(cluster: dict[str, Any]) -> str:
    members = cluster.get("members")
    if not isinstance(members, list) or not members:
        return ""
    ids = ", ".join(esc(m) for m in members)
    return (
        f"<details><summary>Member ids ({len(members)})</summary>"
        f'<p class="note" style="max-height:160px;overflow:auto"><code>{ids}</code></p></details>'
    )


def cluster_card(run: RunData, cluster: dict[str, Any], n_errors: int | None) -> str:
    """The card of one cluster."""
    cid_int = as_int(cluster.get("id"))
    cid = esc(cluster.get("id", "?"))
    size = as_int(cluster.get("size")) or 0
    share = size / n_errors if n_errors else as_float(cluster.get("share_of_errors"))
    colour = cluster_colour(cid_int if cid_int is not None else -1)
    cause = cluster.get("captures_cause")
    badge = ""
    if cause is True:
        badge = '<span class="badge ok" title="some parameter varies little">shared cause</span>'
    elif cause is False:
        badge = '<span class="badge warn">no shared parameter</span>'
    title = "Noise" if cid_int == -1 else f"Cluster {cid}"
    head = (
        f'<header><span class="dot" style="background:{colour}"></span><h3>{title}</h3>'
        f'<span class="badge">{num(size)} errors · {pct(share)}</span>{badge}</header>'
        f'<div class="bar"><span style="width:{min(1.0, share or 0.0) * 100:.1f}%;'
        f'background:{colour}"></span></div>'
    )
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
    kv = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs)
    body = (
        f'{head}<dl class="kv">{kv}</dl>{_representatives(run, cluster)}{_chips(cluster)}'
        f"{_metadata(cluster)}{_sheet(run, cluster, cid)}{_members(cluster)}"
    )
    return f'<article class="card cluster" id="cluster-{cid}">{body}</article>'


def clusters_section(run: RunData) -> Section | None:
    """The gallery of root-cause clusters (``clusters.json``), or ``None`` without one."""
    data = run.clusters
    if data is None:
        return None
    clusters = [c for c in data.get("clusters") or [] if isinstance(c, dict)]
    n_errors = as_int(data.get("n_errors"))
    if not clusters:
        body = f'<div class="warnbox">No clusters: {num(n_errors)} error(s) to analyse.</div>'
        return Section("clusters", "Root-cause clusters", body)
    cards = "".join(cluster_card(run, c, n_errors) for c in clusters)
    return Section(
        "clusters",
        "Root-cause clusters",
        f'<div class="grid wide">{cards}</div>',
        _lead(data, clusters),
    )
