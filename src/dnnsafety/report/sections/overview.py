"""The run summary and model performance sections."""

from __future__ import annotations

from typing import Any

from dnnsafety.report.format import (
    Cell,
    Table,
    accuracy,
    as_dict,
    as_float,
    as_int,
    as_list,
    heat_colour,
    num,
    number,
    pct,
    seconds,
    table,
    text,
)
from dnnsafety.report.load import RunData
from dnnsafety.report.sections import Context, register_section

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


def _dataset(run: RunData) -> Context:
    data = run.dataset or {}
    classes = data.get("classes")
    shape = data.get("image_shape")
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
    rows.append([Cell("all", bold=True), *(number(data[k].get("n")) for k in splits)])
    return {
        "name": data.get("name", "–"),
        "classes": [str(c) for c in classes] if isinstance(classes, list) else None,
        "shape": " × ".join(str(s) for s in shape) if isinstance(shape, list) else None,
        "splits": table(["scenario" if scenarios else "", *splits], rows) if splits else None,
    }


def _model(run: RunData) -> Context:
    config = run.config or {}
    model = as_dict(config.get("model"))
    train = as_dict(config.get("train"))
    training = run.training or {}
    codes = [("architecture", str(model.get("arch", "–")))]
    codes += [(key, str(model[key])) for key in ("factory", "weights") if model.get(key)]
    if training:  # trained here: the settings it was trained with
        facts = [(key.replace("_", " "), num(train[key], 4)) for key in SETTINGS if key in train]
    else:  # the user's trained model: the [train] defaults in config.toml never applied to it
        facts = [("training", "outside dnnsafety (the model file above)")]
    history = [h for h in as_list(training.get("history")) if isinstance(h, dict)]
    if "best_epoch" in training:
        score = as_float(training.get("best_score"))
        select_by = training.get("select_by", "")
        detail = f" ({select_by} {pct(score, 2)})" if score is not None else ""
        facts.append(("best epoch", f"{num(training['best_epoch'])}{detail}"))
    if as_int(training.get("resumed_from_epoch")):
        facts.append(("resumed from epoch", num(training["resumed_from_epoch"])))
    times = [t for h in history if (t := as_float(h.get("seconds"))) is not None]
    if times:
        facts.append(("training time", f"{seconds(sum(times))} over {len(history)} epochs"))
    history_table = None
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
    return {"codes": codes, "facts": facts, "history": history_table}


SETTINGS = ("epochs", "batch_size", "optimizer", "lr")


def _timings(run: RunData) -> Context | None:
    stages = {k: v for k, v in (run.stages or {}).items() if isinstance(v, dict)}
    if not stages:
        return None
    timed = [t for e in stages.values() if (t := as_float(e.get("seconds"))) is not None]
    rows = []
    for name, entry in stages.items():
        row = [text(name), Cell(codes=tuple(str(o) for o in as_list(entry.get("outputs"))))]
        if timed:
            row.insert(1, Cell(seconds(entry.get("seconds")), numeric=True))
        rows.append(row)
    headers = ["stage", "time", "outputs"] if timed else ["stage", "outputs"]
    return {
        "title": "Stages and timings" if timed else "Stages",
        "table": table(headers, rows),
        "total": seconds(sum(timed)) if timed else None,
    }


@register_section("summary", "Run summary", order=10)
def summary_section(run: RunData) -> Context:
    """Dataset, model, versions, stage timings and the configuration of the run."""
    env = as_dict(run.metrics.get("environment"))
    return {
        "dataset": _dataset(run),
        "model": _model(run),
        "versions": [(str(k), str(v)) for k, v in env.items()],
        "timings": _timings(run),
        "config_text": run.config_text,
    }


def _per_split(run: RunData) -> Table:
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
    return table(["split", "n", "errors", "accuracy"], rows)


def _per_scenario(part: dict[str, Any]) -> Table | None:
    scenarios = as_dict(part.get("per_scenario"))
    if not scenarios:
        return None
    rows = [
        [text(name), number(as_dict(r).get("n")), accuracy(as_dict(r).get("accuracy"))]
        for name, r in sorted(scenarios.items(), key=lambda kv: (kv[0] != NOMINAL, kv[0]))
    ]
    rows.append([Cell("all", bold=True), number(part.get("n")), accuracy(part.get("accuracy"))])
    return table(["scenario", "n", "accuracy"], rows)


def _per_class(run: RunData, split: str, part: dict[str, Any]) -> Table | None:
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
    return table(["class", "n", "accuracy"], rows)


def _confusion(run: RunData, split: str) -> Table | None:
    matrix = run.metrics.get(f"confusion_{split}")
    names = run.class_names
    if not isinstance(matrix, list) or not names or len(matrix) != len(names):
        return None
    if not all(isinstance(r, list) and len(r) == len(names) for r in matrix):
        return None
    head = [Cell("true \\ predicted", css="rowh")]
    head += [Cell(n, css="colh", title=n, span=True) for n in names]
    rows = []
    for i, (name, row) in enumerate(zip(names, matrix, strict=True)):
        total = sum(v for v in row if isinstance(v, int | float)) or 1
        cells = [Cell(name, css="rowh", header=True, title=name)]
        for j, value in enumerate(row):
            share = (as_float(value) or 0.0) / total
            background, colour = heat_colour(share, i == j)
            title = f"true {name}, predicted {names[j]}: {value} ({share * 100:.1f}% of the row)"
            cells.append(
                Cell(num(value), style=f"background:{background};color:{colour}", title=title)
            )
        rows.append(cells)
    return table(head, rows, "confusion")


@register_section("performance", "Model performance", order=20)
def performance_section(run: RunData) -> Context:
    """Accuracy per split, per scenario, per class and the confusion matrix."""
    context: Context = {"per_split": _per_split(run), "split": None}
    chosen = main_split(run)
    if chosen is not None:
        split, part = chosen
        context |= {
            "split": split,
            "per_scenario": _per_scenario(part),
            "per_class": _per_class(run, split, part),
            "confusion": _confusion(run, split),
        }
    return context
