"""Training and evaluation loops.

Training is deterministic under a seed: every epoch reseeds torch from ``(seed, epoch)`` and
draws its own shuffling order, so a run interrupted after epoch ``e`` and resumed from its
checkpoint ends with the same weights as an uninterrupted run. The checkpoint (``last.pt``) is
written atomically after every epoch and holds only tensors and plain containers, so it loads
with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dnnsafety.config import TrainConfig
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.loading import safe_load
from dnnsafety.models.objective import Objective
from dnnsafety.progress import progress_bar
from dnnsafety.runs import atomic_path

log = logging.getLogger(__name__)

BatchAugment = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]


@dataclass(frozen=True)
class EpochStats:
    """Figures of one training epoch."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float | None
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_model` did. ``best_epoch`` counts from 1."""

    best_epoch: int
    best_score: float
    select_by: str
    history: tuple[EpochStats, ...]
    resumed_from_epoch: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Predictions:
    """Per-sample model outputs: predicted class and softmax probabilities."""

    pred: np.ndarray
    probs: np.ndarray

    def correct(self, labels: np.ndarray) -> np.ndarray:
        return self.pred == labels


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"train.optimizer must be 'sgd' or 'adam'. Got {cfg.optimizer!r}.")


def _validate(cfg: TrainConfig, n_train: int, has_val: bool) -> None:
    if cfg.epochs < 1:
        raise ConfigError(f"train.epochs must be an int >= 1. Got {cfg.epochs}.")
    if cfg.batch_size < 1:
        raise ConfigError(f"train.batch_size must be an int >= 1. Got {cfg.batch_size}.")
    if not cfg.lr > 0:
        raise ConfigError(f"train.lr must be > 0. Got {cfg.lr}.")
    if cfg.select_by not in ("val", "train"):
        raise ConfigError(f"train.select_by must be 'val' or 'train'. Got {cfg.select_by!r}.")
    if cfg.select_by == "val" and not has_val:
        raise ConfigError(
            "train.select_by = 'val' needs a validation split; add one or set select_by = 'train'."
        )
    if cfg.schedule not in ("constant", "cosine"):
        raise ConfigError(f"train.schedule must be 'constant' or 'cosine'. Got {cfg.schedule!r}.")
    if n_train == 0:
        raise ConfigError("The training split is empty.")


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate of batch ``step`` of ``total``; stateless, so resuming needs no state."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    return cfg.lr


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 512, desc: str = "predict"
) -> Predictions:
    """Predicted classes and softmax probabilities, in batches, in eval mode.

    Batches are moved to the model's device and the outputs back to the CPU."""
    was_training = model.training
    device = _model_device(model)
    model.eval()
    preds: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    try:
        with progress_bar(total=len(images), desc=desc, unit="img") as bar:
            for start in range(0, len(images), batch_size):
                logits = model(images[start : start + batch_size].to(device))
                p = torch.softmax(logits.float(), dim=1).cpu()
                preds.append(p.argmax(dim=1))
                probs.append(p)
                bar.update(len(p))
    finally:
        model.train(was_training)
    if not preds:
        return Predictions(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
    return Predictions(
        torch.cat(preds).numpy().astype(np.int64), torch.cat(probs).numpy().astype(np.float32)
    )


def accuracy(model: nn.Module, images: torch.Tensor, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on the given images."""
    if len(labels) == 0:
        return float("nan")
    return float(predict(model, images, desc="validate").correct(labels).mean())


def _save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def train_model(
    model: nn.Module,
    train_images: torch.Tensor,
    train_labels: np.ndarray,
    val_images: torch.Tensor | None,
    val_labels: np.ndarray | None,
    cfg: TrainConfig,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    key: str = "",
    weights: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    dro_step: float = 0.01,
    augment: BatchAugment | None = None,
    consistency: float = 0.0,
    select_score: Callable[[nn.Module], float] | None = None,
    divergence: str = "js",
) -> TrainResult:
    """Train ``model`` in place and leave it holding the best epoch's weights.

    Parameters
    ----------
    model
        The network; trained in place.
    train_images, train_labels
        Training data (float32 ``N x C x H x W`` in [0, 1], integer labels).
    val_images, val_labels
        Validation data used to pick the best epoch (``cfg.select_by = "val"``).
    cfg
        Hyper-parameters.
    seed
        Seed for initial shuffling and dropout; identical seeds give identical weights.
    checkpoint
        Where to write the per-epoch checkpoint; if it exists with the same ``key``, training
        resumes after its last completed epoch.
    key
        Fingerprint of everything that determines the result (config + data); a checkpoint with
        another key is ignored.
    weights, groups, dro_step
        Per-sample loss weights, or group ids for online group DRO with step ``dro_step``
        (:class:`~dnnsafety.models.objective.Objective`); ``None``: plain mean cross-entropy.
    augment
        ``(model, x, y, generator) -> (x, y)`` applied to every training batch (AugMix,
        adversarial examples, ...), or ``None``.
    consistency
        Weight of the Jensen-Shannon consistency loss between every clean batch and the views
        ``augment`` appends to it (AugMix: 12; :class:`~dnnsafety.models.objective.Objective`);
        0: none. Needs an ``augment`` that returns the clean batch followed by its views.
    divergence
        The consistency loss: ``"js"`` (Jensen-Shannon among the views, AugMix) or ``"kl"``
        (mean ``KL(p_clean || p_view)``, TRADES with ``consistency = beta``).
    select_score
        ``model -> score >= 0`` evaluated after every epoch (e.g. clean plus robust accuracy on a
        validation split); the epoch with the highest score is kept instead of the one with the
        best ``cfg.select_by`` accuracy. ``None``: ``cfg.select_by``.

    Notes
    -----
    Weight decay drives weights into denormal floats, which x86 CPUs process up to 100x more
    slowly. Call ``torch.set_flush_denormal(True)`` before any torch work (torch's worker
    threads copy the setting only when created); the ``dnnsafety`` command does this.
    """
    has_val = val_images is not None and val_labels is not None and len(val_labels) > 0
    _validate(cfg, len(train_labels), has_val)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    labels_t = torch.as_tensor(train_labels, dtype=torch.long)
    device = _model_device(model)  # batches go to the model's device (a GPU, say)
    optimizer = _optimizer(model, cfg)
    if consistency > 0 and augment is None:
        raise ConfigError("A consistency loss needs an augmentation that adds views of a batch.")
    loss_fn = Objective(len(labels_t), weights, groups, dro_step, consistency, divergence)
    history: list[EpochStats] = []
    best_score, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    start_epoch = 0
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path is not None and ckpt_path.exists():
        state = safe_load(ckpt_path)
        if isinstance(state, dict) and state.get("key") == key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            best_state = state["best_model"]
            best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
            history = [EpochStats(**h) for h in state["history"]]
            start_epoch = int(state["epoch"])
            log.info("resuming training after epoch %d from %s", start_epoch, ckpt_path)
        else:
            log.info("ignoring checkpoint %s: it belongs to another configuration", ckpt_path)
    torch.manual_seed(seed)
    per_epoch = -(-len(labels_t) // cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(labels_t), generator=gen)
        model.train()
        total_loss, total_correct, seen = 0.0, 0, 0
        with progress_bar(
            total=len(order), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img"
        ) as bar:
            for start in range(0, len(order), cfg.batch_size):
                step = epoch * per_epoch + start // cfg.batch_size
                lr = _lr_at(cfg, step, per_epoch * cfg.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = order[start : start + cfg.batch_size]
                x, y = train_images[idx].to(device), labels_t[idx].to(device)
                if augment is not None:
                    x, y = augment(model, x, y, gen)
                    model.train()
                optimizer.zero_grad(set_to_none=True)
                logits = model(x)
                loss = loss_fn(logits, y, idx)
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"Training diverged (loss {loss.item()}) in epoch {epoch + 1}; "
                        "lower train.lr."
                    )
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach()) * len(y)
                total_correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                bar.update(len(idx))  # training images: an augmentation may add rows
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{total_correct / seen:.3f}")
        train_acc = total_correct / seen
        val_acc = (
            accuracy(model, val_images, val_labels)
            if has_val and val_images is not None and val_labels is not None
            else None
        )
        score = val_acc if cfg.select_by == "val" and val_acc is not None else train_acc
        if select_score is not None:
            score = float(select_score(model))
        stats = EpochStats(
            epoch + 1, total_loss / seen, train_acc, val_acc, time.perf_counter() - t0
        )
        history.append(stats)
        log.info(
            "epoch %d/%d loss %.4f train_acc %.4f val_acc %s (%.1fs)",
            epoch + 1,
            cfg.epochs,
            stats.train_loss,
            train_acc,
            "-" if val_acc is None else f"{val_acc:.4f}",
            stats.seconds,
        )
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        if ckpt_path is not None:
            _save_checkpoint(
                ckpt_path,
                {
                    "key": key,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_model": best_state,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "history": [asdict(h) for h in history],
                },
            )
    saturated = select_score is None and cfg.select_by == "val" and best_score >= 1.0
    if saturated and best_epoch < cfg.epochs and val_labels is not None:
        # ties keep the first epoch: a saturated validation split cannot choose a later one
        log.warning(
            "validation accuracy reached 100%% at epoch %d on %d images, so that epoch is "
            "kept: the later ones cannot beat it. A larger validation split, or "
            "select_by = 'train' ([train] or [retrain]), lets training go on.",
            best_epoch,
            len(val_labels),
        )
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch, best_score, cfg.select_by, tuple(history), start_epoch)
