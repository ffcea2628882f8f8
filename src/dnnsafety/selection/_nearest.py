"""Nearest-neighbour searches over streamed rows; they live in
:mod:`dnnsafety.detection._nearest` (surprise adequacy moved there) and are re-exported here."""

from dnnsafety.detection._nearest import (
    Reference,
    group_min_distances,
    nearest_in_class,
    read_block,
)

__all__ = ["Reference", "group_min_distances", "nearest_in_class", "read_block"]
