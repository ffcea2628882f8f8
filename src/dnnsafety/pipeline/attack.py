"""``dnnsafety attack``: adversarial test inputs, robust accuracy and their detection.

For one attack of :data:`~dnnsafety.adversarial.ATTACKS` on a run folder's model this writes,
under ``adversarial/<attack>/``:

* ``inputs.npz`` - the attacked test inputs: ``ids``, ``clean`` and ``adversarial`` images
  (float32, N x C x H x W in [0, 1]), ``labels``, ``clean_pred``, ``adversarial_pred`` and the
  library's ``success`` flags (plain arrays, no pickle);
* ``predictions.csv`` - one row per input: id, label, both predictions, success, perturbation
  size in L-infinity and L2;
* ``robustness.png``, ``roc.png``, ``examples.png`` - robust accuracy vs budget, the
  detectors' ROC curves, and example perturbations (original, adversarial, amplified
  difference, LRP heatmaps when the model is white-box);

and adds the attack's :class:`~dnnsafety.pipeline.artifacts.AttackRecord` to
``adversarial.json``. Detectors are fitted on clean training images and calibrated on the
clean validation split; no detector sees an adversarial input before it is scored.

:func:`derive_run` writes a new run folder whose test split holds the clean and adversarial
inputs (scenario ``adversarial-<attack>``), so ``dnnsafety analyze`` on it shows whether
adversarial errors form their own root-cause clusters.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dnnsafety.adversarial import ATTACKS, has_gradients, perturbation_norm, robust_accuracy
from dnnsafety.adversarial.attacks import DEFAULT_EPS, within_budget
from dnnsafety.adversarial.evaluate import fit_detector, roc_summary, score_images
from dnnsafety.adversarial.figures import plot_examples, plot_robustness, plot_roc
from dnnsafety.config import dump_config
from dnnsafety.exceptions import ConfigError, DnnSafetyError
from dnnsafety.models.training import predict
from dnnsafety.pipeline.artifacts import Adversarial, AttackRecord, read_artifact, write_artifact
from dnnsafety.pipeline.run import MODEL_FILE, Pipeline
from dnnsafety.runs import CONFIG_FILE, RunDir, atomic_path, write_text

log = logging.getLogger(__name__)

DEFAULT_DETECTORS: tuple[str, ...] = ("squeeze", "magnet", "knn", "mahalanobis", "lrp")
"""Detectors run by default (those reading the model's layers only on white-box models)."""
WHITE_BOX_DETECTORS: tuple[str, ...] = ("knn", "mahalanobis", "lrp")
"""Detectors that read the model's layers (penultimate activations, LRP)."""
FIT_LIMIT = 2000
"""Clean training images the detectors are fitted on (a seeded random subset)."""
CAL_LIMIT = 1000
"""Clean validation images the detectors are calibrated on."""
EXAMPLES = 6


def check_attack_supported(pipe: Pipeline, attack: str) -> None:
    """Refuse up front a gradient attack on a model without gradients (ONNX), naming the
    black-box alternative (``--attack square``)."""
    from dnnsafety.models.support import check_command

    cls = ATTACKS.get(attack)
    if cls.needs_gradients:
        check_command(pipe.support, "attack", ("gradients",))


def _subset(n_total: int, n: int, seed: int) -> np.ndarray:
    if n <= 0 or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng([seed, 16]).choice(n_total, size=n, replace=False))


def run_attack(
    pipe: Pipeline,
    attack: str,
    eps: float | None = None,
    eps_list: Sequence[float] | None = None,
    n: int = 2000,
    params: Mapping[str, Any] | None = None,
    detectors: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> AttackRecord:
    """Attack the run's model on ``n`` test inputs; write the files and ``adversarial.json``.

    Parameters
    ----------
    pipe
        The run's pipeline (the model is trained / evaluated first when needed).
    attack
        A name of :data:`~dnnsafety.adversarial.ATTACKS`.
    eps
        Budget of the stored inputs in the attack's norm (default 8/255 for L-infinity
        attacks, 1.0 for L2 ones).
    eps_list
        Budgets of the robust-accuracy curve (default :data:`DEFAULT_EPS` of the norm).
    n
        Test inputs attacked (a seeded random subset; 0 or more than the split: all).
    params
        The attack's parameters.
    detectors
        Detector names (default :data:`DEFAULT_DETECTORS`; white-box ones skipped for
        black-box models).
    alpha
        Conformal level of the flags reported per detector.

    Raises
    ------
    ConfigError
        Unknown attack or detector, bad budget, a gradient attack on an ONNX model.
    """
    t0 = time.perf_counter()
    check_attack_supported(pipe, attack)
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"--alpha must be in (0, 1). Got {alpha}.")
    atk = ATTACKS.create(attack, params)
    norm = atk.norm
    eps = float(eps if eps is not None else (8 / 255 if norm == "linf" else 1.0))
    curve_eps = sorted({*(float(e) for e in (eps_list or DEFAULT_EPS[norm])), eps})
    pipe.evaluate()
    model = pipe.model()
    ds = pipe.dataset
    seed = pipe.config.seed
    test = ds["test"].subset(_subset(len(ds["test"]), n, seed))
    images, labels = test.images, test.labels
    if not has_gradients(model) and atk.needs_gradients:  # a model that lost its gradients
        raise ConfigError(f"The {attack} attack needs gradients; use --attack square.")

    log.info(
        "attacking %d test inputs with %s (budgets %s, %s)", len(test), attack, curve_eps, norm
    )
    curve = robust_accuracy(model, atk, images, labels, curve_eps, random_state=seed)
    if atk.minimal:
        unbounded = atk.attack(model, images, labels, math.inf, seed)
        result = within_budget(images, unbounded, eps, norm)
    else:
        result = atk.attack(model, images, labels, eps, seed)
    adv, success = result
    clean_pred = predict(model, images, desc="predict clean").pred
    adv_pred = predict(model, adv, desc="predict adversarial").pred
    linf, l2 = perturbation_norm(adv, images, "linf"), perturbation_norm(adv, images, "l2")

    folder = f"adversarial/{attack}"
    out = pipe.run / folder
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "inputs.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            ids=np.asarray(test.ids, dtype=str),
            clean=images.numpy(),
            adversarial=adv.numpy(),
            labels=labels.astype(np.int64),
            clean_pred=clean_pred,
            adversarial_pred=adv_pred,
            success=success,
            scenarios=np.asarray(test.scenarios, dtype=str),
        )
    table = pd.DataFrame(
        {
            "sample_id": test.ids,
            "label": labels,
            "clean_pred": clean_pred,
            "adversarial_pred": adv_pred,
            "success": success,
            "linf": linf,
            "l2": l2,
        }
    )
    with atomic_path(out / "predictions.csv") as tmp:
        table.to_csv(tmp, index=False)

    white_box = pipe.support.white_box
    detection = _detect(pipe, model, images, adv[success], detectors, white_box, alpha, seed)
    title = f"{attack} ({norm}), {len(test)} test inputs"
    plot_robustness(curve, title, out / "robustness.png")
    plot_roc(detection, f"{attack} at eps {eps:.4g}: adversarial vs clean", out / "roc.png")
    _examples(model, images, adv, success, labels, adv_pred, ds.class_names, white_box, out)

    at_eps = next(r for r in curve if r["eps"] == eps)
    record = AttackRecord(
        params={k: v for k, v in atk.get_params().items() if k != "batch_size"},
        norm=norm,
        eps=eps,
        n=len(test),
        clean_accuracy=float((clean_pred == labels).mean()),
        robust_accuracy=float((adv_pred == labels).mean()),
        success_rate=float(success.sum() / max(int((clean_pred == labels).sum()), 1)),
        curve=curve,
        detection=detection,
        files={
            "inputs": f"{folder}/inputs.npz",
            "predictions": f"{folder}/predictions.csv",
            "robustness": f"{folder}/robustness.png",
            "roc": f"{folder}/roc.png",
            "examples": f"{folder}/examples.png",
        },
        median_perturbation={
            "linf": float(np.median(linf[success])) if success.any() else None,
            "l2": float(np.median(l2[success])) if success.any() else None,
        },
    )
    if abs(record.robust_accuracy - at_eps["robust_accuracy"]) > 0.05:
        log.warning("robust accuracy of the stored inputs differs from the curve's at eps")
    _add_record(pipe.run, attack, record, alpha)
    log.info("attack %s done in %.1fs", attack, time.perf_counter() - t0)
    return record


def _add_record(run: RunDir, attack: str, record: AttackRecord, alpha: float) -> None:
    path = run / Adversarial.FILE
    attacks: dict[str, AttackRecord] = {}
    if path.is_file():
        try:
            attacks = dict(read_artifact(Adversarial, run).attacks)
        except DnnSafetyError as exc:
            log.warning("replacing an unreadable %s: %s", Adversarial.FILE, exc)
    attacks[attack] = record
    write_artifact(run, Adversarial(attacks=attacks, alpha=alpha))


def _detect(
    pipe: Pipeline,
    model: torch.nn.Module,
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    detectors: Sequence[str] | None,
    white_box: bool,
    alpha: float,
    seed: int,
) -> dict[str, Any]:
    """Fit every detector on clean training images, calibrate on val, score clean test
    inputs and the successful adversarial ones."""
    names = list(detectors if detectors is not None else DEFAULT_DETECTORS)
    ds = pipe.dataset
    if "val" not in ds.splits or len(ds["val"]) == 0:
        log.warning("no validation split to calibrate the detectors on: detection skipped")
        return {}
    train = ds["train"].subset(_subset(len(ds["train"]), FIT_LIMIT, seed))
    val = ds["val"].subset(_subset(len(ds["val"]), CAL_LIMIT, seed + 1))
    out: dict[str, Any] = {}
    for name in names:
        if name in WHITE_BOX_DETECTORS and not white_box:
            log.info("detector %s skipped: it reads the model's layers (white-box)", name)
            continue
        try:
            det = fit_detector(name, None, model, train.images, train.labels, val.images, seed)
            s_clean = score_images(det, model, clean)
            s_adv = score_images(det, model, adversarial)
        except ConfigError:
            raise
        except DnnSafetyError as exc:
            log.warning("detector %s failed: %s", name, exc)
            out[name] = {"error": str(exc)}
            continue
        roc = roc_summary(s_clean, s_adv)
        cut = det.threshold(alpha)
        roc["flagged_adversarial"] = float((s_adv > cut).mean()) if len(s_adv) else None
        roc["flagged_clean"] = float((s_clean > cut).mean())
        out[name] = roc
        log.info("detector %s: AUROC %s", name, roc["auroc"])
    return out


def _examples(
    model: torch.nn.Module,
    images: torch.Tensor,
    adv: torch.Tensor,
    success: np.ndarray,
    labels: np.ndarray,
    adv_pred: np.ndarray,
    class_names: Sequence[str],
    white_box: bool,
    out: Path,
) -> None:
    rows = np.flatnonzero(success)[:EXAMPLES]
    if rows.size == 0:
        rows = np.arange(min(EXAMPLES, len(images)))
    idx = torch.from_numpy(rows)
    heatmaps = None
    if white_box:
        from dnnsafety.features.lrp import layer_relevance

        try:
            maps = []
            for batch in (images[idx], adv[idx]):
                rel = layer_relevance(model, batch, ["input"])
                maps.append(rel.maps["input"].numpy())
            heatmaps = (maps[0], maps[1])
        except DnnSafetyError as exc:
            log.info("no LRP heatmaps for the examples: %s", exc)
    titles = [f"{class_names[labels[i]]} -> {class_names[adv_pred[i]]}" for i in rows]
    plot_examples(images[idx], adv[idx], titles, out / "examples.png", heatmaps)


def derive_run(pipe: Pipeline, attack: str, out: Path, train_limit: int = FIT_LIMIT) -> Path:
    """A run folder whose test split is the attacked clean inputs plus their adversarial
    versions (scenario ``adversarial-<attack>``), for ``dnnsafety analyze``.

    Its data is one ``.npz`` (train and val: seeded subsets of at most ``train_limit``
    images, enough for the analysis; retrain in the original run) and its model is the run's
    trained model file.

    Raises
    ------
    RunDirError
        When the run has no stored inputs of ``attack`` (run ``dnnsafety attack`` first).
    """
    from dnnsafety.exceptions import RunDirError

    inputs = pipe.run / f"adversarial/{attack}/inputs.npz"
    if not inputs.is_file():
        raise RunDirError(
            f"{str(pipe.run.path)!r} has no adversarial inputs of {attack!r}: run "
            f"`dnnsafety attack {pipe.run.path} --attack {attack}` first."
        )
    model_file = (
        Path(pipe.config.model.weights) if not pipe.needs_training else pipe.run / MODEL_FILE
    )
    data = np.load(inputs, allow_pickle=False)
    ds = pipe.dataset
    seed = pipe.config.seed
    arrays: dict[str, np.ndarray] = {"class_names": np.asarray(ds.class_names, dtype=str)}
    for split in ("train", "val"):
        if split in ds.splits:
            part = ds[split].subset(_subset(len(ds[split]), train_limit, seed))
            arrays[f"x_{split}"] = part.images.numpy()
            arrays[f"y_{split}"] = part.labels.astype(np.int64)
            arrays[f"ids_{split}"] = np.asarray(part.ids, dtype=str)
            arrays[f"scenario_{split}"] = np.asarray(part.scenarios, dtype=str)
    ids = data["ids"]
    arrays["x_test"] = np.concatenate([data["clean"], data["adversarial"]])
    arrays["y_test"] = np.concatenate([data["labels"], data["labels"]])
    arrays["ids_test"] = np.concatenate([ids, np.char.add(f"adv-{attack}-", ids)])
    arrays["scenario_test"] = np.concatenate(
        [data["scenarios"], np.full(len(ids), f"adversarial-{attack}")]
    )
    target = RunDir(out)
    with atomic_path(target / "data.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    cfg = dataclasses.replace(pipe.config)
    cfg.data = dataclasses.replace(
        cfg.data, name="npz", path=str((target / "data.npz").resolve()), image_size=0
    )
    cfg.model = dataclasses.replace(cfg.model, weights=str(model_file.resolve()))
    write_text(target / CONFIG_FILE, dump_config(cfg))
    return target.path
