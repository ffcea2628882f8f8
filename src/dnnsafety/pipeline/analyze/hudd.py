"""The white-box root-cause analysis stage (HUDD, METHOD.md §2 steps 1-7).

For the error-inducing inputs of a split: LRP heatmaps at every candidate layer (one backward
pass per batch, stored on disk), per-layer distances and Ward clustering with the number of
clusters chosen from the WICD curve, the layer choice, and per-cluster inspection outputs:
``clusters.json``, contact sheets, WICD plots and the per-layer table.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.clustering import LayerClustering, cluster_layer, pairwise_distances, select_layer
from dnnsafety.config import AnalysisConfig
from dnnsafety.data.dataset import Split
from dnnsafety.explain import describe_clusters, plot_wicd
from dnnsafety.explain.gallery import cluster_gallery, error_map
from dnnsafety.failures import error_inputs
from dnnsafety.features import INPUT_LAYER, HeatmapStore, compute_heatmaps
from dnnsafety.progress import track
from dnnsafety.runs import RunDir, safe_name, write_bytes, write_json

log = logging.getLogger(__name__)

ANALYSIS_DIR = "analysis"
CLUSTERS_FILE = "clusters.json"
LAYERS_FILE = "analysis/layers.json"
LABELS_FILE = "analysis/labels.npz"


@dataclass(frozen=True)
class AnalysisResult:
    """What the analysis found: the selected layer and its clusters."""

    selected_layer: str
    n_errors: int
    clusters: list[dict[str, Any]]
    layers: dict[str, dict[str, Any]]


def _layer_summary(res: LayerClustering) -> dict[str, Any]:
    return {
        "k": res.k,
        "k_reason": res.k_reason,
        "knee_k": res.knee_k,
        "is_input": res.is_input,
        "indices": res.indices,
        "ks": res.ks.tolist(),
        "wicd": res.wicd.tolist(),
        "gradient": res.gradient.tolist(),
        "sizes": res.sizes.tolist(),
    }


def _save_labels(path: Path, ids: list[str], results: dict[str, LayerClustering]) -> None:
    """Cluster ids of every layer's cut (``ids`` + one array per layer), for later stages."""
    arrays: dict[str, Any] = {f"layer:{name}": res.labels for name, res in results.items()}
    arrays["ids"] = np.asarray(ids, dtype=str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_layer_labels(run: RunDir) -> tuple[list[str], dict[str, np.ndarray]]:
    """The error ids and the cluster ids of every analysed layer of a run."""
    with np.load(run / LABELS_FILE, allow_pickle=False) as data:
        ids = data["ids"].tolist()
        layers = {k[6:]: data[k] for k in data.files if k.startswith("layer:")}
    return ids, layers


def run_analysis(
    run: RunDir,
    model: nn.Module,
    split: Split,
    class_names: tuple[str, ...],
    config: AnalysisConfig,
    seed: int = 0,
) -> AnalysisResult:
    """Run the analysis for ``split`` and write its outputs into ``run``.

    The heatmaps are kept under ``analysis/heatmaps`` (one float32 array per layer); an
    interrupted computation resumes, and a rerun with the same model and settings reuses them.
    """
    settings = config.resolved()
    samples = run.read_samples()
    errors = error_inputs(samples, config.split)
    n = len(errors)
    out_dir = run / ANALYSIS_DIR
    log.info("analysing %d error-inducing %s inputs", n, config.split)
    position = {sid: i for i, sid in enumerate(split.ids.tolist())}
    idx = np.array([position[s] for s in errors["sample_id"]], dtype=np.int64)
    images = split.images[torch.from_numpy(idx)]
    ids = errors["sample_id"].astype(str).tolist()

    results: dict[str, LayerClustering] = {}
    heatmaps: HeatmapStore | None = None
    if n:
        heatmaps = compute_heatmaps(
            model,
            images,
            ids,
            out_dir / "heatmaps",
            layers=config.layers or None,
            ruleset=settings["ruleset"],
            batch_size=config.batch_size,
        )
        for layer in track(heatmaps.layers, total=len(heatmaps.layers), desc="cluster layers"):
            d = pairwise_distances(heatmaps.flat(layer))
            results[layer] = cluster_layer(
                d,
                precomputed=True,
                layer=layer,
                is_input=heatmaps.is_input(layer),
                k_rule=settings["k_rule"],  # type: ignore[arg-type]
                pair_rule="upper" if config.mode == "hudd-compat" else "mean",
            )
            plot_wicd(results[layer], out_dir / f"wicd_{safe_name(layer)}.png")
    layers = {name: _layer_summary(res) for name, res in results.items()}
    _save_labels(run / LABELS_FILE, ids, results)
    hidden = [name for name, res in results.items() if not res.is_input]
    if heatmaps is not None and hidden:
        selected = select_layer(results, settings["selection"])  # type: ignore[arg-type]
        # recomputed rather than kept per layer: L matrices of N x N would not fit for large N
        d = pairwise_distances(heatmaps.flat(selected))
        labels = results[selected].labels
        clusters = describe_clusters(labels, d, errors, class_names)
        pixel = heatmaps.array(INPUT_LAYER) if INPUT_LAYER in heatmaps.layers else None
        cluster_gallery(out_dir, images, labels, clusters, errors, class_names, pixel)
        error_map(out_dir, heatmaps.flat(selected), labels, ids, images, seed=seed)
    else:
        selected, labels, clusters = "", np.zeros(0, dtype=np.int64), []
    for name in layers:
        layers[name]["selected"] = name == selected
    write_json(run / LAYERS_FILE, {"selected": selected, "settings": settings, "layers": layers})
    write_json(
        run / CLUSTERS_FILE,
        {
            "method": "hudd",
            "split": config.split,
            "layer": selected,
            "settings": settings,
            "n_errors": n,
            "clusters": clusters,
        },
    )
    column = pd.DataFrame(
        {"cluster": pd.array(labels, dtype="Int64")}, index=errors["sample_id"].astype(str)
    )
    run.add_columns(column)
    return AnalysisResult(selected, n, clusters, layers)
