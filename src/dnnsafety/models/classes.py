"""The order of a model's outputs, and the dataset relabelled to match it.

A dataset numbers its classes in its own way (image folders: sorted folder names, the rule of
torchvision's ``ImageFolder``); a model trained elsewhere may number them differently. Output
``i`` of the model means ``classes[i]``, where ``classes`` comes from, first match wins:

1. ``model.classes`` in the configuration;
2. ``model.classes_file`` (one class name per line);
3. ``classes.txt`` next to the model's weights file;
4. ``classes.txt`` at the root of the image folder;

else the data's own order. :func:`apply_class_order` relabels the dataset once, right after
loading, so every stage (training, prediction, metrics, analysis, selection) uses the model's
index order. :func:`suggest_class_order` spots a model that looks scored against the wrong
classes and proposes the order its test confusion matrix suggests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnsafety.config import DataConfig, ModelConfig
from dnnsafety.data.dataset import UNKNOWN_LABEL, Dataset
from dnnsafety.exceptions import ConfigError

log = logging.getLogger(__name__)

CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ClassOrder:
    """Class names in the order of the model's outputs, and where they were read."""

    names: tuple[str, ...]
    source: str


def read_classes_file(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines and ``#`` comments skipped).

    Lines of the form ``<index><TAB><name>`` (the ``classes.txt`` a selection folder holds)
    are read as the name at that index.

    Raises
    ------
    ConfigError
        The file is missing, unreadable or lists no name.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Class list {str(p)!r} does not exist (model.classes_file).")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the class list {str(p)!r}: {exc}") from None
    names = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not names:
        raise ConfigError(f"The class list {str(p)!r} is empty; write one class name per line.")
    indexed = [line.split("\t", 1) for line in names]
    if all(len(parts) == 2 and parts[0].strip().isdigit() for parts in indexed):
        by_index = {int(i): name.strip() for i, name in indexed}
        if sorted(by_index) == list(range(len(names))):
            return tuple(by_index[i] for i in range(len(names)))
    return names


def resolve_class_order(model: ModelConfig, data: DataConfig) -> ClassOrder | None:
    """The model's output order a configuration states, or ``None`` for the data's order."""
    if model.classes:
        return ClassOrder(tuple(str(c) for c in model.classes), "model.classes")
    if model.classes_file:
        names = read_classes_file(model.classes_file)
        return ClassOrder(names, f"model.classes_file {model.classes_file!r}")
    candidates: list[tuple[Path, str]] = []
    if model.weights:
        candidates.append((Path(model.weights).parent / CLASSES_FILE, "next to the model file"))
    if data.name == "folder" and data.path:
        candidates.append((Path(data.path) / CLASSES_FILE, "at the image folder's root"))
    for path, where in candidates:
        if path.is_file():
            return ClassOrder(read_classes_file(path), f"{str(path)!r} ({where})")
    return None


def apply_class_order(dataset: Dataset, order: ClassOrder | None) -> Dataset:
    """``dataset`` relabelled so that label ``i`` means ``order.names[i]``.

    Parameters
    ----------
    dataset
        The dataset as loaded (labels in the data's own order).
    order
        The model's output order; ``None`` keeps the data's order.

    Raises
    ------
    ConfigError
        The names repeat, or do not match the dataset's class names (both lists are named).
    """
    if order is None:
        log.info("class order: the data's own (%s)", _short(dataset.class_names))
        return dataset
    names, have = order.names, dataset.class_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"The class list from {order.source} repeats {', '.join(dupes)}.")
    if set(names) != set(have):
        missing = [n for n in have if n not in names]
        extra = [n for n in names if n not in have]
        parts = []
        if missing:
            parts.append(f"not in the model's list: {', '.join(missing)}")
        if extra:
            parts.append(f"not in the data: {', '.join(extra)}")
        raise ConfigError(
            f"The model's classes (from {order.source}) do not match the dataset's class "
            f"names ({'; '.join(parts)}). Model: {json.dumps(list(names))}. Data: "
            f"{json.dumps(list(have))}. List the data's class names in the order of the "
            "model's outputs."
        )
    if names == have:
        log.info("class order from %s (the same as the data's)", order.source)
        return dataset
    log.info("class order from %s: %s", order.source, _short(names))
    new_index = np.array([names.index(n) for n in have], dtype=np.int64)
    splits = {}
    for key, split in dataset.splits.items():
        old = split.label_values
        known = old != UNKNOWN_LABEL
        relabelled = old.copy()
        relabelled[known] = new_index[old[known]]
        splits[key] = dataclasses.replace(split, label_values=relabelled)
    return Dataset(dataset.name, names, splits)


@dataclass(frozen=True)
class OrderSuggestion:
    """A class order that fits the test confusion matrix much better than the current one.

    ``classes[j]`` is the class the model's output ``j`` seems to mean; ``accuracy`` and
    ``suggested_accuracy`` are the test accuracies with the current and the suggested order.
    """

    classes: tuple[str, ...]
    accuracy: float
    suggested_accuracy: float
    low_classes: tuple[str, ...]

    def config_line(self) -> str:
        """The suggestion as a TOML line for the ``[model]`` table."""
        return f"classes = {json.dumps(list(self.classes))}"


def suggest_class_order(
    confusion: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    min_gain: float = 0.1,
) -> OrderSuggestion | None:
    """The output order the confusion matrix suggests, when it looks permuted.

    A model scored against the wrong class order scores near or below chance on the classes
    that are mixed up and high on the others; matching outputs to classes with the best
    assignment (``scipy.optimize.linear_sum_assignment`` on the confusion counts) then raises
    the accuracy a lot.

    Parameters
    ----------
    confusion
        ``K x K`` counts, row = true class, column = predicted output.
    class_names
        Names of the ``K`` classes, in the current order.
    min_gain
        Smallest accuracy gain (absolute) of the suggested order that counts.

    Returns
    -------
    OrderSuggestion or None
        ``None`` when the current order is the best assignment, gains less than ``min_gain``,
        or no class scores near chance.
    """
    from scipy.optimize import linear_sum_assignment

    cm = np.asarray(confusion, dtype=np.float64)
    k = len(class_names)
    total = cm.sum()
    if cm.shape != (k, k) or k < 2 or total <= 0:
        return None
    rows, cols = linear_sum_assignment(cm, maximize=True)
    if np.array_equal(cols, np.arange(k)):
        return None
    accuracy = float(np.trace(cm) / total)
    suggested = float(cm[rows, cols].sum() / total)
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(k), where=support > 0)
    low = tuple(class_names[i] for i in range(k) if support[i] > 0 and recall[i] <= 1.5 / k)
    if suggested - accuracy < min_gain or not low:
        return None
    classes = [""] * k
    for true, output in zip(rows, cols, strict=True):
        classes[output] = class_names[true]
    return OrderSuggestion(tuple(classes), accuracy, suggested, low)


def warn_if_permuted(
    confusion: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str]
) -> OrderSuggestion | None:
    """Log a warning with a ready-to-paste ``model.classes`` when the order looks wrong."""
    found = suggest_class_order(confusion, class_names)
    if found is not None:
        log.warning(
            "The model scores near chance on %s but %.1f%% of the test set would be right "
            "with another class order (%.1f%% now): it may number its classes differently "
            "from the data. If its outputs are in this order, add to the [model] table of "
            "config.toml:\n    %s\n(or pass --set 'model.%s', or write the names one per line "
            "to classes.txt next to the model file).",
            _short(found.low_classes),
            100 * found.suggested_accuracy,
            100 * found.accuracy,
            found.config_line(),
            found.config_line().replace(" = ", "=", 1),
        )
    return found


def _short(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
