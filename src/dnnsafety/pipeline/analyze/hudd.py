"""The white-box root-cause analysis stage (HUDD, METHOD.md §2 steps 1-7).

For the error-inducing inputs of a split: LRP heatmaps at every candidate layer (one backward
pass per batch, stored on disk), per-layer distances and Ward clustering with the number of
clusters chosen from the WICD curve, the layer choice, and per-cluster inspection outputs:
``clusters.json``, contact sheets, WICD plots and the per-layer table.

Its feature space for selection: the LRP heatmaps at the selected layer, computed for the pool
too (predicted class, no label needed) and stored on disk beside the error heatmaps, then read
as a memory map in batches.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.clustering import LayerClustering, cluster_layer, pairwise_distances, select_layer
from dnnsafety.config import AnalysisConfig, PluginConfig
from dnnsafety.data.dataset import Split
from dnnsafety.exceptions import RunDirError
from dnnsafety.explain import describe_clusters, plot_wicd
from dnnsafety.explain.gallery import cluster_gallery, error_map
from dnnsafety.failures import error_inputs
from dnnsafety.features import INPUT_LAYER, HeatmapStore, compute_heatmaps
from dnnsafety.pipeline.analyze.base import (
    ANALYSES,
    ANALYSIS_DIR,
    CLUSTERS_FILE,
    LAYERS_FILE,
    Analysis,
    AnalysisSpace,
    ChunkedSpace,
    RunContext,
    cluster_labels,
)
from dnnsafety.pipeline.artifacts import Clusters, LayerSummary, LayerTable, write_artifact
from dnnsafety.progress import track
from dnnsafety.runs import RunDir, fingerprint, safe_name, write_bytes

log = logging.getLogger(__name__)

LABELS_FILE = "analysis/labels.npz"
POOL_HEATMAPS = "analysis/pool_heatmaps"
CORRECT_HEATMAPS = "analysis/correct_heatmaps"


@dataclass(frozen=True)
class AnalysisResult:
    """What the analysis found: the selected layer and its clusters."""

    selected_layer: str
    n_errors: int
    clusters: list[dict[str, Any]]
    layers: dict[str, dict[str, Any]]


def _layer_summary(res: LayerClustering, selected: bool) -> LayerSummary:
    return LayerSummary(
        k=res.k,
        k_reason=res.k_reason,
        knee_k=res.knee_k,
        is_input=res.is_input,
        indices=res.indices,
        ks=res.ks.tolist(),
        wicd=res.wicd.tolist(),
        gradient=res.gradient.tolist(),
        sizes=res.sizes.tolist(),
        selected=selected,
    )


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
                gradient_ends=(
                    "first-difference" if config.mode == "hudd-compat" else "fourth-order"
                ),
            )
            plot_wicd(results[layer], out_dir / f"wicd_{safe_name(layer)}.png")
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
    summaries = {name: _layer_summary(res, name == selected) for name, res in results.items()}
    write_artifact(run, LayerTable(selected=selected, settings=settings, layers=summaries))
    write_artifact(
        run,
        Clusters(
            method="hudd",
            split=config.split,
            layer=selected,
            settings=settings,
            n_errors=n,
            clusters=clusters,
        ),
    )
    layers = {name: summary.to_json() for name, summary in summaries.items()}
    column = pd.DataFrame(
        {"cluster": pd.array(labels, dtype="Int64")}, index=errors["sample_id"].astype(str)
    )
    run.add_columns(column)
    return AnalysisResult(selected, n, clusters, layers)


@ANALYSES.register("hudd", help="white-box: LRP heatmaps per layer, Ward clustering, WICD knee")
class HuddAnalysis(Analysis):
    """HUDD (METHOD.md §2): the analysis when ``analysis.features`` is empty."""

    name = "hudd"
    outputs = (CLUSTERS_FILE, LAYERS_FILE)
    white_box = True
    black_box_fallback: ClassVar[dict[str, Any]] = {"features": "backbone"}

    @classmethod
    def handles(cls, config: AnalysisConfig) -> bool:
        # SAFE handles any named source, except in the released tool's mode
        return not PluginConfig.of(config.features).name or config.mode == "hudd-compat"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from dnnsafety.features.coverage import warn_lrp_coverage

        cfg = ctx.config.analysis
        model = ctx.model()
        split = ctx.dataset[cfg.split]
        ruleset = cfg.resolved()["ruleset"]
        extra: dict[str, Any] = {
            "lrp_coverage": warn_lrp_coverage(model, split.images[:2], ruleset)
        }
        result = run_analysis(
            ctx.run, model, split, ctx.dataset.class_names, cfg, seed=ctx.config.seed
        )
        extra.update(layer=result.selected_layer, clusters=len(result.clusters))
        return extra

    def space(self, ctx: RunContext, data: dict[str, Any], pool_ids: list[str]) -> AnalysisSpace:
        layer = _selected_layer(data)
        errors = HeatmapStore.open(ctx.run / ANALYSIS_DIR / "heatmaps")
        error_ids = [str(s) for s in errors.ids]
        pool = ctx.dataset["pool"]
        pool_maps = _layer_heatmaps(ctx, data, pool.images, pool_ids, POOL_HEATMAPS, "pool")
        return AnalysisSpace(
            error_ids,
            errors.flat(layer),
            cluster_labels(data, error_ids),
            pool_ids,
            pool_maps,
            self.name,
        )

    def reference_features(
        self,
        ctx: RunContext,
        data: dict[str, Any],
        images: torch.Tensor,
        ids: list[str],
        split: str,
    ) -> Any:
        """LRP heatmaps (predicted class) at the selected layer, under
        ``analysis/correct_heatmaps``."""
        return _layer_heatmaps(ctx, data, images, ids, CORRECT_HEATMAPS, split, ids)

    @staticmethod
    def describe(data: dict[str, Any]) -> str:
        return f"layer {data['layer']}, {data['settings']['ruleset']} LRP rules"

    def chunked_space(self, ctx: RunContext, data: dict[str, Any]) -> ChunkedSpace:
        """The errors' stored heatmaps at the selected layer; pool chunks get theirs from
        :class:`~dnnsafety.features.chunks.LayerHeatmaps` (same layer, rules and batches)."""
        from dnnsafety.features.chunks import LayerHeatmaps

        layer = _selected_layer(data)
        errors = HeatmapStore.open(ctx.run / ANALYSIS_DIR / "heatmaps")
        error_ids = [str(s) for s in errors.ids]
        sample = ctx.dataset[data["split"]].images[:1]
        features = LayerHeatmaps(
            ctx.model(),
            layer,
            sample,
            data["settings"]["ruleset"],
            ctx.config.analysis.batch_size,
        )
        return ChunkedSpace(
            error_ids, np.asarray(errors.flat(layer)), cluster_labels(data, error_ids), features
        )


def _selected_layer(data: dict[str, Any]) -> str:
    layer: str = data["layer"]
    if not layer:
        raise RunDirError("clusters.json names no selected layer; rerun `dnnsafety analyze`.")
    return layer


def _layer_heatmaps(
    ctx: RunContext,
    data: dict[str, Any],
    images: Any,
    ids: list[str],
    root: str,
    *tag: Any,
) -> Any:
    """LRP heatmaps (predicted class) of ``images`` at the analysis's selected layer, flat.

    Stored under ``root/<ruleset>_<layer>_<fingerprint of model and tag>``: a retrained model
    or another subset gets its own folder instead of a clash with the previous heatmaps.
    """
    layer = _selected_layer(data)
    ruleset = data["settings"]["ruleset"]
    tag_key = fingerprint(ctx.model_key, *tag)[:12]
    folder = f"{ruleset}_{safe_name(layer, keep='-_.')}_{tag_key}"
    store = compute_heatmaps(
        ctx.model(),
        images,
        ids,
        ctx.run / root / folder,
        layers=[layer],
        ruleset=ruleset,
        batch_size=ctx.config.analysis.batch_size,
    )
    return store.flat(layer)
