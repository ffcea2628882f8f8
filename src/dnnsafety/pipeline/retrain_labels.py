"""Retraining on a selection labelled by hand: ``dnnsafety retrain --labels``.

``dnnsafety select`` exported the images and a CSV to fill in; this module reads the filled-in
labels, takes the bag's images from the run's pool split or, for a selection made with
``select --pool-store``, from that pool (only the bag's rows are read), fine-tunes, and writes
``retrained/<strategy>/`` (model files and ``result.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.pipeline.retrain import RetrainSession
from dnnsafety.runs import write_json

if TYPE_CHECKING:
    from dnnsafety.data.pool import PoolSource
    from dnnsafety.pipeline.run import Pipeline

__all__ = ["retrain_with_labels"]


def _selection_pool(meta: Mapping[str, Any]) -> PoolSource | None:
    """The pool a ``select --pool-store`` selection was made from (``None``: the run's own)."""
    recorded = meta.get("pool")
    if not recorded:
        return None
    from dnnsafety.data.pool import open_pool

    path = Path(str(recorded))
    if not path.exists():
        raise InvalidInputError(
            f"The selection was made from the pool {path}, which is gone; put it back there, "
            "or select again from where it is now (`dnnsafety select ... --pool-store PATH`)."
        )
    return open_pool(path)


def retrain_with_labels(
    pipeline: Pipeline, strategy: str, labels_file: Path, seeds: int = 1
) -> dict[str, Any]:
    """Retrain on a selection labelled by hand (``dnnsafety select`` + the filled-in CSV).

    Writes the first run's model (``retrained/<strategy>/model.pt``, and ``model.ts`` for a
    TorchScript model: :mod:`dnnsafety.retraining.export`) and ``result.json``; returns the
    result with its path.
    """
    from dnnsafety.pipeline.labels import load_selection, pool_size, selection_classes
    from dnnsafety.retraining.labels import read_labels

    if seeds < 1:
        raise ConfigError(f"The 'seeds' parameter must be an int >= 1. Got {seeds}.")
    pipeline.check_supported("retrain", quick=True)  # the model's kind: no loading
    # then the labels file: a bad one fails in a moment, before the dataset is loaded
    selection, meta = load_selection(pipeline.run, strategy)
    classes = selection_classes(pipeline.run, strategy)
    ids = [str(s) for s in selection.ids]
    store = _selection_pool(meta)
    max_rows = len(store) if store is not None else pool_size(pipeline.run)
    labels = read_labels(labels_file, ids, classes, max_rows=max_rows)
    pipeline.check_supported("retrain")
    if tuple(pipeline.dataset.class_names) != classes:
        raise ConfigError(
            f"The classes changed since `dnnsafety select` (then: {', '.join(classes)}); run "
            f"`dnnsafety select {pipeline.run.path} --strategy {strategy}` again."
        )
    session = RetrainSession(pipeline)
    folder = pipeline.run / "retrained" / strategy
    runs = []
    files: list[Path] = []
    for i in range(seeds):
        seed = pipeline.config.seed + i
        images, y = session.bag(selection, seed, labels=labels, pool=store)
        model, score, info = session.retrain(images, y, seed)
        if i == 0:
            files = session.save_model(model, strategy)
        runs.append({"seed": seed, **score.to_dict(), **info, "bag_size": len(y)})
    result = {
        "strategy": strategy,
        "labels_file": str(labels_file),
        "labelled": len(labels),
        "original": session.original_score().to_dict(),
        "runs": runs,
        "model_files": [p.name for p in files],
    }
    write_json(folder / "result.json", result)
    return {**result, "path": str(folder)}
