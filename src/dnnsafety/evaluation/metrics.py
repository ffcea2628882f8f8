"""Accuracy tables of a per-sample table (``metrics.json``)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import pandas as pd
import torch

from dnnsafety.data.dataset import LABELLED_SPLITS, known_scenarios


def compute_metrics(samples: pd.DataFrame, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy overall, per class and per scenario for every labelled split; test confusion.

    ``per_scenario`` is empty for a split without ground-truth scenarios (all unknown).
    """
    out: dict[str, Any] = {"class_names": list(class_names), "splits": {}}
    for split in LABELLED_SPLITS:
        part = samples[samples["split"] == split]
        if part.empty:
            continue
        correct = part["correct"].astype(bool)
        per_scen = correct.groupby(part["scenario"]).agg(["mean", "size"])
        per_class = correct.groupby(part["label"].astype(int)).mean()
        out["splits"][split] = {
            "n": len(part),
            "accuracy": float(correct.mean()),
            "errors": int((~correct).sum()),
            "per_scenario": {
                str(s): {"accuracy": float(r["mean"]), "n": int(r["size"])}
                for s, r in per_scen.iterrows()
            }
            if known_scenarios(part["scenario"]).any()
            else {},
            "per_class": {class_names[int(str(k))]: float(v) for k, v in per_class.items()},
        }
    test = samples[samples["split"] == "test"]
    if not test.empty:
        k = len(class_names)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (test["label"].astype(int).to_numpy(), test["pred"].to_numpy()), 1)
        out["confusion_test"] = cm.tolist()
    out["environment"] = {"python": platform.python_version(), "torch": torch.__version__}
    return out
