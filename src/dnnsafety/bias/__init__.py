"""Bias: under-represented, high-error groups (METHOD.md §8).

* :mod:`.groups` - groups without metadata: clusters of all training and test inputs in
  feature space, with representation ratio, error rate (Wilson interval) and a flag
  "under-represented and high-error" by a stated rule with a multiple-testing correction.
* :mod:`.slices` - groups from metadata: SliceLine's top conjunctions of binned metadata
  predicates, as readable rules with support and error rate.
* :mod:`.stats` - Wilson intervals, one-sided binomial tests, Benjamini-Hochberg.

The mitigations (reweighting by inferred group, Just Train Twice, George) are retraining
strategies: :mod:`dnnsafety.retraining.mitigations.bias`.
"""

from dnnsafety.bias.groups import (
    BiasGroup,
    FlagRule,
    GroupAnalysis,
    cluster_features,
    find_groups,
    group_statistics,
)
from dnnsafety.bias.slices import Predicate, Slice, find_slices, slice_members
from dnnsafety.bias.stats import benjamini_hochberg, binomial_greater, wilson_interval

__all__ = [
    "BiasGroup",
    "FlagRule",
    "GroupAnalysis",
    "Predicate",
    "Slice",
    "benjamini_hochberg",
    "binomial_greater",
    "cluster_features",
    "find_groups",
    "find_slices",
    "group_statistics",
    "slice_members",
    "wilson_interval",
]
