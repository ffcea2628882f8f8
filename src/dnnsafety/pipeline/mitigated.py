"""A mitigation's fine-tuned model, kept: ``dnnsafety mitigate``.

``compare`` scores the mitigations (retraining strategies that need no new labels:
adversarial fine-tuning, AugMix, the bias strategies, ...) beside the selectors but keeps no
model. This module fine-tunes with one mitigation exactly as ``compare`` does
(:func:`~dnnsafety.pipeline.mitigate.mitigate`), scores every run on the test split (robust
accuracy too when the mitigation trains against an attack, as in ``compare``) and writes
``retrained/<strategy>/``: the first run's model in the user's format
(:mod:`dnnsafety.retraining.export`) and ``result.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.mitigate import (
    check_mitigation_params,
    is_mitigation,
    mitigate,
    mitigation_key_parts,
)
from dnnsafety.pipeline.retrain import RetrainSession
from dnnsafety.pipeline.robust_eval import RobustScorer, robust_eval
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.runs import fingerprint, write_json
from dnnsafety.selection import SELECTORS

if TYPE_CHECKING:
    from dnnsafety.pipeline.run import Pipeline

__all__ = ["mitigate_and_save"]

log = logging.getLogger(__name__)


def check_mitigation(strategy: str) -> None:
    """Refuse a strategy that is not a mitigation, naming what to run instead.

    Raises
    ------
    ConfigError
        ``strategy`` is a selector (it needs labels) or unknown.
    """
    if is_mitigation(strategy):
        return
    names = ", ".join(n for n in MITIGATIONS.names() if is_mitigation(n))
    hint = (
        " It is a selection strategy, which needs labels: `dnnsafety select` then "
        "`dnnsafety retrain --labels`."
        if strategy in SELECTORS
        else ""
    )
    raise ConfigError(
        f"{strategy!r} is not a mitigation (a retraining strategy that needs no new labels); "
        f"choose one of: {names}.{hint}"
    )


def mitigate_and_save(pipeline: Pipeline, strategy: str, seeds: int = 1) -> dict[str, Any]:
    """Fine-tune the run's model with the mitigation ``strategy``; keep the first run's model.

    Parameters
    ----------
    pipeline
        The run (trained and evaluated first when needed).
    strategy
        A mitigation name (``adversarial``, ``augmix``, ...); its parameters come from
        ``[retrain.params.<strategy>]``, the training settings from ``[retrain]``.
    seeds
        Runs with seeds ``seed, seed + 1, ...``; every run is scored, the first one's model is
        written. ``result.json`` is written after every run, with ``key``, the fingerprint of
        what the runs depend on: an interrupted command run again with the same settings
        reuses the runs it finished (and the model kept) and goes on with the next seed.

    Returns
    -------
    dict
        ``result.json``'s content (``original``, ``runs``, ``model_files``, ``robust`` when
        measured) and ``path``, the folder written.

    Raises
    ------
    ConfigError
        Not a mitigation, a parameter it does not take or a bad value, ``seeds`` < 1, a
        model that cannot be fine-tuned (ONNX, torch.export), a bad ``[retrain] robust``.
    """
    check_mitigation(strategy)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"The 'seeds' parameter must be an int >= 1. Got {seeds!r}.")
    check_mitigation_params(pipeline, strategy)
    pipeline.check_supported("mitigate", (strategy,))  # a model that cannot be fine-tuned
    spec = robust_eval(pipeline, [strategy])
    if "clusters" in MITIGATIONS.get(strategy).requires:
        pipeline.analyze()  # e.g. generated: new images per root cause (reused when done)
    else:
        pipeline.evaluate()
    session = RetrainSession(pipeline)
    session.robust = RobustScorer(spec, session.test)
    original = {**session.original_score().to_dict(), **session.robust.accuracy(pipeline.model())}
    folder = pipeline.run / "retrained" / strategy
    key = _settings_key(pipeline, session, strategy)
    # an interrupted run's finished runs, when nothing they depend on changed: resumed
    runs, files = _finished_runs(folder, key, pipeline.config.seed, seeds)
    reused = len(runs)
    measured = session.robust.spec
    result = {
        "key": key,
        "strategy": strategy,
        "params": dict(pipeline.config.retrain.params.get(strategy, {})),
        "original": original,
        "runs": runs,
        "model_files": files,
        **({"robust": measured.to_dict()} if measured is not None else {}),
    }
    for i in range(len(runs), seeds):
        seed = pipeline.config.seed + i
        model, score, info, plan = mitigate(session, strategy, seed)
        if i == 0:
            result["model_files"] = [p.name for p in session.save_model(model, strategy)]
        runs.append(
            {"seed": seed, **score.to_dict(), **session.robust.accuracy(model), **info}
            | {"plan": dict(plan.info)}
        )
        write_json(folder / "result.json", result)  # after every run: Ctrl-C keeps those done
    if reused == seeds:  # nothing trained: the runs kept (up to ``seeds``) with this original
        write_json(folder / "result.json", result)
    return {**result, "path": str(folder)}


def _settings_key(pipeline: Pipeline, session: RetrainSession, strategy: str) -> str:
    """What the runs depend on, as ``compare``'s runs of the mitigation
    (:func:`~dnnsafety.pipeline.mitigate.mitigation_key_parts`)."""
    head, tail = mitigation_key_parts(pipeline, session, strategy)
    return fingerprint(*head, "mitigate-v1", *tail)


def _finished_runs(
    folder: Path, key: str, seed: int, seeds: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs (seeds ``seed, seed + 1, ...``, at most ``seeds``) and model files an earlier
    ``mitigate`` with the same settings left in ``folder``; none when anything differs or the
    kept model is missing."""
    path = folder / "result.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], []
    files = [str(f) for f in saved.get("model_files") or []]
    if saved.get("key") != key or not files or not all((folder / f).is_file() for f in files):
        return [], []
    runs = []
    for i, run in enumerate(saved.get("runs") or []):
        if i >= seeds or not isinstance(run, dict) or run.get("seed") != seed + i:
            break
        runs.append(run)
    if runs:
        log.info(
            "%s: %d of %d run(s) reused, finished by an earlier run with the same settings",
            folder,
            len(runs),
            seeds,
        )
    return runs, files if runs else []
