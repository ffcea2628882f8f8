"""Sweeps: accuracy per corruption x severity, against the missing rate, and under faults.

Each sweep is a grid of independent cells (one corruption at one severity, one fault, ...).
A caller that must survive interruption passes the cells already finished (``done``, keyed
by :func:`cell_key`) and a callback ``on_cell(key, value)`` that saves each new one; a rerun
then skips the saved cells and gives the same result (every cell draws its randomness from
its own seed, derived from ``random_state`` and its key, so the order does not matter).
Progress shows through :func:`dnnsafety.progress.progress_bar` (silent unless the CLI
turned bars on).

Metrics follow ImageNet-C (Hendrycks & Dietterich, ICLR 2019): the corruption error of a
model on corruption ``c`` is its error summed over severities divided by a reference model's,
``CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}``, and the mCE is its mean over corruptions. The
fault campaigns follow PyTorchFI's definition of a silent data corruption (SDC): a fault
that changes the top-1 prediction of an input, without any error being raised.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dnnsafety._validation import check_random_state
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.progress import progress_bar
from dnnsafety.robustness.corruptions import CORRUPTIONS, MISSING, SEVERITIES, drop
from dnnsafety.robustness.faults import BitFlip, flip_bit

__all__ = [
    "CellStore",
    "FaultCampaign",
    "cell_key",
    "cell_seed",
    "corruption_errors",
    "corruption_sweep",
    "fault_campaign",
    "mean_corruption_error",
    "missing_sweep",
    "predict_labels",
]

OnCell = Callable[[str, object], None]


@dataclass
class CellStore:
    """Finished cells of a sweep (``done``) and where new ones go (``on_cell``)."""

    done: dict[str, object] = field(default_factory=dict)
    on_cell: OnCell | None = None

    def get(self, key: str) -> object | None:
        return self.done.get(key)

    def put(self, key: str, value: object) -> None:
        self.done[key] = value
        if self.on_cell is not None:
            self.on_cell(key, value)


def cell_key(*parts: object) -> str:
    """The key of one cell: its parts joined by ``/`` (``"fog/3"``)."""
    return "/".join(str(p) for p in parts)


def cell_seed(random_state: int, key: str) -> int:
    """A seed of its own for cell ``key`` (stable across runs and orders)."""
    return (random_state * 1_000_003 + zlib.crc32(key.encode())) % (2**32)


@torch.no_grad()
def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Top-1 predictions of ``model`` (eval mode, its training flags restored afterwards).

    A non-finite output row (NaN or infinity after a fault) predicts class -1.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    out: list[np.ndarray] = []
    try:
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size]).float()
            pred = logits.argmax(dim=1)
            bad = ~torch.isfinite(logits).all(dim=1)
            out.append(torch.where(bad, torch.full_like(pred, -1), pred).cpu().numpy())
    finally:
        for m, flag in flags:
            m.training = flag
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _check_data(images: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if len(images) == 0 or len(images) != len(labels):
        raise InvalidInputError(
            f"A sweep needs images and one label per image; got {len(images)} images and "
            f"{len(labels)} labels."
        )
    return labels


def corruption_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    corruptions: Sequence[str],
    severities: Sequence[int] = SEVERITIES,
    random_state: int = 0,
    store: CellStore | None = None,
    batch_size: int = 512,
) -> dict[str, dict[int, float]]:
    """Accuracy of ``model`` on ``images`` under every corruption at every severity.

    Parameters
    ----------
    model
        A classifier returning ``N x classes`` logits; left unchanged.
    images, labels
        Float32 ``N x C x H x W`` in [0, 1] and their ``N`` labels (the clean test set).
    corruptions
        Names from :data:`~dnnsafety.robustness.corruptions.CORRUPTIONS`.
    severities
        Severities to run (1-5).
    random_state
        Seed; each cell derives its own (:func:`cell_seed`).
    store
        Finished cells and the saving callback (resume after interruption).

    Returns
    -------
    dict
        ``{corruption: {severity: accuracy}}``.
    """
    labels = _check_data(images, labels)
    seed = check_random_state("corruption_sweep", random_state)
    entries = {name: CORRUPTIONS.get(name) for name in corruptions}
    cells = store or CellStore()
    result: dict[str, dict[int, float]] = {name: {} for name in entries}
    total = len(entries) * len(severities)
    with progress_bar(total=total, desc="corruptions", unit="cell") as bar:
        for name, entry in entries.items():
            for severity in severities:
                key = cell_key(name, severity)
                value = cells.get(key)
                if value is None:
                    x = entry(images, int(severity), cell_seed(seed, key))
                    value = float(np.mean(predict_labels(model, x, batch_size) == labels))
                    cells.put(key, value)
                result[name][int(severity)] = float(value)  # type: ignore[arg-type]
                bar.update(1)
    return result


def missing_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    kinds: Sequence[str] = MISSING,
    rates: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9),
    random_state: int = 0,
    store: CellStore | None = None,
    batch_size: int = 512,
) -> dict[str, dict[float, float]]:
    """Accuracy of ``model`` against the missing rate, per kind of missing data.

    Returns
    -------
    dict
        ``{kind: {rate: accuracy}}`` (see :func:`~dnnsafety.robustness.corruptions.drop`).
    """
    labels = _check_data(images, labels)
    seed = check_random_state("missing_sweep", random_state)
    cells = store or CellStore()
    result: dict[str, dict[float, float]] = {k: {} for k in kinds}
    with progress_bar(total=len(kinds) * len(rates), desc="missing data", unit="cell") as bar:
        for kind in kinds:
            for rate in rates:
                key = cell_key("missing", kind, f"{float(rate):g}")
                value = cells.get(key)
                if value is None:
                    x = drop(images, kind, float(rate), cell_seed(seed, key))
                    value = float(np.mean(predict_labels(model, x, batch_size) == labels))
                    cells.put(key, value)
                result[kind][float(rate)] = float(value)  # type: ignore[arg-type]
                bar.update(1)
    return result


def corruption_errors(
    accuracy: Mapping[str, Mapping[int, float]],
    reference: Mapping[str, Mapping[int, float]],
) -> dict[str, float]:
    """ImageNet-C's corruption error per corruption: ``sum_s E_s / sum_s E^ref_s``.

    Parameters
    ----------
    accuracy, reference
        ``{corruption: {severity: accuracy}}`` of the model and of the reference model
        (severities missing from either are skipped).

    Raises
    ------
    ConfigError
        If the reference has no error at all on a corruption (the ratio is undefined).
    """
    out: dict[str, float] = {}
    for name, cells in accuracy.items():
        ref = reference.get(name, {})
        common = [s for s in cells if s in ref]
        if not common:
            continue
        ref_err = sum(1.0 - ref[s] for s in common)
        if ref_err <= 0:
            raise ConfigError(
                f"The reference model makes no error on {name!r}: its corruption error is "
                "undefined. Use a weaker reference."
            )
        out[name] = sum(1.0 - cells[s] for s in common) / ref_err
    return out


def mean_corruption_error(errors: Mapping[str, float]) -> float:
    """The mCE: the mean of :func:`corruption_errors` over corruptions (NaN when empty)."""
    return float(np.mean(list(errors.values()))) if errors else float("nan")


# --------------------------------------------------------------------------- fault campaigns


@dataclass(frozen=True)
class FaultCampaign:
    """The outcome of single-bit-flip injections, one fault at a time.

    Attributes
    ----------
    faults
        The injected faults.
    sdc
        Per fault, the share of inputs whose top-1 prediction changed (a silent data
        corruption), shape ``(n_faults,)``.
    clean_accuracy
        Accuracy without faults.
    faulty_accuracy
        Accuracy under each fault, shape ``(n_faults,)``.
    """

    faults: list[BitFlip]
    sdc: np.ndarray
    clean_accuracy: float
    faulty_accuracy: np.ndarray

    def rate(self) -> float:
        """Mean SDC rate over faults (the share of (fault, input) pairs that are SDCs)."""
        return float(self.sdc.mean()) if len(self.sdc) else float("nan")

    def critical_share(self) -> float:
        """Share of faults that cause at least one SDC."""
        return float((self.sdc > 0).mean()) if len(self.sdc) else float("nan")

    def by(self, what: str) -> dict[str, dict[str, float]]:
        """SDC rate per ``"layer"`` or ``"bit"``: ``{group: {rate, critical, n}}``."""
        if what not in ("layer", "bit"):
            raise ConfigError(f"group faults by 'layer' or 'bit'; got {what!r}.")
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(self.faults):
            groups.setdefault(f.layer if what == "layer" else str(f.bit), []).append(i)
        order = sorted(groups, key=int) if what == "bit" else list(groups)
        return {
            g: {
                "rate": float(self.sdc[groups[g]].mean()),
                "critical": float((self.sdc[groups[g]] > 0).mean()),
                "n": len(groups[g]),
            }
            for g in order
        }

    def subset(self, bits: Iterable[int]) -> FaultCampaign:
        """The faults at the given bit positions only."""
        keep = set(bits)
        idx = [i for i, f in enumerate(self.faults) if f.bit in keep]
        return FaultCampaign(
            [self.faults[i] for i in idx], self.sdc[idx], self.clean_accuracy,
            self.faulty_accuracy[idx],
        )  # fmt: skip


def fault_campaign(
    model: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    faults: Sequence[BitFlip],
    store: CellStore | None = None,
    batch_size: int = 512,
) -> FaultCampaign:
    """Inject each fault alone (:func:`~dnnsafety.robustness.faults.flip_bit`) and measure
    which predictions change against the fault-free run.

    Parameters
    ----------
    model
        The classifier; restored after every fault.
    images, labels
        The inputs the faults are judged on and their labels.
    faults
        From :func:`~dnnsafety.robustness.faults.sample_bit_flips`.
    store
        Finished cells (keyed ``fault/<i>``) and the saving callback.
    """
    labels = _check_data(images, labels)
    golden = predict_labels(model, images, batch_size)
    cells = store or CellStore()
    sdc = np.zeros(len(faults))
    acc = np.zeros(len(faults))
    with progress_bar(total=len(faults), desc="bit flips", unit="fault") as bar:
        for i, f in enumerate(faults):
            key = cell_key("fault", i, f.parameter, f.index, f.bit)
            value = cells.get(key)
            if value is None:
                with flip_bit(model, f.parameter, f.index, f.bit):
                    pred = predict_labels(model, images, batch_size)
                value = [float(np.mean(pred != golden)), float(np.mean(pred == labels))]
                cells.put(key, value)
            sdc[i], acc[i] = value  # type: ignore[misc]
            bar.update(1)
    return FaultCampaign(list(faults), sdc, float(np.mean(golden == labels)), acc)
