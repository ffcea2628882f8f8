"""Which inputs the model gets wrong: the per-sample table and the error-inducing inputs every
analysis starts from."""

from __future__ import annotations

import pandas as pd

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.failures.table import sample_table

__all__ = ["error_inputs", "sample_table"]


def error_inputs(samples: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Rows of ``samples.parquet`` for the misclassified inputs of a labelled split.

    Parameters
    ----------
    samples
        The per-sample table (``split``, ``correct`` columns).
    split
        Which split's errors to analyse; the unlabeled pool has no known errors.
    """
    if split == "pool":
        raise InvalidInputError(
            "The pool is unlabeled, so its errors are unknown; analyse the 'test' (or 'val') split."
        )
    part = samples[samples["split"] == split]
    if part.empty:
        raise InvalidInputError(f"The run has no {split!r} samples; evaluate a dataset with one.")
    wrong = part["correct"].astype("boolean").fillna(True).eq(False)
    return part[wrong.to_numpy()].reset_index(drop=True)
