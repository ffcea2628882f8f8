"""The in-memory dataset every stage works on.

A :class:`Dataset` holds named splits (``train``, ``val``, ``test``, ``pool``). Each split has
stable string sample ids, images as a float32 tensor ``N x C x H x W`` in ``[0, 1]``, integer
labels, a ground-truth scenario tag per sample (evaluation only; :data:`UNKNOWN_SCENARIO` when
the data does not say) and an optional metadata table. The ``pool`` split is the unlabeled
improvement set: its labels are held back, and reading :attr:`Split.labels` raises
:class:`HiddenLabelsError`. They are revealed only through :func:`reveal_labels`, the explicit
labelling step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dnnsafety.exceptions import HiddenLabelsError, InvalidInputError

SPLITS: tuple[str, ...] = ("train", "val", "test", "pool")
LABELLED_SPLITS: tuple[str, ...] = ("train", "val", "test")
NOMINAL = "nominal"
UNKNOWN_SCENARIO = "unknown"
"""Scenario tag of a sample whose ground-truth scenario nobody knows (a user's data without a
scenario column). Unlike :data:`NOMINAL` it claims nothing: accuracy per scenario, rare-scenario
accuracy and the report leave such samples out (see :func:`known_scenarios`)."""
UNKNOWN_LABEL = -1
"""Label of a pool image whose class nobody knows yet (allowed only in hidden splits)."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    Parameters
    ----------
    name
        Split name, one of :data:`SPLITS`.
    ids
        Stable, unique string sample ids, length N.
    images
        Float32 tensor ``N x C x H x W`` with values in ``[0, 1]``.
    label_values
        Integer labels, length N. Prefer :attr:`labels`, which refuses to reveal pool labels.
    scenarios
        Ground-truth scenario tag per sample (evaluation only); :data:`UNKNOWN_SCENARIO` where
        the data has none.
    metadata
        Optional per-sample table with N rows in the order of ``ids`` (no ``meta.`` prefix).
    """

    name: str
    ids: np.ndarray
    images: torch.Tensor
    label_values: np.ndarray
    scenarios: np.ndarray
    metadata: pd.DataFrame | None = None
    hidden: bool = field(default=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.ndim != 4:
            raise InvalidInputError(
                f"Split {self.name!r}: images must be N x C x H x W, got shape "
                f"{tuple(self.images.shape)}."
            )
        if self.images.dtype != torch.float32:
            raise InvalidInputError(
                f"Split {self.name!r}: images must be float32 in [0, 1], got {self.images.dtype}."
            )
        for what, arr in (
            ("images", self.images),
            ("labels", self.label_values),
            ("scenarios", self.scenarios),
        ):
            if len(arr) != n:
                raise InvalidInputError(
                    f"Split {self.name!r}: {len(arr)} {what} for {n} sample ids; they must match."
                )
        if self.metadata is not None and len(self.metadata) != n:
            raise InvalidInputError(
                f"Split {self.name!r}: metadata has {len(self.metadata)} rows for {n} samples."
            )
        if len(set(self.ids.tolist())) != n:
            raise InvalidInputError(f"Split {self.name!r}: sample ids are not unique.")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels; raises :class:`HiddenLabelsError` for the unlabeled pool."""
        if self.hidden:
            raise HiddenLabelsError(
                f"The labels of split {self.name!r} are held back (it is the unlabeled pool). "
                "Reveal the ones you need through the labelling step (reveal_labels)."
            )
        return self.label_values

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: np.ndarray | Sequence[int]) -> Split:
        """A new split with the samples at ``index`` (positions, in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        meta = None if self.metadata is None else self.metadata.iloc[idx].reset_index(drop=True)
        return Split(
            name=self.name,
            ids=self.ids[idx],
            images=self.images[torch.from_numpy(idx)],
            label_values=self.label_values[idx],
            scenarios=self.scenarios[idx],
            metadata=meta,
            hidden=self.hidden,
        )


@dataclass(frozen=True, eq=False)
class Dataset:
    """Named splits sharing one class list.

    Parameters
    ----------
    name
        Human-readable dataset name (``signs``, ``fashion-mnist``, a folder name, ...).
    class_names
        Class names; label ``i`` means ``class_names[i]``.
    splits
        Mapping from split name to :class:`Split`. ``train`` and ``test`` are required.
    """

    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]

    def __post_init__(self) -> None:
        for required in ("train", "test"):
            if required not in self.splits:
                raise InvalidInputError(
                    f"Dataset {self.name!r} has no {required!r} split; provide one."
                )
        shapes = {s.image_shape for s in self.splits.values() if len(s)}
        if len(shapes) > 1:
            raise InvalidInputError(
                f"Dataset {self.name!r}: splits have different image shapes {sorted(shapes)}; "
                "resize them to one size (set data.image_size)."
            )
        k = len(self.class_names)
        for split in self.splits.values():
            values = split.label_values
            bad = (values < 0) | (values >= k)
            if split.hidden:
                bad &= values != UNKNOWN_LABEL
            if bad.any():
                first = split.ids[np.flatnonzero(bad)[0]]
                raise InvalidInputError(
                    f"Split {split.name!r}: label outside the {k} classes (sample {first!r}). "
                    "Labels must be integers 0..K-1 matching class_names."
                )

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise InvalidInputError(
                f"Dataset {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}."
            ) from None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.splits["train"].image_shape

    def describe(self) -> str:
        """One line for logs: split sizes, number of classes and image shape."""
        sizes = ", ".join(f"{name} {len(split)}" for name, split in self.splits.items())
        shape = "x".join(map(str, self.image_shape))
        return f"{sizes}, {self.num_classes} classes, images {shape}"

    def summary(self) -> dict[str, object]:
        """Sizes and scenario counts, for logs and the run summary."""
        out: dict[str, object] = {
            "name": self.name,
            "classes": list(self.class_names),
            "image_shape": list(self.image_shape),
        }
        for name, split in self.splits.items():
            counts: dict[str, int] = {}
            if known_scenarios(split.scenarios).any():  # no table of "unknown" only
                tags, n = np.unique(split.scenarios.astype(str), return_counts=True)
                counts = dict(zip(tags.tolist(), n.tolist(), strict=True))
            out[name] = {"n": len(split), "scenarios": counts}
        return out


def known_scenarios(scenarios: np.ndarray | Sequence[str] | pd.Series) -> np.ndarray:
    """Boolean mask: which samples have a ground-truth scenario (not :data:`UNKNOWN_SCENARIO`).

    When no sample has one, per-scenario figures are left out altogether instead of shown
    as one "unknown" (or, worse, "nominal") row.
    """
    return np.asarray(scenarios, dtype=object).astype(str) != UNKNOWN_SCENARIO


def reveal_labels(split: Split, ids: Iterable[str]) -> dict[str, int]:
    """The labelling oracle: reveal the held-back labels of the given sample ids.

    In experiments the labels come from the data; in the real workflow a person fills them in.
    """
    wanted = list(ids)
    pos = {sid: i for i, sid in enumerate(split.ids.tolist())}
    missing = [s for s in wanted if s not in pos]
    if missing:
        raise InvalidInputError(
            f"Unknown sample ids in split {split.name!r}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    unknown = [s for s in wanted if split.label_values[pos[s]] == UNKNOWN_LABEL]
    if unknown:
        raise InvalidInputError(
            f"No ground-truth label is stored for {', '.join(unknown[:5])}"
            + (" ..." if len(unknown) > 5 else "")
            + "; label these images by hand (the labelling CSV) instead of the oracle."
        )
    return {s: int(split.label_values[pos[s]]) for s in wanted}


def make_split(
    name: str,
    ids: Sequence[str] | np.ndarray,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | Sequence[int],
    scenarios: np.ndarray | Sequence[str] | None = None,
    metadata: pd.DataFrame | None = None,
) -> Split:
    """Build a :class:`Split`, converting uint8 / HWC / float64 input as needed.

    ``images`` may be uint8 (0..255) or float in [0, 1], shaped ``N x C x H x W`` or
    ``N x H x W`` (greyscale). The pool split is hidden automatically. Without
    ``scenarios`` every sample's scenario is :data:`UNKNOWN_SCENARIO`.
    """
    if name not in SPLITS:
        raise InvalidInputError(f"Unknown split {name!r}; use one of {', '.join(SPLITS)}.")
    arr = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if arr.ndim == 3:
        arr = arr.unsqueeze(1)
    if arr.dtype == torch.uint8:
        arr = arr.to(torch.float32).div_(255.0)
    elif arr.is_floating_point():
        arr = arr.to(torch.float32)
        if arr.numel() and (float(arr.min()) < 0.0 or float(arr.max()) > 1.0):
            raise InvalidInputError(
                f"Split {name!r}: float images must lie in [0, 1] (got range "
                f"{float(arr.min()):.3g}..{float(arr.max()):.3g}); divide 0..255 data by 255."
            )
    else:
        raise InvalidInputError(f"Split {name!r}: images must be uint8 or float, got {arr.dtype}.")
    n = arr.shape[0]
    labels_arr = np.asarray(labels)
    if labels_arr.dtype.kind not in "iu":
        raise InvalidInputError(f"Split {name!r}: labels must be integers, got {labels_arr.dtype}.")
    scen = (
        np.full(n, UNKNOWN_SCENARIO, dtype=object)
        if scenarios is None
        else np.asarray(scenarios, dtype=object)
    )
    return Split(
        name=name,
        ids=np.asarray(ids, dtype=object),
        images=arr.contiguous(),
        label_values=labels_arr.astype(np.int64),
        scenarios=scen,
        metadata=None if metadata is None else metadata.reset_index(drop=True),
        hidden=(name == "pool"),
    )
