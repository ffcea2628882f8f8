"""Reducer and clusterer parameters from config as ``{name, params}``; old name-only configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dnnsafety.clustering import CLUSTERERS, REDUCERS, HDBSCANClusterer
from dnnsafety.config import PluginConfig, RunConfig, dump_config, load_config, merge
from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.analyze.safe import reduce_and_cluster


def test_cluster_params_are_settable_and_survive_a_round_trip(tmp_path: Path) -> None:
    cfg = merge(
        RunConfig(),
        {"analysis.cluster.params.min_cluster_size": 10, "analysis.cluster": "hdbscan"},
    )
    assert cfg.analysis.cluster == PluginConfig("hdbscan", {"min_cluster_size": 10})
    path = tmp_path / "config.toml"
    path.write_text(dump_config(cfg))
    assert load_config(path).analysis.cluster == cfg.analysis.cluster
    # the same plug-in by name keeps its parameters; another one starts from its defaults
    assert merge(cfg, {"analysis.cluster": "hdbscan"}).analysis.cluster.params
    assert merge(cfg, {"analysis.cluster": "kmeans"}).analysis.cluster.params == {}


def test_old_name_only_config_still_loads(tmp_path: Path) -> None:
    text = dump_config(RunConfig())
    start = text.index("[analysis.reduce]")
    end = text.index("[retrain]")
    old = text[:start] + text[end:]
    old = old.replace('feature_layer = ""', 'feature_layer = ""\nreduce = "pca"\ncluster = "ward"')
    path = tmp_path / "config.toml"
    path.write_text(old)
    cfg = load_config(path)
    assert cfg.analysis.reduce == PluginConfig("pca") and cfg.analysis.cluster == PluginConfig(
        "ward"
    )
    # fingerprints of runs made before plug-ins took parameters stay the same
    assert cfg.section("analysis")["cluster"] == "ward"
    assert str(cfg.analysis.cluster) == "ward"


def test_params_reach_the_clusterer_and_unknown_ones_are_refused() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([c + rng.normal(size=(30, 3)) for c in np.eye(3) * 12.0])
    _, _, params = reduce_and_cluster(
        x, "none", PluginConfig("hdbscan", {"min_cluster_size": 25}), 0
    )
    assert params["cluster"]["min_cluster_size"] == 25
    with pytest.raises(ConfigError, match=r"takes no parameter.*min_clustr_size.*min_cluster_size"):
        reduce_and_cluster(x, "none", PluginConfig("hdbscan", {"min_clustr_size": 5}), 0)
    built = CLUSTERERS.create("hdbscan", {"min_samples": 3}, random_state=4)
    assert isinstance(built, HDBSCANClusterer) and built.get_params()["random_state"] == 4
    assert REDUCERS.create("pca", {"n_components": 2}).n_components == 2
