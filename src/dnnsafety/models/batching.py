"""Running a model that accepts only one batch size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dnnsafety.exceptions import InvalidInputError


def run_in_batches(fn: Callable[[Tensor], Tensor], x: Tensor, batch: int) -> Tensor:
    """``fn`` over ``x`` in chunks of exactly ``batch`` rows; the last chunk is zero-padded.

    Parameters
    ----------
    fn
        Maps a ``batch x ...`` tensor to ``batch x ...`` outputs.
    x
        The inputs, any number of rows.
    batch
        The one batch size ``fn`` accepts (>= 1).

    Returns
    -------
    Tensor
        The outputs for the ``len(x)`` rows of ``x``, in order.
    """
    outs = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        n = len(chunk)
        if n < batch:
            pad = chunk.new_zeros((batch - n, *chunk.shape[1:]))
            chunk = torch.cat([chunk, pad])
        outs.append(fn(chunk)[:n])
    if not outs:
        raise InvalidInputError("No images to run the model on (an empty batch).")
    return torch.cat(outs)
