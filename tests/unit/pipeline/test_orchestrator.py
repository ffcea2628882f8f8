"""The orchestrator's plug-in seams: selectors' ``requires`` and the ANALYSES registry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from dnnsafety.config import AnalysisConfig
from dnnsafety.evaluation import summarize_runs
from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.analyze import (
    ANALYSES,
    CLUSTERS_FILE,
    LAYERS_FILE,
    analysis_for,
    analysis_of,
    stale_outputs,
)
from dnnsafety.pipeline.retrain import RetrainSession
from dnnsafety.pipeline.strategies import (
    REQUIREMENTS,
    cluster_strategies,
    needs_analysis,
    requirements,
)
from dnnsafety.selection import SELECTORS, Selector


@pytest.mark.parametrize("name", SELECTORS.names())
def test_every_selector_declares_what_it_requires(name):
    cls = SELECTORS.get(name)
    assert "requires" in vars(cls) or any(
        "requires" in vars(base) for base in cls.__mro__[1:] if base is not Selector
    ), f"{name} inherits requires from the base class instead of declaring it"
    assert isinstance(cls.requires, frozenset)
    assert cls.requires <= set(REQUIREMENTS)


def test_requirements_decide_which_strategies_need_the_analysis():
    assert cluster_strategies() == [
        "closest",
        "closest-contrast",
        "cluster-margin",
        "hybrid",
        "hybrid-size",
    ]
    assert needs_analysis(["random", "closest"])
    assert not needs_analysis(["random", "entropy", "dsa"])
    assert requirements("dsa") == {"probs", "activations"}
    assert requirements("closest-contrast") == {"space", "correct"}


def _session(built: list[str]) -> RetrainSession:
    """A session over a 4-image pool whose shared inputs record when they are built."""
    session = object.__new__(RetrainSession)
    session.pool = SimpleNamespace(ids=np.array(["a", "b", "c", "d"]))
    probs = np.full((4, 2), 0.5, dtype=np.float32)
    feats = np.arange(8, dtype=np.float32).reshape(4, 2)
    inputs = {
        "pool_probs": probs,
        "space": SimpleNamespace(
            pool_features=feats, error_features=feats[:2], labels=np.array([0, 0])
        ),
        "correct_reference": feats[2:],
        "activations": (feats, np.array([0, 1, 0, 1]), feats),
    }

    class Recording(RetrainSession):
        def __getattribute__(self, name):
            if name in inputs:
                built.append(name)
                return inputs[name]
            return super().__getattribute__(name)

    session.__class__ = Recording
    return session


@pytest.mark.parametrize(
    ("requires", "expected"),
    [
        (frozenset(), []),
        (frozenset({"probs"}), ["pool_probs"]),
        (frozenset({"space"}), ["space"]),
        (frozenset({"space", "correct"}), ["space", "correct_reference"]),
        (frozenset({"probs", "activations"}), ["pool_probs", "activations"]),
    ],
)
def test_the_pool_view_holds_exactly_what_the_selector_requires(monkeypatch, requires, expected):
    class Toy(Selector):
        name = "toy"

    Toy.requires = requires
    monkeypatch.setitem(SELECTORS._items, "toy", Toy)
    built: list[str] = []
    view, clusters = _session(built).pool_view("toy")
    assert built == expected
    assert (view.probs is not None) == ("probs" in requires)
    assert (view.features is not None) == ("space" in requires)
    assert (clusters is not None) == ("space" in requires)
    assert (clusters is not None and clusters.correct is not None) == ("correct" in requires)
    assert (view.activations is not None) == ("activations" in requires)
    assert (view.reference is not None) == ("activations" in requires)


def test_a_requirement_nothing_builds_is_refused(monkeypatch):
    class Toy(Selector):
        name = "toy"
        requires: ClassVar[frozenset[str]] = frozenset({"probs", "gradients"})

    monkeypatch.setitem(SELECTORS._items, "toy", Toy)
    with pytest.raises(ConfigError, match="'gradients'"):
        requirements("toy")


def test_each_configuration_asks_for_exactly_one_analysis():
    assert ANALYSES.names() == ["hudd", "safe"]
    white = analysis_for(AnalysisConfig(features=""))
    black = analysis_for(AnalysisConfig(features="backbone"))
    assert (white.name, black.name) == ("hudd", "safe")
    assert white.outputs == (CLUSTERS_FILE, LAYERS_FILE) and white.white_box
    assert black.outputs == (CLUSTERS_FILE,) and not black.white_box
    for name in ANALYSES:
        assert CLUSTERS_FILE in ANALYSES.get(name).outputs
    # the black-box fallback of the white-box analysis is handled by the black-box one
    fallback = AnalysisConfig(**white.black_box_fallback)
    assert analysis_for(fallback).name == "safe"
    # a black-box analysis leaves no white-box layer table behind, and the reverse has none
    assert stale_outputs(black) == [LAYERS_FILE]
    assert stale_outputs(white) == []


def test_clusters_json_names_its_analysis():
    assert analysis_of({"method": "safe"}).name == "safe"
    assert analysis_of({"method": "hudd"}).name == "hudd"
    assert analysis_of({}).name == "hudd"  # written before the field existed
    with pytest.raises(ConfigError, match="Unknown analysis 'other'"):
        analysis_of({"method": "other"})
    safe = {"features": "backbone", "reduce": "umap", "cluster": "dbscan", "n_noise": 3}
    assert analysis_of({"method": "safe", **safe}).describe(safe) == (
        "backbone features -> umap -> dbscan; 3 errors in no cluster (noise)"
    )
    hudd = {"layer": "features.3", "settings": {"ruleset": "default"}}
    assert analysis_of(hudd).describe(hudd) == "layer features.3, default LRP rules"


def test_run_summaries_give_none_for_a_missing_score():
    def run(overall: float, rare: float | None) -> dict[str, object]:
        return {
            "overall": overall,
            "rare": rare,
            "per_scenario": {"night": overall},
            "per_cluster": {"0": overall},
            "improved": 0.1,
            "worsened": 0.0,
        }

    summary = summarize_runs([run(0.8, 0.5), run(0.9, None)])
    assert summary["overall"]["mean"] == pytest.approx(0.85)
    assert summary["rare"] == {"mean": None, "low": None, "high": None}
    assert set(summary["per_scenario"]) == {"night"} and set(summary["per_cluster"]) == {"0"}


def test_a_feature_table_without_a_name_is_the_white_box_analysis():
    from dnnsafety.config import AnalysisConfig, PluginConfig
    from dnnsafety.pipeline.analyze import analysis_for

    assert analysis_for(AnalysisConfig(features=PluginConfig("", {}))).name == "hudd"
    assert analysis_for(AnalysisConfig(features=PluginConfig("pixels", {}))).name == "safe"


def test_a_contrastive_distance_parameter_makes_the_pool_view_build_the_correct_inputs():
    built: list[str] = []
    _, clusters = _session(built).pool_view("hybrid", {"distance": "contrastive"})
    assert "correct_reference" in built and clusters is not None and clusters.correct is not None
    built.clear()
    _, clusters = _session(built).pool_view("hybrid", {"distance": "nearest"})
    assert "correct_reference" not in built and clusters is not None and clusters.correct is None
