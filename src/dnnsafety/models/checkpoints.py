"""State dicts inside the files other tools write: checkpoint dicts and name prefixes.

Training code saves weights in many shapes. :func:`extract_state_dict` finds the mapping of
names to tensors in a plain state dict or in a checkpoint dict (``state_dict``,
``model_state_dict``, ``model``, ``net``, ... - PyTorch Lightning, timm, the PyTorch tutorials);
:func:`match_prefix` removes what wrappers add in front of the names (``module.`` from
``nn.DataParallel`` / DDP, ``_orig_mod.`` from ``torch.compile``, ``model.`` / ``net.`` from a
Lightning module holding the network as an attribute).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any, TypeGuard

import torch

log = logging.getLogger(__name__)

#: Checkpoint keys that may hold the state dict, tried in this order.
STATE_KEYS: tuple[str, ...] = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "net",
    "network",
    "module",
    "weights",
    "params",
    "ema_state_dict",
)

#: Name prefixes added by wrappers, removed when the names do not fit otherwise.
KNOWN_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "model.", "net.", "network.")


def _is_state_dict(obj: Any) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: Any) -> tuple[Mapping[str, torch.Tensor], str] | None:
    """The state dict in ``obj`` and the checkpoint key it was under (``""`` at the top).

    Returns ``None`` when ``obj`` holds no mapping of names to tensors at the top or under
    :data:`STATE_KEYS` (also nested, as in ``{"model": {"state_dict": ...}}``).
    """
    if _is_state_dict(obj):
        return obj, ""
    if not isinstance(obj, Mapping):
        return None
    for key in STATE_KEYS:
        inner = obj.get(key)
        if _is_state_dict(inner):
            return inner, key
        if isinstance(inner, Mapping):  # e.g. {"model": {"state_dict": ...}}
            found = extract_state_dict(inner)
            if found is not None:
                return found[0], f"{key}.{found[1]}".rstrip(".")
    return None


def common_prefix(names: Collection[str]) -> str:
    """The dotted first component every name shares (``"model."``), or ``""``."""
    firsts = {n.split(".", 1)[0] for n in names if "." in n}
    if len(firsts) != 1 or not all("." in n for n in names):
        return ""
    return f"{next(iter(firsts))}."


def match_prefix(
    state: Mapping[str, torch.Tensor], expected: Collection[str]
) -> tuple[dict[str, torch.Tensor], str, list[str]] | None:
    """``state`` renamed to fit ``expected`` by removing wrapper prefixes.

    Tries the prefixes of :data:`KNOWN_PREFIXES` (repeatedly, as in ``module.model.``) and the
    one all names share. Names that do not carry the prefix are dropped when the renamed ones
    fit exactly (a Lightning module's loss or metric buffers next to its network).

    Returns
    -------
    tuple or None
        ``(renamed state, removed prefix, dropped names)``, or ``None`` when nothing fits.
    """
    want = set(expected)
    current: dict[str, torch.Tensor] = dict(state)
    removed = ""
    for _ in range(4):
        shared = common_prefix(current)
        candidates = [p for p in (*KNOWN_PREFIXES, shared) if p]
        best: tuple[dict[str, torch.Tensor], str, list[str]] | None = None
        for prefix in dict.fromkeys(candidates):
            renamed = {k[len(prefix) :]: v for k, v in current.items() if k.startswith(prefix)}
            if not renamed:
                continue
            dropped = [k for k in current if not k.startswith(prefix)]
            if set(renamed) == want:
                return renamed, removed + prefix, dropped
            if not dropped and best is None:
                best = (renamed, prefix, dropped)
        if best is None:
            return None
        current, removed = best[0], removed + best[1]
    return None
