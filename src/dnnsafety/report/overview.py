"""The run summary and model performance sections."""

from __future__ import annotations

from typing import Any

from dnnsafety.report.html import (
    Cell,
    Section,
    accuracy,
    as_dict,
    as_float,
    as_int,
    as_list,
    card,
    esc,
    heat_colour,
    key_values,
    num,
    number,
    pct,
    seconds,
    table,
    text,
)
from dnnsafety.report.load import RunData

NOMINAL = "nominal"
SPLIT_ORDER = ("train", "val", "test", "pool")


def _splits(run: RunData) -> dict[str, Any]:
    return as_dict(run.metrics.get("splits"))


def main_split(run: RunData) -> tuple[str, dict[str, Any]] | None:
    """The split the report details (``test`` when present)."""
    splits = {k: v for k, v in _splits(run).items() if isinstance(v, dict)}
    if not splits:
        return None
    name = "test" if "test" in splits else sorted(splits)[0]
    return name, splits[name]


def _split_key(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def _dataset_card(run: RunData) -> str:
    data = run.dataset or {}
    classes = data.get("classes")
    shape = data.get("image_shape")
    pairs = [("name", esc(data.get("name", "–")))]
    if isinstance(classes, list):
        names = ", ".join(esc(c) for c in classes)
        pairs.append(("classes", f"{len(classes)}: <span class='note'>{names}</span>"))
    if isinstance(shape, list):
        pairs.append(("image shape", esc(" × ".join(str(s) for s in shape))))
    splits = sorted(
        (k for k, v in data.items() if isinstance(v, dict) and "n" in v), key=_split_key
    )
    scenarios = sorted(
        {str(s) for k in splits for s in as_dict(data[k].get("scenarios"))},
        key=lambda s: (s != NOMINAL, s),
    )
    rows = [
        [text(s), *(number(as_dict(data[k].get("scenarios")).get(s, 0)) for k in splits)]
        for s in scenarios
    ]
    rows.append([Cell("<b>all</b>"), *(number(data[k].get("n")) for k in splits)])
    body = key_values(pairs)
    if splits:
        body += '<div class="scroll" style="margin-top:10px">'
        body += table(["scenario" if scenarios else "", *splits], rows) + "</div>"
    return card("Dataset", body)


def _model_card(run: RunData) -> str:
    config = run.config or {}
    model = as_dict(config.get("model"))
    train = as_dict(config.get("train"))
    training = run.training or {}
    pairs = [("architecture", f"<code>{esc(model.get('arch', '–'))}</code>")]
    for key in ("factory", "weights"):
        if model.get(key):
            pairs.append((key, f"<code>{esc(model[key])}</code>"))
    for key in ("epochs", "batch_size", "optimizer", "lr"):
        if key in train:
            pairs.append((key.replace("_", " "), num(train[key], 4)))
    history = [h for h in as_list(training.get("history")) if isinstance(h, dict)]
    if "best_epoch" in training:
        select_by = training.get("select_by", "")
        score = as_float(training.get("best_score"))
        detail = f" ({esc(select_by)} {pct(score, 2)})" if score is not None else ""
        pairs.append(("best epoch", f"{num(training['best_epoch'])}{detail}"))
    if as_int(training.get("resumed_from_epoch")):
        pairs.append(("resumed from epoch", num(training["resumed_from_epoch"])))
    times = [t for h in history if (t := as_float(h.get("seconds"))) is not None]
    if times:
        pairs.append(("training time", f"{seconds(sum(times))} over {len(history)} epochs"))
    body = key_values(pairs)
    if history:
        rows = [
            [
                number(h.get("epoch")),
                number(h.get("train_loss"), 4),
                accuracy(h.get("train_acc")),
                accuracy(h.get("val_acc")),
                Cell(seconds(h.get("seconds")), numeric=True),
            ]
            for h in history
        ]
        best = as_int(training.get("best_epoch"))
        marks = ["sel" if as_int(h.get("epoch")) == best else "" for h in history]
        history_table = table(
            ["epoch", "train loss", "train acc", "val acc", "time"], rows, "", marks
        )
        body += f"<details><summary>Training history</summary>{history_table}</details>"
    return card("Model", body)


def _versions_card(run: RunData) -> str | None:
    env = as_dict(run.metrics.get("environment"))
    if not env:
        return None
    return card("Versions", key_values((str(k), esc(v)) for k, v in env.items()))


def _timings_card(run: RunData) -> str | None:
    stages = {k: v for k, v in (run.stages or {}).items() if isinstance(v, dict)}
    if not stages:
        return None
    timed = [t for e in stages.values() if (t := as_float(e.get("seconds"))) is not None]
    rows = []
    for name, entry in stages.items():
        files = ", ".join(f"<code>{esc(o)}</code>" for o in as_list(entry.get("outputs")))
        row = [text(name), Cell(files)]
        if timed:
            row.insert(1, Cell(seconds(entry.get("seconds")), numeric=True))
        rows.append(row)
    headers = ["stage", "time", "outputs"] if timed else ["stage", "outputs"]
    note = f'<p class="note">Total: {seconds(sum(timed))}</p>' if timed else ""
    title = "Stages and timings" if timed else "Stages"
    return card(title, table(headers, rows) + note)


def _config_card(run: RunData) -> str | None:
    if run.config_text is None:
        return None
    body = f'<pre class="config">{esc(run.config_text)}</pre>'
    return card("Configuration (config.toml)", body, "span")


def summary_section(run: RunData) -> Section:
    """Dataset, model, versions, stage timings and the configuration of the run."""
    cards = [_dataset_card(run), _model_card(run)]
    cards += [c for c in (_versions_card(run), _timings_card(run), _config_card(run)) if c]
    return Section("summary", "Run summary", f'<div class="grid">{"".join(cards)}</div>')


def _per_split_card(run: RunData) -> str:
    rows = []
    for name in sorted(_splits(run), key=_split_key):
        part = as_dict(_splits(run)[name])
        if "accuracy" not in part:
            continue
        rows.append(
            [
                text(name),
                number(part.get("n")),
                number(part.get("errors")),
                accuracy(part["accuracy"]),
            ]
        )
    return card("Accuracy per split", table(["split", "n", "errors", "accuracy"], rows))


def _per_scenario_card(split: str, part: dict[str, Any]) -> str | None:
    scenarios = as_dict(part.get("per_scenario"))
    if not scenarios:
        return None
    rows = [
        [text(name), number(as_dict(r).get("n")), accuracy(as_dict(r).get("accuracy"))]
        for name, r in sorted(scenarios.items(), key=lambda kv: (kv[0] != NOMINAL, kv[0]))
    ]
    rows.append([Cell("<b>all</b>"), number(part.get("n")), accuracy(part.get("accuracy"))])
    return card(f"Per scenario ({split})", table(["scenario", "n", "accuracy"], rows))


def _per_class_card(run: RunData, split: str, part: dict[str, Any]) -> str | None:
    per_class = as_dict(part.get("per_class"))
    if not per_class:
        return None
    sizes: dict[str, int] = {}
    confusion = run.metrics.get(f"confusion_{split}")
    if isinstance(confusion, list) and len(confusion) == len(run.class_names):
        for name, row in zip(run.class_names, confusion, strict=True):
            if isinstance(row, list):
                sizes[name] = sum(v for v in row if isinstance(v, int))
    order = [c for c in run.class_names if c in per_class] + sorted(
        c for c in per_class if c not in run.class_names
    )
    rows = [[text(c), number(sizes.get(c)), accuracy(per_class[c])] for c in order]
    return card(f"Per class ({split})", table(["class", "n", "accuracy"], rows))


def _confusion_card(run: RunData, split: str) -> str | None:
    matrix = run.metrics.get(f"confusion_{split}")
    names = run.class_names
    if not isinstance(matrix, list) or not names or len(matrix) != len(names):
        return None
    if not all(isinstance(r, list) and len(r) == len(names) for r in matrix):
        return None
    head = [Cell("true \\ predicted", css="rowh")]
    head += [Cell(f"<span>{esc(n)}</span>", css="colh", title=n) for n in names]
    rows = []
    for i, (name, row) in enumerate(zip(names, matrix, strict=True)):
        total = sum(v for v in row if isinstance(v, int | float)) or 1
        cells = [Cell(esc(name), css="rowh", header=True, title=name)]
        for j, value in enumerate(row):
            share = (as_float(value) or 0.0) / total
            background, colour = heat_colour(share, i == j)
            title = f"true {name}, predicted {names[j]}: {value} ({share * 100:.1f}% of the row)"
            cells.append(
                Cell(num(value), style=f"background:{background};color:{colour}", title=title)
            )
        rows.append(cells)
    body = f'<div class="scroll">{table(head, rows, "confusion")}</div>'
    legend = (
        '<p class="note">Rows: true class; columns: predicted class. Green: correct (share of'
        " the row); red: errors, darker = a larger share of the row.</p>"
    )
    return card(f"Confusion matrix ({split})", body + legend, "span")


def performance_section(run: RunData) -> Section:
    """Accuracy per split, per scenario, per class and the confusion matrix."""
    cards = [_per_split_card(run)]
    chosen = main_split(run)
    if chosen is not None:
        split, part = chosen
        cards += [
            c
            for c in (
                _per_scenario_card(split, part),
                _per_class_card(run, split, part),
                _confusion_card(run, split),
            )
            if c
        ]
    return Section("performance", "Model performance", f'<div class="grid">{"".join(cards)}</div>')
