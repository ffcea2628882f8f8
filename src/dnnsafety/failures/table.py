"""The per-sample table: one row per input with its label, prediction and probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def sample_table(split: Any, preds: Any, num_classes: int) -> pd.DataFrame:
    """Rows of ``samples.parquet`` for one split.

    Parameters
    ----------
    split
        A :class:`~dnnsafety.data.dataset.Split` (ids, labels unless hidden, scenarios,
        optional metadata).
    preds
        The model's predictions on it (``pred``: ``(N,)`` class, ``probs``: ``(N, C)``
        softmax outputs).
    num_classes
        ``C``: one ``prob.<k>`` column per class.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample_id, split, label, pred, correct, confidence, scenario, prob.<k>`` and
        ``meta.<param>`` per metadata column; ``label`` and ``correct`` are empty (``NA``) for
        a split whose labels are held back (the pool).
    """
    n = len(split)
    labelled = not split.hidden
    label = pd.array(split.label_values if labelled else [pd.NA] * n, dtype="Int64")
    correct = pd.array(
        preds.pred == split.label_values if labelled else [pd.NA] * n, dtype="boolean"
    )
    table = pd.DataFrame(
        {
            "sample_id": split.ids.astype(str),
            "split": split.name,
            "label": label,
            "pred": preds.pred,
            "correct": correct,
            "confidence": preds.probs.max(axis=1) if n else np.zeros(0, np.float32),
            "scenario": split.scenarios.astype(str),
        }
    )
    probs = pd.DataFrame(preds.probs, columns=[f"prob.{k}" for k in range(num_classes)])
    parts = [table, probs]
    if split.metadata is not None:
        parts.append(split.metadata.add_prefix("meta."))
    return pd.concat(parts, axis=1)
