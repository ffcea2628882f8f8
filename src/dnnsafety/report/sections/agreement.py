"""Two analyses side by side: the run's clusters against a second analysis of the same errors.

Shown when ``dnnsafety analyze RUN ... --as NAME`` kept a second analysis under
``analysis/alt/NAME/`` (its ``clusters.json`` and ``agreement.json``); absent otherwise.
"""

from __future__ import annotations

from typing import Any

from dnnsafety.report.format import Cell, as_dict, as_float, as_int, as_list, number, table, text
from dnnsafety.report.load import Image, RunData
from dnnsafety.report.sections import Context, register_section
from dnnsafety.report.sections.clusters import ROLE_ORDER

ALT_DIR = "analysis/alt"
MAX_PAIRS = 12
"""Matched cluster pairs shown with images (largest clusters of the main analysis first)."""
IMAGES_PER_CLUSTER = 3


def _images(run: RunData, cluster: dict[str, Any] | None, prefix: str) -> list[Image]:
    """Up to :data:`IMAGES_PER_CLUSTER` representative images (medoid first)."""
    if cluster is None:
        return []
    entries = [e for e in as_list(cluster.get("representative_images")) if isinstance(e, dict)]
    entries.sort(key=lambda e: ROLE_ORDER.get(str(e.get("role")), 3))
    found = []
    for entry in entries:
        path = entry.get("path")
        image = run.image(f"{prefix}{path}" if isinstance(path, str) and path else None)
        if image is not None:
            found.append(image)
        if len(found) == IMAGES_PER_CLUSTER:
            break
    return found


def _by_id(clusters: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    out = {}
    for c in as_list((clusters or {}).get("clusters")):
        cid = as_int(c.get("id")) if isinstance(c, dict) else None
        if cid is not None:
            out[cid] = c
    return out


def _analyses(agreement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-analysis summaries, the run's own first."""
    found = {str(k): as_dict(v) for k, v in as_dict(agreement.get("analyses")).items()}
    first = str(agreement.get("first", "main"))
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != first, kv[0])))


def _summary_table(agreement: dict[str, Any]) -> tuple[Any, bool]:
    """One row per analysis; the ground-truth columns when both have scores."""
    analyses = _analyses(agreement)
    truth = all(isinstance(as_dict(a).get("scores"), dict) for a in analyses.values())
    headers = ["analysis", "method", "clusters", "errors", "noise", "largest clusters"]
    if truth:
        headers += ["mean purity", "purity (1 cluster)", "coverage", "mean F1", "min F1"]
    rows = []
    for name, entry in analyses.items():
        a = as_dict(entry)
        sizes = [s for s in as_list(a.get("sizes")) if isinstance(s, int)]
        largest = ", ".join(str(s) for s in sizes[:4]) + (" …" if len(sizes) > 4 else "")
        row = [
            Cell(str(name), bold=True),
            text(a.get("method", "–")),
            number(a.get("n_clusters")),
            number(a.get("n_errors")),
            number(a.get("n_noise")),
            Cell(largest or "–", numeric=True),
        ]
        if truth:
            s = as_dict(a.get("scores"))
            row += [number(s.get(k)) for k in ("purity", "purity_trivial", "coverage", "mean_f1")]
            row.append(number(s.get("min_f1")))
        rows.append(row)
    return table(headers, rows), truth


def _cause_table(agreement: dict[str, Any]) -> Any:
    """Per cause: each analysis's best-matching cluster and its F1 (ground truth only)."""
    analyses = _analyses(agreement)
    scored = {k: as_dict(as_dict(v.get("scores")).get("causes")) for k, v in analyses.items()}
    causes = sorted({c for found in scored.values() for c in found})
    if not causes or not all(scored.values()):
        return None
    headers = ["cause", "errors"]
    for name in scored:
        headers += [f"{name}: cluster", f"{name}: F1"]
    rows = []
    for cause in causes:
        first = as_dict(next(iter(scored.values())).get(cause))
        row = [text(cause), number(first.get("n_errors"))]
        for found in scored.values():
            s = as_dict(found.get(cause))
            cid = as_int(s.get("cluster"))
            row += [text("–" if cid is None or cid < 0 else cid), number(s.get("f1"))]
        rows.append(row)
    return table(headers, rows)


def _pairs(
    run: RunData, agreement: dict[str, Any], other: dict[str, Any] | None, prefix: str
) -> list[Context]:
    """The matched cluster pairs (largest main clusters first) with their images."""
    mine, theirs = _by_id(run.clusters), _by_id(other)
    matches = [m for m in as_list(agreement.get("matches")) if isinstance(m, dict)]
    matches.sort(key=lambda m: -(as_int(m.get("first_size")) or 0))
    out = []
    for m in matches[:MAX_PAIRS]:
        first, second = as_int(m.get("first")), as_int(m.get("second"))
        out.append(
            {
                "first": "?" if first is None else str(first),
                "second": "noise" if second is None or second < 0 else str(second),
                "first_size": number(m.get("first_size")).text,
                "second_size": number(m.get("second_size")).text,
                "shared": number(m.get("shared")).text,
                "jaccard": number(m.get("jaccard"), 2).text,
                "first_images": _images(run, mine.get(first) if first is not None else None, ""),
                "second_images": _images(
                    run, theirs.get(second) if second is not None else None, prefix
                ),
            }
        )
    return out


def _mean_jaccard(agreement: dict[str, Any]) -> float | None:
    values = [as_float(m.get("jaccard")) for m in as_list(agreement.get("matches"))]
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else None


def _block(run: RunData, name: str, entry: dict[str, Any]) -> Context:
    agreement = as_dict(entry.get("agreement"))
    prefix = f"{ALT_DIR}/{name}/"
    summary, truth = _summary_table(agreement)
    return {
        "name": name,
        "first": str(agreement.get("first", "main")),
        "split": str(agreement.get("split", "test")),
        "ari": number(agreement.get("ari")).text,
        "n_shared": number(agreement.get("n_shared")).text,
        "n_common": number(agreement.get("n_common")).text,
        "mean_jaccard": number(_mean_jaccard(agreement), 2).text,
        "summary": summary,
        "truth": truth,
        "causes": _cause_table(agreement) if truth else None,
        "heatmap": run.image(agreement.get("heatmap")),
        "pairs": _pairs(run, agreement, entry.get("clusters"), prefix),
        "more_pairs": max(0, len(as_list(agreement.get("matches"))) - MAX_PAIRS),
    }


@register_section("agreement", "Two analyses side by side", order=35)
def agreement_section(run: RunData) -> Context | None:
    """Each second analysis against the run's own (``analysis/alt/*/agreement.json``), or
    ``None`` when the run has one analysis."""
    if not run.alternatives or run.clusters is None:
        return None
    return {"blocks": [_block(run, n, e) for n, e in sorted(run.alternatives.items())]}
