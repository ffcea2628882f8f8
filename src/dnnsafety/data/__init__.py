"""Datasets: the in-memory :class:`Dataset`, user-data loaders and built-in sets."""

from dnnsafety.data.builtin import DATASETS, load_dataset
from dnnsafety.data.dataset import SPLITS, Dataset, Split, make_split, reveal_labels

__all__ = ["DATASETS", "SPLITS", "Dataset", "Split", "load_dataset", "make_split", "reveal_labels"]
