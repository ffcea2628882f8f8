"""What each root-cause cluster shares: representatives, labels, metadata, rules, pictures."""

from dnnsafety.explain.clusters import describe_clusters, variance_ratios
from dnnsafety.explain.plots import contact_sheet, plot_wicd
from dnnsafety.explain.rules import Condition, Rule, cluster_rules, rules_for

__all__ = [
    "Condition",
    "Rule",
    "cluster_rules",
    "contact_sheet",
    "describe_clusters",
    "plot_wicd",
    "rules_for",
    "variance_ratios",
]
