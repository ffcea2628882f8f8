"""Are the neurons with the highest LRP relevance more critical under stuck-at faults?

For one layer, the relevance of a neuron (a channel of the layer's input) is its mean
absolute LRP relevance over inputs (:func:`dnnsafety.features.lrp.layer_relevance`, the
relevance entering the layer). Its criticality is the share of inputs whose prediction
changes when it is stuck at zero (:func:`~dnnsafety.robustness.faults.stuck_at`). We compare
(a) the k most relevant neurons stuck together against random k-subsets of the same layer,
and (b) relevance against criticality neuron by neuron (Spearman's rank correlation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from dnnsafety._validation import check_int_param, check_random_generator
from dnnsafety.robustness.faults import stuck_at
from dnnsafety.robustness.sweep import predict_labels

__all__ = ["Criticality", "neuron_relevance", "relevance_vs_random"]


def neuron_relevance(
    model: nn.Module, images: torch.Tensor, layer: str, batch_size: int = 256
) -> np.ndarray:
    """Mean absolute LRP relevance per neuron (input channel) of ``layer``, shape ``(C,)``."""
    from dnnsafety.features.lrp import layer_relevance

    total: np.ndarray | None = None
    for start in range(0, len(images), batch_size):
        maps = layer_relevance(model, images[start : start + batch_size], [layer]).maps[layer]
        flat = maps.detach().abs().reshape(maps.shape[0], maps.shape[1], -1).sum(dim=2)
        part = flat.sum(dim=0).double().numpy()
        total = part if total is None else total + part
    assert total is not None
    return total / len(images)


@dataclass(frozen=True)
class Criticality:
    """The measured answer for one layer (see the module doc).

    Attributes
    ----------
    layer
        The layer whose input neurons were faulted.
    k
        Neurons stuck at zero together.
    top_sdc
        SDC rate with the ``k`` most relevant neurons stuck.
    random_sdc
        SDC rates with random ``k``-subsets, one per draw.
    p_value
        Share of random draws at least as harmful as the top-``k`` (one-sided, with the +1
        correction): small when the relevant neurons are more critical.
    spearman
        Rank correlation of relevance and single-neuron SDC rate over the layer's neurons.
    spearman_p
        Its two-sided p-value.
    """

    layer: str
    k: int
    top_sdc: float
    random_sdc: np.ndarray
    p_value: float
    spearman: float
    spearman_p: float

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "layer": self.layer,
            "k": self.k,
            "top_sdc": self.top_sdc,
            "random_sdc_mean": float(self.random_sdc.mean()),
            "random_sdc_std": float(self.random_sdc.std()),
            "n_random": len(self.random_sdc),
            "p_value": self.p_value,
            "spearman": self.spearman,
            "spearman_p": self.spearman_p,
        }


def relevance_vs_random(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    k: int = 4,
    n_random: int = 50,
    random_state: int | np.random.Generator | None = 0,
) -> Criticality:
    """Stuck-at-zero criticality of the most relevant neurons of ``layer`` vs random ones.

    Parameters
    ----------
    model
        The classifier; restored after every fault.
    images
        Inputs the faults are judged on (and the relevance computed on).
    layer
        A module name whose input channels are the neurons (a conv or linear layer).
    k
        Neurons stuck together.
    n_random
        Random ``k``-subsets drawn for the comparison.
    random_state
        Seed or generator.
    """
    k = check_int_param("relevance_vs_random", "k", k, 1)
    n_random = check_int_param("relevance_vs_random", "n_random", n_random, 1)
    rng = check_random_generator("relevance_vs_random", random_state)
    relevance = neuron_relevance(model, images, layer)
    golden = predict_labels(model, images)

    def sdc(neurons: np.ndarray) -> float:
        with stuck_at(model, layer, neurons.tolist(), at="input"):
            return float(np.mean(predict_labels(model, images) != golden))

    n = len(relevance)
    k = min(k, n)
    top = sdc(np.argsort(-relevance, kind="stable")[:k])
    random = np.array([sdc(rng.choice(n, size=k, replace=False)) for _ in range(n_random)])
    single = np.array([sdc(np.array([i])) for i in range(n)])
    rho, p_rho = spearmanr(relevance, single)
    return Criticality(
        layer=layer,
        k=k,
        top_sdc=top,
        random_sdc=random,
        p_value=float((1 + np.sum(random >= top)) / (1 + n_random)),
        spearman=float(rho) if np.isfinite(rho) else float("nan"),
        spearman_p=float(p_rho) if np.isfinite(p_rho) else float("nan"),
    )
