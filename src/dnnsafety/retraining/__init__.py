"""Retraining on the labelled unsafe set: balancing the bag (fine-tuning lives elsewhere)."""

from dnnsafety.retraining.balance import bag_for, balanced_bag, bootstrap_weights

__all__ = ["bag_for", "balanced_bag", "bootstrap_weights"]
