"""What each root-cause cluster shares: representatives, labels, metadata, pictures."""

from dnnsafety.explain.clusters import describe_clusters, variance_ratios
from dnnsafety.explain.plots import contact_sheet, plot_wicd

__all__ = ["contact_sheet", "describe_clusters", "plot_wicd", "variance_ratios"]
