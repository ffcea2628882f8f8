"""Features of inputs for the analysis stages.

LRP heatmaps (METHOD.md §2.2): :func:`layer_relevance` computes the relevance entering every
chosen layer of a model in one backward pass under a rule set from :data:`RULESETS`
(``"hudd"``: the released HUDD tool's rules; ``"default"``: zennit's EpsilonPlusFlat with
canonizers); :func:`compute_heatmaps` streams them into a :class:`HeatmapStore` on disk.
"""

from dnnsafety.features.lrp import (
    BACKENDS,
    CANDIDATE_TYPES,
    INPUT_LAYER,
    RULESETS,
    HuddZPlus,
    LayerInfo,
    LayerRelevance,
    MergeBatchNorm,
    ResidualSum,
    Rule,
    RuleSet,
    ZooBasicBlockCanonizer,
    find_layers,
    get_ruleset,
    layer_relevance,
)
from dnnsafety.features.store import HeatmapStore, compute_heatmaps

__all__ = [
    "BACKENDS",
    "CANDIDATE_TYPES",
    "INPUT_LAYER",
    "RULESETS",
    "HeatmapStore",
    "HuddZPlus",
    "LayerInfo",
    "LayerRelevance",
    "MergeBatchNorm",
    "ResidualSum",
    "Rule",
    "RuleSet",
    "ZooBasicBlockCanonizer",
    "compute_heatmaps",
    "find_layers",
    "get_ruleset",
    "layer_relevance",
]

# Black-box feature sources (SAFE); importing the autoencoder module registers it.
from dnnsafety.features import autoencoder as _autoencoder  # noqa: F401
from dnnsafety.features.sources import (
    FEATURE_SOURCES,
    FeatureContext,
    FeatureSource,
    make_source,
)

__all__ += ["FEATURE_SOURCES", "FeatureContext", "FeatureSource", "make_source"]
