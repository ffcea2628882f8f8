"""Pictures of adversarial inputs: robust accuracy vs budget, detection ROC, examples."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnsafety.runs import write_bytes

__all__ = ["plot_examples", "plot_robustness", "plot_roc"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    plt = _pyplot()
    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())


def plot_robustness(curve: Sequence[Mapping[str, Any]], title: str, path: str | Path) -> None:
    """Robust accuracy against the budget ``eps`` (one attack), as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=100)
    eps = [float(r["eps"]) for r in curve]
    acc = [float(r["robust_accuracy"]) for r in curve]
    ax.plot([0.0, *eps], [float(curve[0]["clean_accuracy"]) if curve else 0.0, *acc], "o-")
    ax.set_xlabel("eps (pixel units of [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_roc(rocs: Mapping[str, Mapping[str, Any]], title: str, path: str | Path) -> None:
    """ROC curves of several detectors (``{name: {"fpr", "tpr", "auroc"}}``), as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.6), dpi=100)
    drawn = 0
    for name, roc in rocs.items():
        if roc.get("auroc") is None:
            continue
        ax.plot(roc["fpr"], roc["tpr"], label=f"{name} ({roc['auroc']:.3f})")
        drawn += 1
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlabel("false-alarm rate on clean inputs")
    ax.set_ylabel("share of adversarial inputs flagged")
    ax.set_title(title, fontsize=10)
    if drawn:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no detector scored", ha="center", va="center")
    _save(fig, path)


def _rgb(image: torch.Tensor) -> np.ndarray:
    arr = image.detach().float().clamp(0, 1).numpy()
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return arr[:3].transpose(1, 2, 0)


def plot_examples(
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    titles: Sequence[str],
    path: str | Path,
    heatmaps: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """One row per example: original, adversarial, difference amplified to the full range,
    and (when given) the LRP input heatmaps of both (red positive, blue negative)."""
    plt = _pyplot()
    cols = 3 + (2 if heatmaps is not None else 0)
    n = len(clean)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.7 * n), dpi=100, squeeze=False)
    names = ["original", "adversarial", "difference (amplified)", "LRP original", "LRP adv."]
    for i in range(n):
        diff = (adversarial[i] - clean[i]).float()
        scale = float(diff.abs().max()) or 1.0
        panels = [_rgb(clean[i]), _rgb(adversarial[i]), _rgb(diff / (2 * scale) + 0.5)]
        for j, img in enumerate(panels):
            axes[i, j].imshow(img)
        if heatmaps is not None:
            for j, maps in enumerate(heatmaps):
                rel = maps[i].sum(axis=0) if maps[i].ndim == 3 else maps[i]
                lim = float(np.abs(rel).max()) or 1.0
                axes[i, 3 + j].imshow(rel, cmap="bwr", vmin=-lim, vmax=lim)
        axes[i, 0].set_ylabel(titles[i], fontsize=7)
        for j in range(cols):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(names[j], fontsize=7)
    _save(fig, path)
