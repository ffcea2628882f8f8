"""Synthetic run folders for the report tests: every result file, with hostile strings.

Shared by the report's unit tests and its browser and demo tests (``make_run``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
CLASSES = ["stop", "yield", HOSTILE]
# a contact sheet whose file name (and folder) carries the payload
HOSTILE_SHEET = f"analysis/clusters/{HOSTILE}.png"


def _png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _metrics() -> dict[str, Any]:
    per_scenario = {"nominal": {"accuracy": 0.95, "n": 100}, "fog": {"accuracy": 0.5734, "n": 50}}
    split = {"accuracy": 0.8267, "errors": 26, "n": 150, "per_scenario": per_scenario}
    split["per_class"] = {"stop": 0.8, "yield": 0.88, HOSTILE: 0.8}
    train = {"accuracy": 0.991, "errors": 9, "n": 1000, "per_scenario": per_scenario}
    return {
        "class_names": CLASSES,
        "confusion_test": [[40, 5, 5], [3, 44, 3], [2, 8, 40]],
        "environment": {"python": "3.11.7", "torch": "2.4.0"},
        "splits": {"test": split, "train": train},
    }


def _cluster(cid: int, members: list[str], sheet: str) -> dict[str, Any]:
    return {
        "id": cid,
        "size": len(members),
        "share_of_errors": len(members) / 26,
        "members": members,
        "medoid": members[0],
        "representatives": {"medoid": members[0], "nearest": members[1:3], "farthest": []},
        "true_labels": {"stop": 1, HOSTILE: len(members) - 1},
        "predicted_labels": {"yield": len(members)},
        "scenarios": {"fog": len(members)},
        "metadata": {
            "fog": {"min": 0.81, "max": 0.93, "mean": 0.8876, "std": 0.02},
            "rotation": {"min": -8.0, "max": 8.0, "mean": 0.1, "std": 4.5},
            "side": {"top": HOSTILE, "share": 0.75},
            HOSTILE: {"min": 0.0, "max": 1.0, "mean": 0.5, "std": 0.2},
        },
        "variance_ratio": {"fog": 0.0037, "rotation": 1.02, HOSTILE: 0.3},
        "captures_cause": True,
        "shared_parameters": ["fog", HOSTILE],
        "distinctive_parameters": [
            {
                "parameter": "fog",
                "direction": "high",
                "cluster_mean": 0.8876,
                "all_errors_mean": 0.31,
                "shift_in_std": 2.5,
                "variance_ratio": 0.0037,
            }
        ],
        "contact_sheet": sheet,
        "rules": [
            {
                "text": "fog > 0.62 and brightness <= 0.4",
                "conditions": [
                    {"parameter": "fog", "low": 0.62, "high": None},
                    {"parameter": "brightness", "low": None, "high": 0.4},
                ],
                "precision": 0.91,
                "recall": 0.84,
                "f1": 0.87,
                "support": len(members) - 1,
                "covered": len(members),
                "method": "tree",
            }
        ],
    }


def _full_files(run: Path) -> None:
    ids = [f"s-{i:03d}" for i in range(9)] + [HOSTILE]
    first = [HOSTILE] + [f"s-{i:03d}" for i in range(11)]
    clusters = [_cluster(0, first, HOSTILE_SHEET), _cluster(1, ids[5:9], "missing.png")]
    clusters[0]["representative_images"] = [
        {"role": "farthest", "id": ids[2], "path": "analysis/reps/far.png"},
        {"role": "medoid", "id": HOSTILE, "path": "analysis/reps/medoid.png"},
        {"role": "nearest", "id": ids[1], "path": "../../outside.png"},
    ]
    _png(run / "analysis/reps/far.png", (32, 16), (200, 20, 20))  # image + heatmap overlay
    _png(run / "analysis/reps/medoid.png", (32, 16), (20, 200, 20))
    _png(run / HOSTILE_SHEET, (200, 120), (30, 30, 160))
    _json(
        run / "clusters.json",
        {
            "split": "test",
            "layer": "classifier.1",
            "settings": {"k_rule": "hudd", "ruleset": "default"},
            "n_errors": 26,
            "method": "safe",
            "features": "backbone",
            "reduce": {"name": "umap", "n_components": 10},
            "cluster": "dbscan",
            "n_noise": 3,
            "clusters": clusters,
        },
    )
    layer = {"k": 2, "k_reason": "knee", "knee_k": 2, "is_input": False, "sizes": [11, 4]}
    layer["indices"] = {"silhouette": 0.2757, "davies_bouldin": 1.9626, "dunn": 0.0445}
    layers = {"features.0": {**layer, "k": 5, "selected": False}}
    layers["classifier.1"] = {**layer, "selected": True}
    _json(
        run / "analysis/layers.json",
        {"selected": "classifier.1", "settings": {"k_rule": "hudd"}, "layers": layers},
    )
    _png(run / "analysis/wicd_classifier_1.png", (60, 36), (250, 250, 250))
    _png(run / "analysis/wicd_features_0.png", (60, 36), (240, 240, 240))
    points = [
        {"id": pid, "x": float(i % 4), "y": float(i // 4), "cluster": [0, 1, -1][i % 3]}
        for i, pid in enumerate(ids)
    ]
    _json(
        run / "analysis/map.json",
        {
            "method": "umap",
            "tile": 8,
            "columns": 4,
            "sprite": "analysis/thumbs.png",
            "points": points,
        },
    )
    _png(run / "analysis/thumbs.png", (32, 24), (120, 120, 120))

    def summary(mean: float) -> dict[str, float]:
        return {"mean": mean, "low": mean - 0.02, "high": mean + 0.02}

    def strategy(overall: float, fog: float, cost: int) -> dict[str, Any]:
        per_scenario = {"nominal": 0.95, "fog": fog}
        runs = [
            {"seed": s, "overall": overall, "per_scenario": per_scenario, "per_cluster": {}}
            | {"improved": 10 + s, "worsened": 2, "seconds": 12.5}
            for s in (0, 1, 2)
        ]
        return {
            "cost": cost,
            "bag_size": 2,
            "runs": runs,
            "summary": {
                "overall": summary(overall),
                "per_scenario": {"nominal": summary(0.95), "fog": summary(fog)},
                "worst_scenario": summary(fog - 0.1111),
                "mean_scenario": summary((0.95 + fog) / 2),
                "per_cluster": {"0": summary(0.7321), "1": summary(0.4)},
            },
            "versus": {},
        }

    strategies = {"ClosestU": strategy(0.9123, 0.8456, 50), HOSTILE: strategy(0.8611, 0.6222, 60)}
    strategies["ClosestU"]["versus"] = {HOSTILE: {"a12": 0.91, "p_value": 0.004}}
    strategies[HOSTILE]["versus"] = {"ClosestU": {"a12": 0.09, "p_value": 0.004}}
    _json(
        run / "comparison.json",
        {
            "budget": 50,
            "seeds": [0, 1, 2],
            "scenarios": ["nominal", "fog"],
            "clusters": [0, 1],
            "original": {
                "overall": 0.8267,
                "per_scenario": {"nominal": 0.95, "fog": 0.5734},
                "per_cluster": {"0": 0.0, "1": 0.0},
            },
            "strategies": strategies,
        },
    )


def make_run(run: Path, full: bool) -> Path:
    """A synthetic run folder: train + evaluate only, or with every optional result file."""
    run.mkdir(parents=True, exist_ok=True)
    _json(run / "metrics.json", _metrics())
    _json(
        run / "dataset.json",
        {
            "name": "synthetic",
            "classes": CLASSES,
            "image_shape": [3, 8, 8],
            "test": {"n": 150, "scenarios": {"nominal": 100, "fog": 50}},
            "train": {"n": 1000, "scenarios": {"nominal": 990, "fog": 10}},
        },
    )
    history = [
        {"epoch": e, "seconds": 1.5, "train_acc": 0.9, "train_loss": 0.3, "val_acc": 0.95}
        for e in (1, 2, 3)
    ]
    _json(
        run / "training.json",
        {"best_epoch": 2, "best_score": 0.9525, "history": history, "select_by": "val"},
    )
    config = f'seed = 0\n\n[data]\nname = {json.dumps(HOSTILE)}\n\n[model]\narch = "tiny_cnn"\n'
    (run / "config.toml").write_text(config + "\n[train]\nepochs = 3\nlr = 0.001\n")
    stages: dict[str, Any] = {"train": {"key": "a", "outputs": ["model.pt"], "seconds": 4.5}}
    stages["evaluate"] = {"key": "b", "outputs": ["samples.parquet"], "seconds": 0.75}
    _json(run / "stages.json", stages)
    ids = [f"s-{i:03d}" for i in range(9)] + [HOSTILE]
    frame = pd.DataFrame(
        {
            "sample_id": ids,
            "split": "test",
            "label": pd.array([i % 3 for i in range(10)], dtype="Int64"),
            "pred": [(i + 1) % 3 for i in range(10)],
            "scenario": ["fog"] * 10,
        }
    )
    frame.to_parquet(run / "samples.parquet", index=False)
    if full:
        _full_files(run)
    return run
